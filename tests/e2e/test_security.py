"""SECURITY.md's defences, tested against real processes over real TLS on 127.0.0.1."""

from __future__ import annotations

import json
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from google.protobuf import symbol_database
from google.protobuf.descriptor import MethodDescriptor

from sonde.identity import agent_id_from_public_key
from sonde.server.api.auth import METHOD_PERMISSIONS, OPEN_METHODS
from sonde.server.domain.audit_rows import chain_hash
from sonde.server.domain.audited import REFUSALS_PER_KEY
from sonde.server.domain.roles import ROLE_PERMISSIONS, Permission, Role
from sonde.server.pki import CertificateAuthority
from sonde.v1 import agent_pb2, agent_pb2_grpc, console_pb2, enrollment_pb2, enrollment_pb2_grpc
from tests.support.deployment import Deployment, run, wait_for

SERVICES = [
    console_pb2.DESCRIPTOR.services_by_name["ConsoleService"],
    enrollment_pb2.DESCRIPTOR.services_by_name["EnrollmentService"],
]


def all_methods() -> list[MethodDescriptor]:
    return [method for service in SERVICES for method in service.methods]


def path_of(method: MethodDescriptor) -> str:
    return f"/{method.containing_service.full_name}/{method.name}"


def call(channel: grpc.Channel, method: MethodDescriptor, token: str | None) -> grpc.StatusCode:
    return call_for_details(channel, method, token)[0]


def call_for_details(
    channel: grpc.Channel, method: MethodDescriptor, token: str | None
) -> tuple[grpc.StatusCode, str]:
    """Call `method` with an empty request: its status code and message."""
    request_class = symbol_database.Default().GetSymbol(method.input_type.full_name)
    response_class = symbol_database.Default().GetSymbol(method.output_type.full_name)
    stub = channel.unary_unary(
        path_of(method),
        request_serializer=request_class.SerializeToString,
        response_deserializer=response_class.FromString,
    )
    metadata: tuple[tuple[str, str | bytes], ...] | None = (
        (("authorization", f"Bearer {token}"),) if token else None
    )
    try:
        stub(request_class(), metadata=metadata, timeout=10)
    except grpc.RpcError as error:
        code: grpc.StatusCode = error.code()
        return code, error.details() or ""
    return grpc.StatusCode.OK, ""


@pytest.fixture(scope="module")
def console_channel(shared_sonde: Deployment) -> Iterator[grpc.Channel]:
    credentials = grpc.ssl_channel_credentials(shared_sonde.ca_file.read_bytes())
    with grpc.secure_channel(shared_sonde.console_address, credentials) as channel:
        yield channel


@pytest.mark.parametrize("method", all_methods(), ids=path_of)
def test_every_method_is_refused_without_credentials(
    console_channel: grpc.Channel, method: MethodDescriptor
) -> None:
    code = call(console_channel, method, token=None)
    if path_of(method) == "/sonde.v1.EnrollmentService/Enroll":
        # Open by design, but an empty request carries no enrollment secret.
        assert code == grpc.StatusCode.INVALID_ARGUMENT
    else:
        assert code == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize(
    "method", [m for m in all_methods() if path_of(m) not in OPEN_METHODS], ids=path_of
)
def test_every_method_is_refused_with_a_wrong_token(
    console_channel: grpc.Channel, method: MethodDescriptor
) -> None:
    forged = "sonde_0123456789abcdef_" + "A" * 43
    assert call(console_channel, method, token=forged) == grpc.StatusCode.UNAUTHENTICATED


def test_every_method_is_refused_to_exactly_the_roles_without_its_permission(
    shared_sonde: Deployment, console_channel: grpc.Channel
) -> None:
    """Expected refusals come from ROLE_PERMISSIONS and METHOD_PERMISSIONS, nothing else."""
    users = {
        Role.L1: ("lowly-l1", shared_sonde.add_user("lowly-l1", "l1")),
        Role.L2: ("middle-l2", shared_sonde.add_user("middle-l2", "l2")),
        Role.ADMIN: ("admin", shared_sonde.admin_token),
    }
    refused: list[tuple[str, str, str]] = []
    extra_users: dict[str, str] = {}
    admitted = 0
    # The refusals first: an admitted call with an empty request is often refused by the domain
    # (no such ticket...), and those refusals share each actor's audit budget
    # (REFUSALS_PER_KEY a minute), which the permission refusals must not find spent.
    for refusing in (True, False):
        for method in all_methods():
            permission = METHOD_PERMISSIONS.get(path_of(method))
            if permission is None:
                continue
            holders = ", ".join(r.label for r in Role if permission in ROLE_PERMISSIONS[r])
            for role, (shared_name, shared_token) in users.items():
                if (permission in ROLE_PERMISSIONS[role]) == refusing:
                    continue
                name, token = shared_name, shared_token
                if refusing and role is not Role.ADMIN:
                    # A fresh technician every REFUSALS_PER_KEY refusals: each one's refusals
                    # stay within its audit budget however many admin-only methods there are.
                    batch = sum(1 for n, _, _ in refused if n.startswith(shared_name))
                    if batch >= REFUSALS_PER_KEY:
                        name = f"{shared_name}-{batch // REFUSALS_PER_KEY}"
                        if name not in extra_users:
                            extra_users[name] = shared_sonde.add_user(name, role.label)
                        token = extra_users[name]
                if permission is Permission.ACCOUNT_LOGOUT:
                    # Logout revokes the token it is called with: each role gets one to lose.
                    name = f"leaving-{role.label}"
                    token = shared_sonde.add_user(name, role.label)
                code, details = call_for_details(console_channel, method, token)
                if not refusing:
                    # An empty request may be invalid or name nothing, but it is not refused.
                    assert code != grpc.StatusCode.PERMISSION_DENIED, (path_of(method), role)
                    admitted += 1
                    continue
                assert code == grpc.StatusCode.PERMISSION_DENIED, (path_of(method), role)
                assert details == (
                    f"{method.name} needs the {permission} permission ({holders}); "
                    f"{name} is {role.label}"
                )
                refused.append((name, path_of(method), permission.value))
    assert refused
    assert admitted
    # Each refusal is in the audit log with the permission that was missing (each actor has
    # fewer than REFUSALS_PER_KEY of them).
    assert max(Counter(name for name, _, _ in refused).values()) <= REFUSALS_PER_KEY
    with sqlite3.connect(shared_sonde.data / "sonde.db") as db:
        rows = db.execute(
            "SELECT actor, detail FROM audit_log WHERE action = 'auth.denied'"
        ).fetchall()
    audited = {
        (actor, detail["method"], detail["required_permission"])
        for actor, detail in ((actor, json.loads(text)) for actor, text in rows)
    }
    assert set(refused) <= audited


def test_agent_service_is_not_served_on_the_console_listener(
    console_channel: grpc.Channel,
) -> None:
    stream = console_channel.stream_stream(
        "/sonde.v1.AgentService/Session",
        request_serializer=agent_pb2.AgentMessage.SerializeToString,
        response_deserializer=agent_pb2.ServerMessage.FromString,
    )
    hello = agent_pb2.AgentMessage(hello=agent_pb2.Hello(hostname="x"))
    with pytest.raises(grpc.RpcError) as refused:
        list(stream(iter([hello]), timeout=5))
    assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED


# -- the agent listener -------------------------------------------------------------------


def agent_credentials(
    ca_pem: bytes, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate
) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials(
        root_certificates=ca_pem,
        private_key=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        certificate_chain=cert.public_bytes(serialization.Encoding.PEM),
    )


def open_session(
    address: str, credentials: grpc.ChannelCredentials, messages: list[agent_pb2.AgentMessage]
) -> list[agent_pb2.ServerMessage]:
    options = [("grpc.ssl_target_name_override", "localhost")]
    with grpc.secure_channel(address, credentials, options=options) as channel:
        stub = agent_pb2_grpc.AgentServiceStub(channel)
        replies = []
        for reply in stub.Session(iter(messages), timeout=5):
            replies.append(reply)
        return replies


def test_agent_listener_refuses_a_client_without_certificate(shared_sonde: Deployment) -> None:
    credentials = grpc.ssl_channel_credentials(shared_sonde.ca_file.read_bytes())
    with pytest.raises(grpc.RpcError) as refused:
        open_session(shared_sonde.agent_address, credentials, [agent_pb2.AgentMessage()])
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


def test_agent_certificate_from_another_ca_is_refused(shared_sonde: Deployment) -> None:
    foreign = CertificateAuthority.create("Rogue CA")
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")]))
        .sign(key, hashes.SHA256())
    )
    _, certificate = foreign.sign_agent_request(csr.public_bytes(serialization.Encoding.DER))
    credentials = agent_credentials(shared_sonde.ca_file.read_bytes(), key, certificate)
    hello = agent_pb2.AgentMessage(hello=agent_pb2.Hello(hostname="rogue"))
    with pytest.raises(grpc.RpcError) as refused:
        open_session(shared_sonde.agent_address, credentials, [hello])
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    with shared_sonde.console() as console:
        agents = console.ListAgents(console_pb2.ListAgentsRequest(include_revoked=True)).agents
    assert all(a.hostname != "rogue" for a in agents)


def enroll_in_process(sonde: Deployment, enrollment: str) -> tuple[str, grpc.ChannelCredentials]:
    """Enroll a key made here (a hand-driven agent), returning its id and mTLS credentials."""
    from sonde.enrollment_bundle import decode_bundle

    bundle = decode_bundle(enrollment)
    key = ec.generate_private_key(ec.SECP256R1())
    agent_id = agent_id_from_public_key(key.public_key())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, agent_id)]))
        .sign(key, hashes.SHA256())
    )
    with grpc.secure_channel(
        bundle.console_address,
        grpc.ssl_channel_credentials(sonde.ca_file.read_bytes()),
        options=[("grpc.ssl_target_name_override", bundle.server_name)],
    ) as channel:
        reply = enrollment_pb2_grpc.EnrollmentServiceStub(channel).Enroll(
            enrollment_pb2.EnrollRequest(
                token_id=bundle.token_id,
                secret=bundle.secret,
                csr_der=csr.public_bytes(serialization.Encoding.DER),
                hostname="hand-driven",
                platform="linux",
            ),
            timeout=10,
        )
    certificate = x509.load_der_x509_certificate(reply.certificate_der)
    return reply.agent_id, agent_credentials(sonde.ca_file.read_bytes(), key, certificate)


def test_a_reused_enrollment_token_is_refused(shared_sonde: Deployment) -> None:
    enrollment = shared_sonde.enrollment(uses=1)
    enroll_in_process(shared_sonde, enrollment)
    with pytest.raises(grpc.RpcError) as refused:
        enroll_in_process(shared_sonde, enrollment)
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "no uses left" in (refused.value.details() or "")


def test_an_expired_enrollment_token_is_refused(shared_sonde: Deployment) -> None:
    enrollment = shared_sonde.enrollment(uses=5)
    from sonde.enrollment_bundle import decode_bundle

    token_id = decode_bundle(enrollment).token_id
    # Time travel on the server's own database: the token expired a minute ago.
    with sqlite3.connect(shared_sonde.data / "sonde.db") as db:
        changed = db.execute(
            "UPDATE enrollment_tokens SET expires_at = datetime('now', '-1 minute') WHERE id = ?",
            (token_id,),
        ).rowcount
    assert changed == 1
    with pytest.raises(grpc.RpcError) as refused:
        enroll_in_process(shared_sonde, enrollment)
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "expired" in (refused.value.details() or "")


def test_a_malformed_enrollment_string_gets_a_clear_error(tmp_path: Path) -> None:
    done = run(
        "sonde-agent", "enroll", "sonde-enroll-1.%%%not-base64", "--state", str(tmp_path / "s")
    )
    assert done.returncode != 0
    assert "not a Sonde enrollment string" in done.stderr + done.stdout


def test_a_message_claiming_another_agents_id_changes_nothing(
    shared_sonde: Deployment, tmp_path: Path
) -> None:
    victim_id = shared_sonde.enroll_agent(tmp_path / "victim")
    victim_before = shared_sonde.agent_record(victim_id)
    intruder_id, intruder = enroll_in_process(shared_sonde, shared_sonde.enrollment())
    forged_hello = agent_pb2.AgentMessage(
        hello=agent_pb2.Hello(agent_id=victim_id, hostname="victim-takeover", platform="linux")
    )
    forged_result = agent_pb2.AgentMessage(result=agent_pb2.Result(command_id="0" * 32))
    forged_result.result.snapshot.agent_id = victim_id
    traversal_hello = agent_pb2.AgentMessage(
        hello=agent_pb2.Hello(agent_id="../clients/server", hostname="x")
    )
    replies = open_session(shared_sonde.agent_address, intruder, [forged_hello, forged_result])
    assert replies
    assert replies[0].HasField("welcome")
    open_session(shared_sonde.agent_address, intruder, [traversal_hello])
    victim_after = shared_sonde.agent_record(victim_id)
    assert victim_before is not None
    assert victim_after is not None
    assert victim_after.hostname == victim_before.hostname
    assert not victim_after.online
    intruder_record = shared_sonde.agent_record(intruder_id)
    assert intruder_record is not None
    with sqlite3.connect(shared_sonde.data / "sonde.db") as db:
        (stored,) = db.execute(
            "SELECT count(*) FROM snapshots WHERE agent_id = ?", (victim_id,)
        ).fetchone()
    assert stored == 0


def test_a_result_for_another_agents_queued_command_is_refused_and_changes_nothing(
    shared_sonde: Deployment, tmp_path: Path
) -> None:
    victim_id = shared_sonde.enroll_agent(tmp_path / "victim")  # enrolled, offline
    with shared_sonde.console() as console:
        queued = console.RunDiagnostics(
            console_pb2.RunDiagnosticsRequest(agent=victim_id), timeout=10
        ).command
    _, intruder = enroll_in_process(shared_sonde, shared_sonde.enrollment())
    hello = agent_pb2.AgentMessage(hello=agent_pb2.Hello(hostname="intruder", platform="linux"))
    forged = agent_pb2.AgentMessage(result=agent_pb2.Result(command_id=queued.id))
    forged.result.snapshot.system.hostname = "all fine here"
    beat = agent_pb2.AgentMessage(heartbeat=agent_pb2.Heartbeat(cpu_percent=1.0))
    replies = open_session(shared_sonde.agent_address, intruder, [hello, forged, beat])
    # The stream goes on (the result is acknowledged so an outbox cannot wedge on it)...
    assert [r.WhichOneof("kind") for r in replies][:2] == ["welcome", "ack"]
    # ...and nothing of the victim's changed: its command still waits for it.
    with shared_sonde.console() as console:
        after = console.GetCommand(console_pb2.GetCommandRequest(id=queued.id), timeout=10)
    assert after.command.state == console_pb2.COMMAND_STATE_QUEUED
    assert not after.command.snapshot_id
    with sqlite3.connect(shared_sonde.data / "sonde.db") as db:
        refused = db.execute(
            "SELECT result FROM audit_log WHERE action = 'command.result'"
            " AND result LIKE 'refused%'"
        ).fetchall()
    assert any("issued to another agent" in row[0] for row in refused)


def test_a_revoked_agent_is_cut_off_within_five_seconds(
    shared_sonde: Deployment, tmp_path: Path
) -> None:
    state = tmp_path / "agent"
    agent_id = shared_sonde.enroll_agent(state)
    agent = shared_sonde.start_agent(state)
    shared_sonde.wait_online(agent_id)
    started = time.monotonic()
    with shared_sonde.console() as console:
        console.RevokeAgent(console_pb2.RevokeAgentRequest(agent=agent_id, reason="laptop stolen"))
    wait_for("the revoked agent to exit", lambda: not agent.alive(), timeout=5)
    assert time.monotonic() - started <= 5
    assert agent.popen.returncode == 4, agent.log()
    record = shared_sonde.wait_offline(agent_id, timeout=5)
    assert record.revoked
    # From then on it is refused: its own certificate no longer opens a session.
    restarted = shared_sonde.start_agent(state)
    wait_for("the revoked agent to give up", lambda: not restarted.alive(), timeout=10)
    assert restarted.popen.returncode == 4


def test_editing_an_audit_row_is_detected(sonde: Deployment) -> None:
    sonde.add_user("auditor", "l1")
    verified = run("sonde-server", "audit", "verify", "--data", str(sonde.data))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    with sqlite3.connect(sonde.data / "sonde.db") as db:
        db.execute(
            "UPDATE audit_log SET actor = 'mallory' WHERE id = (SELECT min(id) FROM audit_log)"
        )
    tampered = run("sonde-server", "audit", "verify", "--data", str(sonde.data))
    assert tampered.returncode == 1
    assert "TAMPERED" in tampered.stdout


def test_the_servers_chain_is_keyed_and_rechaining_without_the_key_is_detected(
    sonde: Deployment,
) -> None:
    """A real server keys its chain from its first row with pki/audit.key (0600, not in the
    database); edit a row and recompute every link as one can without the key: detected."""
    sonde.add_user("auditor", "l1")
    key_file = sonde.data / "pki" / "audit.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    verified = run("sonde-server", "audit", "verify", "--data", str(sonde.data), "--json")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert ", keyed from row 1" in json.loads(verified.stdout)["reason"]
    with sqlite3.connect(sonde.data / "sonde.db") as db:
        assert key_file.read_bytes().hex() not in str(
            db.execute("SELECT * FROM audit_log").fetchall()
        )
        rows = db.execute(
            "SELECT id, at, actor, action, agent_id, ticket_id, detail, result FROM audit_log "
            "ORDER BY id"
        ).fetchall()
        prev = "0" * 64
        for row_id, at, written_by, action, agent_id, ticket_id, detail, result in rows:
            actor = "mallory" if row_id == 1 else written_by
            moment = datetime.fromisoformat(at).replace(tzinfo=UTC)
            link = chain_hash(
                prev, row_id=row_id, at=moment, actor=actor, action=action,
                agent_id=agent_id, ticket_id=ticket_id, detail=detail, result=result,
            )  # fmt: skip
            db.execute(
                "UPDATE audit_log SET actor = ?, prev_hash = ?, hash = ? WHERE id = ?",
                (actor, prev, link, row_id),
            )
            prev = link
        db.execute("UPDATE audit_chain SET hash = ?", (prev,))
    tampered = run("sonde-server", "audit", "verify", "--data", str(sonde.data))
    assert tampered.returncode == 1
    assert "TAMPERED at row 1" in tampered.stdout
