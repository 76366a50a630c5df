"""A stand-in Sonde server for the agent runtime's tests: a real CA, real TLS and mTLS
listeners on 127.0.0.1:0, and servicers that record what the agent sent.

The real server has its own tests; these pin the agent's side of the wire contract, and
let a test script the server's moves (push a Collect, withhold an ack, revoke).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import grpc.aio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sonde.enrollment_bundle import encode_bundle
from sonde.identity import agent_id_from_public_key
from sonde.v1 import (
    agent_pb2,
    agent_pb2_grpc,
    enrollment_pb2,
    enrollment_pb2_grpc,
)

SERVER_NAME = "sonde-test-server"
TOKEN_ID = "1a2b"
SECRET = b"s3cret-enrollment-bytes"


def _pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


class ScratchCA:
    """A throwaway Sonde-like CA: ECDSA P-256, issues server and agent certificates."""

    def __init__(self, name: str) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.certificate = self._build(subject, subject, self.key.public_key(), is_ca=True)

    def _build(
        self,
        subject: x509.Name,
        issuer: x509.Name,
        public_key: ec.EllipticCurvePublicKey,
        *,
        is_ca: bool,
        names: tuple[str, ...] = (),
    ) -> x509.Certificate:
        now = datetime.datetime.now(datetime.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
        )
        if names:
            alt: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
            alt.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
            builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
        return builder.sign(self.key, hashes.SHA256())

    @property
    def der(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.DER)

    @property
    def pem(self) -> bytes:
        return _pem(self.certificate)

    def server_pair(self, name: str) -> tuple[bytes, bytes]:
        """(private key PEM, certificate PEM) for a server certificate naming `name`."""
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        certificate = self._build(
            subject, self.certificate.subject, key.public_key(), is_ca=False, names=(name,)
        )
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return key_pem, _pem(certificate)

    def sign_csr(self, csr: x509.CertificateSigningRequest) -> x509.Certificate:
        public_key = csr.public_key()
        assert isinstance(public_key, ec.EllipticCurvePublicKey)
        subject = x509.Name(
            [x509.NameAttribute(NameOID.COMMON_NAME, agent_id_from_public_key(public_key))]
        )
        return self._build(subject, self.certificate.subject, public_key, is_ca=False)


class RecordingEnrollment(enrollment_pb2_grpc.EnrollmentServiceServicer):
    """Signs CSRs with `ca` for one token with a single use; records every request."""

    def __init__(self, ca: ScratchCA, agent_address: str) -> None:
        self.ca = ca
        self.agent_address = agent_address
        self.requests: list[enrollment_pb2.EnrollRequest] = []
        self.uses_left = 1
        self.sign_with: ScratchCA | None = None  # set to return a certificate from another CA
        # Raw Ed25519 public keys sent in the reply (a test's own keys; empty: none).
        self.catalog_public_key = b""
        self.dispatch_public_key = b""

    async def Enroll(
        self,
        request: enrollment_pb2.EnrollRequest,
        context: grpc.aio.ServicerContext[
            enrollment_pb2.EnrollRequest, enrollment_pb2.EnrollResponse
        ],
    ) -> enrollment_pb2.EnrollResponse:
        self.requests.append(request)
        if request.token_id != TOKEN_ID or request.secret != SECRET:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "unknown enrollment token")
        if self.uses_left <= 0:
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED, f"enrollment token {TOKEN_ID} has no uses left"
            )
        self.uses_left -= 1
        csr = x509.load_der_x509_csr(request.csr_der)
        certificate = (self.sign_with or self.ca).sign_csr(csr)
        return enrollment_pb2.EnrollResponse(
            agent_id=str(certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value),
            certificate_der=certificate.public_bytes(serialization.Encoding.DER),
            ca_certificate_der=self.ca.der,
            agent_address=self.agent_address,
            server_name=SERVER_NAME,
            catalog_public_key=self.catalog_public_key,
            dispatch_public_key=self.dispatch_public_key,
        )


AgentContext = grpc.aio.ServicerContext[agent_pb2.AgentMessage, agent_pb2.ServerMessage]


@dataclass(frozen=True)
class Refusal:
    """How the stand-in answers one session instead of welcoming it."""

    code: grpc.StatusCode
    details: str
    trailing_metadata: tuple[tuple[str, str], ...] = ()


@dataclass
class RecordingAgentService(agent_pb2_grpc.AgentServiceServicer):
    """Welcomes every session, records what arrives, and sends what a test queues."""

    heartbeat_interval_s: int = 1
    auto_ack: bool = True
    sessions: int = 0
    hellos: list[agent_pb2.Hello] = field(default_factory=list)
    heartbeats: list[agent_pb2.Heartbeat] = field(default_factory=list)
    results: list[agent_pb2.Result] = field(default_factory=list)
    script_outputs: list[agent_pb2.ScriptOutput] = field(default_factory=list)
    # How many results had arrived when each ScriptOutput did (output while it runs: 0 more).
    results_before_output: list[int] = field(default_factory=list)
    peer_ids: list[str] = field(default_factory=list)
    to_agent: asyncio.Queue[agent_pb2.ServerMessage | grpc.StatusCode | None] = field(
        default_factory=asyncio.Queue
    )
    end_status_details: str = "the test ended the session"
    # Sessions are refused with these, in order, before any is welcomed.
    refusals: list[Refusal] = field(default_factory=list)
    session_times: list[float] = field(default_factory=list)  # time.monotonic() at each start

    # The stubs only know the generator style; this one writes with context.write().
    async def Session(  # type: ignore[override]
        self, request_iterator: AsyncIterator[agent_pb2.AgentMessage], context: AgentContext
    ) -> None:
        self.sessions += 1
        self.session_times.append(time.monotonic())
        if self.refusals:
            refusal = self.refusals.pop(0)
            # As the real server refuses (after the Hello): an abort racing the agent's first
            # write sometimes reached it as INTERNAL instead of this status.
            with contextlib.suppress(StopAsyncIteration):
                await anext(aiter(request_iterator))
            await context.abort(refusal.code, refusal.details, refusal.trailing_metadata)
        certificates = list(context.auth_context().get("x509_pem_cert") or [])
        if certificates:
            peer = x509.load_pem_x509_certificate(certificates[0])
            self.peer_ids.append(agent_id_from_public_key(peer.public_key()))
        first = await anext(aiter(request_iterator))
        self.hellos.append(first.hello)
        welcome = agent_pb2.ServerMessage()
        welcome.welcome.heartbeat_interval_s = self.heartbeat_interval_s
        welcome.welcome.server_time.GetCurrentTime()
        await context.write(welcome)
        reader = asyncio.create_task(self._read(request_iterator))
        try:
            while True:
                outgoing = await self.to_agent.get()
                if outgoing is None:
                    return  # ends the stream with OK
                if isinstance(outgoing, grpc.StatusCode):
                    await context.abort(outgoing, self.end_status_details)
                await context.write(outgoing)
        finally:
            reader.cancel()

    async def _read(self, request_iterator: AsyncIterator[agent_pb2.AgentMessage]) -> None:
        async for message in request_iterator:
            kind = message.WhichOneof("kind")
            if kind == "heartbeat":
                self.heartbeats.append(message.heartbeat)
            elif kind == "script_output":
                self.script_outputs.append(message.script_output)
                self.results_before_output.append(len(self.results))
            elif kind == "result":
                self.results.append(message.result)
                if self.auto_ack:
                    ack = agent_pb2.ServerMessage()
                    ack.ack.command_id = message.result.command_id
                    self.to_agent.put_nowait(ack)


@dataclass
class FakeServer:
    ca: ScratchCA
    console_address: str
    agent_address: str
    enrollment: RecordingEnrollment
    agents: RecordingAgentService
    server: grpc.aio.Server

    def enrollment_string(self, **overrides: object) -> str:
        fields: dict[str, object] = {
            "console_address": self.console_address,
            "agent_address": self.agent_address,
            "ca_certificate_der": self.ca.der,
            "token_id": TOKEN_ID,
            "secret": SECRET,
            "server_name": SERVER_NAME,
        }
        fields.update(overrides)
        return encode_bundle(enrollment_pb2.EnrollmentBundle(**fields))  # type: ignore[arg-type]


async def start_fake_server(
    ca: ScratchCA, *, presented_by: ScratchCA | None = None, server_name: str = SERVER_NAME
) -> FakeServer:
    """Both listeners on 127.0.0.1:0; `presented_by` makes the server show another CA's cert."""
    key_pem, cert_pem = (presented_by or ca).server_pair(server_name)
    trusted_clients = (presented_by or ca).pem
    server = grpc.aio.server()
    console_port = server.add_secure_port(
        "127.0.0.1:0", grpc.ssl_server_credentials([(key_pem, cert_pem)])
    )
    agent_port = server.add_secure_port(
        "127.0.0.1:0",
        grpc.ssl_server_credentials(
            [(key_pem, cert_pem)], root_certificates=trusted_clients, require_client_auth=True
        ),
    )
    agent_address = f"127.0.0.1:{agent_port}"
    enrollment = RecordingEnrollment(ca, agent_address)
    agents = RecordingAgentService()
    enrollment_pb2_grpc.add_EnrollmentServiceServicer_to_server(enrollment, server)
    agent_pb2_grpc.add_AgentServiceServicer_to_server(agents, server)
    await server.start()
    return FakeServer(ca, f"127.0.0.1:{console_port}", agent_address, enrollment, agents, server)


@dataclass
class AgentProcess:
    """A real `sonde-agent` child process whose log goes to a file the test can read."""

    process: asyncio.subprocess.Process
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def stop(self, signum: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        if self.process.returncode is None:
            self.process.send_signal(signum)
        return await asyncio.wait_for(self.process.wait(), timeout)

    async def exit_code(self, timeout: float) -> int:
        return await asyncio.wait_for(self.process.wait(), timeout)


StartAgent = Callable[..., Awaitable[AgentProcess]]


async def run_agent_command(agent_command: list[str], *args: str) -> tuple[int, str, str]:
    """Run a short sonde-agent command to completion: (exit code, stdout, stderr)."""
    process = await asyncio.create_subprocess_exec(
        *agent_command,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


async def eventually(predicate: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll until `predicate` holds (returns the seconds it took) or fail after `timeout`."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        await asyncio.sleep(0.02)
    return time.monotonic() - started
