"""The technician's connection to the console API: TLS to the Sonde CA, bearer token, deadlines.

Every call goes through ConsoleClient.call, which turns a grpc.RpcError into a CliError whose
message a technician can act on ("ticket 99 does not exist", "cannot reach the server at ...").
"""

from __future__ import annotations

from types import TracebackType
from typing import Self, TypeVar

import grpc
from google.protobuf.message import Message

from sonde.server.console.command_names import with_command_names
from sonde.server.console.config import Credentials
from sonde.server.console.errors import CliError
from sonde.v1 import console_pb2_grpc

# Ordinary calls touch the database only; a slow answer means something is wrong.
CALL_DEADLINE_S = 15.0
# The server's own diagnostic timeout when the technician gives none (kept in step with it).
SERVER_DIAG_TIMEOUT_S = 30.0
# Time for the server to store the snapshot and answer after the agent has replied.
DIAG_MARGIN_S = 15.0
# After an UNAVAILABLE, how long to see whether the channel itself is connected.
REACHABLE_PROBE_S = 1.0

RequestT = TypeVar("RequestT", bound=Message)
ResponseT = TypeVar("ResponseT", bound=Message)


def diag_deadline(timeout_s: int) -> float:
    """Client deadline for RunDiagnostics: the agent's time limit plus the server's margin."""
    return (timeout_s if timeout_s > 0 else SERVER_DIAG_TIMEOUT_S) + DIAG_MARGIN_S


def describe_rpc_error(
    error: grpc.RpcError, server: str, *, server_reached: bool = True
) -> CliError:
    """One line a technician can act on, from a failed call.

    `server_reached` tells an UNAVAILABLE of the connection ("cannot reach the server") from
    one the server answered itself (an offline agent).
    """
    if not isinstance(error, grpc.Call):
        return CliError("UNKNOWN", f"the call to {server} failed: {error}")
    code = error.code()
    details = (error.details() or "").strip()
    if code == grpc.StatusCode.UNAVAILABLE and not server_reached:
        return CliError(
            "UNAVAILABLE",
            f"cannot reach the Sonde server at {server} ({details or 'no answer'}); check that "
            "`sonde-server run` is running there, that the address and port are right, and "
            "that the CA is that server's pki/ca.crt",
        )
    if code == grpc.StatusCode.DEADLINE_EXCEEDED and details.lower() in ("", "deadline exceeded"):
        # gRPC's own deadline, not the server's word about an agent.
        message = f"the server at {server} did not answer in time"
    elif code == grpc.StatusCode.UNAUTHENTICATED and "ask an admin" in details:
        message = details  # disabled, revoked or expired: it says what to do (domain/users.py)
    elif code == grpc.StatusCode.UNAUTHENTICATED:
        message = (
            f"{details or 'the server refused the token'}; "
            "log in again with `sonde login SERVER --token TOKEN --ca CA_FILE`"
        )
    else:
        message = details or f"the server answered {code.name} without a reason"
    return CliError(code.name, with_command_names(message))


class ConsoleClient:
    """One secure channel to the console API and its typed stub."""

    def __init__(self, credentials: Credentials) -> None:
        self.server = credentials.server
        channel_credentials = grpc.composite_channel_credentials(
            grpc.ssl_channel_credentials(root_certificates=credentials.ca_pem),
            grpc.access_token_call_credentials(credentials.token),
        )
        self._channel = grpc.secure_channel(credentials.server, channel_credentials)
        self.stub = console_pb2_grpc.ConsoleServiceStub(self._channel)

    def call(
        self,
        method: grpc.UnaryUnaryMultiCallable[RequestT, ResponseT],
        request: RequestT,
        *,
        deadline_s: float = CALL_DEADLINE_S,
    ) -> ResponseT:
        try:
            return method(request, timeout=deadline_s)
        except grpc.RpcError as error:
            raise self._describe(error) from None

    def start(
        self,
        method: grpc.UnaryUnaryMultiCallable[RequestT, ResponseT],
        request: RequestT,
        *,
        deadline_s: float,
    ) -> grpc.Future[ResponseT]:
        """Start a call without waiting (for a spinner); finish it with `result`."""
        return method.future(request, timeout=deadline_s)

    def result(self, future: grpc.Future[ResponseT]) -> ResponseT:
        try:
            return future.result()
        except grpc.RpcError as error:
            raise self._describe(error) from None

    def _describe(self, error: grpc.RpcError) -> CliError:
        reached = True
        if isinstance(error, grpc.Call) and error.code() == grpc.StatusCode.UNAVAILABLE:
            reached = self._server_reachable()
        return describe_rpc_error(error, self.server, server_reached=reached)

    def _server_reachable(self) -> bool:
        """Whether the channel is (or at once becomes) connected: only asked after UNAVAILABLE."""
        ready = grpc.channel_ready_future(self._channel)
        try:
            ready.result(timeout=REACHABLE_PROBE_S)
        except grpc.FutureTimeoutError:
            ready.cancel()
            return False
        return True

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
