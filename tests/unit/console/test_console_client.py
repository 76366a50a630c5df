"""The CLI's channel on the wire: TLS to the CA, the bearer token, and errors a person can act on.

A small TLS gRPC server on 127.0.0.1:0 answers the ConsoleService methods these tests need
with fixed replies and aborts (the wire contract only); the real server is exercised by
tests/e2e/test_cli_*.py.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives import serialization

from sonde.server.console.cli import main
from sonde.server.console.client import ConsoleClient
from sonde.server.console.config import Credentials
from sonde.server.console.errors import CliError
from sonde.server.pki import CertificateAuthority
from sonde.v1 import console_pb2


@dataclass
class StandIn:
    address: str
    ca_pem: bytes
    seen_authorization: list[str] = field(default_factory=list)
    logged_out: list[str] = field(default_factory=list)  # the tokens Logout revoked


def _handler(
    response: Callable[[Any, grpc.ServicerContext], Any],
    request_type: Any,
    response_type: Any,
) -> grpc.RpcMethodHandler[Any, Any]:
    return grpc.unary_unary_rpc_method_handler(
        response,
        request_deserializer=request_type.FromString,
        response_serializer=response_type.SerializeToString,
    )


@pytest.fixture(scope="module")
def stand_in() -> Iterator[StandIn]:
    authority = CertificateAuthority.create()
    certificate, key = authority.issue_server(["localhost", "127.0.0.1"])
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    cert_pem = certificate.public_bytes(serialization.Encoding.PEM)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    state = StandIn("", authority.certificate_pem)

    def who_am_i(request: Any, context: grpc.ServicerContext) -> console_pb2.WhoAmIResponse:
        metadata = dict(context.invocation_metadata())
        state.seen_authorization.append(str(metadata.get("authorization", "")))
        if metadata.get("authorization") != "Bearer good-token":
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "unknown or revoked API token")
        user = console_pb2.User(name="alice", role=console_pb2.ROLE_L2)
        return console_pb2.WhoAmIResponse(user=user, server_version="0.1.0")

    def logout(request: Any, context: grpc.ServicerContext) -> console_pb2.LogoutResponse:
        state.logged_out.append(str(dict(context.invocation_metadata()).get("authorization")))
        return console_pb2.LogoutResponse()

    def get_ticket(request: Any, context: grpc.ServicerContext) -> console_pb2.GetTicketResponse:
        context.abort(grpc.StatusCode.NOT_FOUND, f"ticket {request.id} does not exist")

    def run_diagnostics(request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(
            grpc.StatusCode.UNAVAILABLE, f"agent {request.agent} is offline since 2024-05-01 09:12"
        )

    handlers = {
        "WhoAmI": _handler(who_am_i, console_pb2.WhoAmIRequest, console_pb2.WhoAmIResponse),
        "Logout": _handler(logout, console_pb2.LogoutRequest, console_pb2.LogoutResponse),
        "GetTicket": _handler(
            get_ticket, console_pb2.GetTicketRequest, console_pb2.GetTicketResponse
        ),
        "RunDiagnostics": _handler(
            run_diagnostics,
            console_pb2.RunDiagnosticsRequest,
            console_pb2.RunDiagnosticsResponse,
        ),
    }
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler("sonde.v1.ConsoleService", handlers)]
    )
    port = server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials([(key_pem, cert_pem)]))
    server.start()
    state.address = f"127.0.0.1:{port}"
    yield state
    server.stop(grace=None)


def client_for(stand_in: StandIn, token: str = "good-token") -> ConsoleClient:
    return ConsoleClient(Credentials(stand_in.address, token, stand_in.ca_pem))


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_the_token_travels_as_a_bearer_header_over_tls(stand_in: StandIn) -> None:
    with client_for(stand_in) as client:
        reply = client.call(client.stub.WhoAmI, console_pb2.WhoAmIRequest())
    assert reply.user.name == "alice"
    assert stand_in.seen_authorization[-1] == "Bearer good-token"


def test_server_errors_become_one_line(stand_in: StandIn) -> None:
    with client_for(stand_in) as client:
        with pytest.raises(CliError) as missing:
            client.call(client.stub.GetTicket, console_pb2.GetTicketRequest(id=99))
        assert (missing.value.code, missing.value.message) == (
            "NOT_FOUND",
            "ticket 99 does not exist",
        )
    with client_for(stand_in, token="bad") as client, pytest.raises(CliError) as refused:
        client.call(client.stub.WhoAmI, console_pb2.WhoAmIRequest())
    assert refused.value.code == "UNAUTHENTICATED"
    assert refused.value.message.startswith("unknown or revoked API token; log in again")


def test_an_offline_agent_is_not_an_unreachable_server(stand_in: StandIn) -> None:
    with client_for(stand_in) as client, pytest.raises(CliError) as offline:
        client.call(client.stub.RunDiagnostics, console_pb2.RunDiagnosticsRequest(agent="PC-7"))
    assert offline.value.code == "UNAVAILABLE"
    assert offline.value.message == "agent PC-7 is offline since 2024-05-01 09:12"


def test_an_unreachable_server_says_where_and_how_to_check(stand_in: StandIn) -> None:
    address = f"127.0.0.1:{unused_port()}"
    credentials = Credentials(address, "good-token", stand_in.ca_pem)
    with ConsoleClient(credentials) as client, pytest.raises(CliError) as down:
        client.call(client.stub.WhoAmI, console_pb2.WhoAmIRequest(), deadline_s=5)
    assert down.value.code == "UNAVAILABLE"
    assert down.value.message.startswith(f"cannot reach the Sonde server at {address}")
    assert "sonde-server run" in down.value.message


def test_a_server_outside_the_ca_is_unreachable_not_trusted(stand_in: StandIn) -> None:
    other_ca = CertificateAuthority.create("Someone else").certificate_pem
    credentials = Credentials(stand_in.address, "good-token", other_ca)
    with ConsoleClient(credentials) as client, pytest.raises(CliError) as refused:
        client.call(client.stub.WhoAmI, console_pb2.WhoAmIRequest(), deadline_s=5)
    assert refused.value.code == "UNAVAILABLE"
    assert "cannot reach the Sonde server" in refused.value.message
    assert "pki/ca.crt" in refused.value.message


@pytest.fixture
def cli_env(stand_in: StandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    ca_file = tmp_path / "ca.crt"
    ca_file.write_bytes(stand_in.ca_pem)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    for name in ("SONDE_SERVER", "SONDE_TOKEN", "SONDE_CA"):
        monkeypatch.delenv(name, raising=False)
    return ca_file


def test_login_checks_then_saves_and_commands_use_it(
    stand_in: StandIn, cli_env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config" / "sonde" / "config.json"
    assert main(["login", stand_in.address, "--token", "bad", "--ca", str(cli_env)]) == 1
    assert "error (UNAUTHENTICATED)" in capsys.readouterr().err
    assert not config.exists()

    login = ["login", stand_in.address, "--token", "good-token", "--ca", str(cli_env), "--json"]
    assert main(login) == 0
    saved = json.loads(capsys.readouterr().out)
    assert saved["user"]["name"] == "alice"
    assert saved["config"] == str(config)
    assert json.loads(config.read_text())["ca_pem"] == stand_in.ca_pem.decode()

    cli_env.unlink()  # the saved config carries the CA itself
    assert main(["whoami"]) == 0
    assert "alice (l2)" in capsys.readouterr().out
    assert main(["ticket", "show", "99", "--json"]) == 1
    assert json.loads(capsys.readouterr().out) == {
        "error": {"code": "NOT_FOUND", "message": "ticket 99 does not exist"}
    }
    assert main(["logout"]) == 0
    assert "revoked the API token on the server" in capsys.readouterr().out
    assert stand_in.logged_out[-1] == "Bearer good-token"
    assert not config.exists()
