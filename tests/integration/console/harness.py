"""A real grpc.aio server on 127.0.0.1:0 with the ConsoleServicer behind a test-only identity.

The production token interceptor (server/api/auth.py) is tested end to end; here an
"x-test-user" metadata key names the technician: one the fixture created is authenticated with
their real API token (so the principal carries its token id, for Logout), any other is loaded
from the real users table.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from sonde.server.api.auth import principal_scope
from sonde.server.api.console import ConsoleServicer
from sonde.server.domain.agents import AgentRecord
from sonde.server.domain.commands import CommandKind
from sonde.server.domain.credential_secrets import CredentialKey
from sonde.server.domain.deployments import ssh_setup
from sonde.server.domain.enrollment_tokens import EnrollmentTokens
from sonde.server.domain.roles import Principal, Role
from sonde.server.domain.users import Users
from sonde.server.remote.wheelhouse import Wheelhouse, load_wheelhouse
from sonde.server.services import IssuedEnrollment, ServerServices, open_services
from sonde.server.storage.db import Database
from sonde.v1 import agent_pb2, console_pb2_grpc, diagnostics_pb2
from tests.unit.domain.builders import SETUP_ADMIN, enroll

USER_KEY = "x-test-user"


class TestUserInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, users: Users, tokens: dict[str, str]) -> None:
        self._users = users
        self._tokens = tokens

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(details)
        if handler is None or handler.unary_unary is None:
            return handler
        inner = handler.unary_unary
        metadata = dict(details.invocation_metadata or ())
        name = metadata.get(USER_KEY)
        users, tokens = self._users, self._tokens

        async def as_user(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            if not isinstance(name, str):
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, f"no {USER_KEY}")
            if str(name) in tokens:
                principal = await users.authenticate(tokens[str(name)])
            else:
                record = await users.get(str(name))
                principal = Principal(record.id, record.name, record.role)
            with principal_scope(principal):
                # grpc.aio passes its aio context; the stubs only know the sync one.
                return await inner(request, context)  # type: ignore[arg-type]

        return grpc.unary_unary_rpc_method_handler(
            as_user,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


class StringIssuer:
    """Real enrollment tokens; the string is the token id and secret (the bundle is the lead's).

    `tokens` is the services' own (set once they exist), so its writes share their audit."""

    def __init__(self) -> None:
        self.tokens: EnrollmentTokens | None = None

    async def issue(self, actor: Principal, *, uses: int, ttl: timedelta) -> IssuedEnrollment:
        assert self.tokens is not None
        token = await self.tokens.create(actor, uses=uses, ttl=ttl)
        return IssuedEnrollment(
            enrollment=f"{token.token_id}:{token.secret.hex()}",
            token_id=token.token_id,
            expires_at=token.expires_at,
            uses=token.uses,
        )


@dataclass
class Console:
    services: ServerServices
    stub: console_pb2_grpc.ConsoleServiceAsyncStub
    revoked: list[str]  # agents whose streams every replica was told to close
    tokens: dict[str, str] = field(default_factory=dict)
    # The catalog key whose public half this server pins (tests sign bundles with it).
    catalog_key: ed25519.Ed25519PrivateKey = field(
        default_factory=ed25519.Ed25519PrivateKey.generate
    )

    @staticmethod
    def as_user(name: str) -> tuple[tuple[str, str]]:
        return ((USER_KEY, name),)

    async def enroll_agent(self, hostname: str) -> AgentRecord:
        """An agent enrolled for real, with a token of its own (both audited)."""
        return await enroll(
            self.services.agents, self.services.db, hostname=hostname, at=datetime.now(UTC)
        )

    async def principal(self, name: str) -> Principal:
        user = await self.services.users.get(name)
        return Principal(user_id=user.id, name=user.name, role=user.role)

    async def answer_diagnostics(
        self,
        agent_id: str,
        found: Sequence[diagnostics_pb2.Finding],
        snapshot: diagnostics_pb2.Snapshot | None = None,
        *,
        session: str = "session-1",
    ) -> list[int]:
        """Every command due for the agent claimed, and each diagnostic among them answered
        with `snapshot` and `found`, as the agent's session stores them (the session itself is
        tested end to end); the snapshots' ids."""
        due = await self.services.commands.claim_due(agent_id, session, resend_delivered=True)
        stored: list[int] = []
        for command in due:
            if command.kind is not CommandKind.COLLECT:
                continue
            payload = snapshot or diagnostics_pb2.Snapshot(agent_id=agent_id)
            result = agent_pb2.Result(command_id=command.id, snapshot=payload)
            accepted = await self.services.diagnostics.accept_result(
                agent_id, result, found, datetime.now(UTC)
            )
            assert accepted.stored is not None
            stored.append(accepted.stored.summary.id)
        return stored


def placeholder_wheelhouse(folder: Path) -> Wheelhouse:
    """File names a wheelhouse holds, not wheels: a deployment starts, and its hosts fail
    before any install (tests/integration/deploy installs real ones)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("sonde_helpdesk-0.1.0-py3-none-any.whl", "pip-26.3-py3-none-any.whl"):
        (folder / name).write_bytes(b"not a wheel")
    return load_wheelhouse(folder)


@pytest.fixture
async def console(db: Database, tmp_path: Path) -> AsyncIterator[Console]:
    async with serving_console(db, tmp_path) as served:
        yield served


@pytest.fixture
async def mailing_console(db: Database, tmp_path: Path) -> AsyncIterator[Console]:
    """As `console`, with the server sending notifications (`--smtp`): mails go to the outbox."""
    async with serving_console(db, tmp_path, notify_requesters=True) as served:
        yield served


@contextlib.asynccontextmanager
async def serving_console(
    db: Database, tmp_path: Path, *, notify_requesters: bool = False
) -> AsyncIterator[Console]:
    issuer = StringIssuer()
    catalog_key = ed25519.Ed25519PrivateKey.generate()
    services = await open_services(
        db,
        issuer,
        catalog_public_key=catalog_key.public_key(),
        dispatch_key=ed25519.Ed25519PrivateKey.generate(),  # as `sonde-server init` makes it
        credential_key=CredentialKey(os.urandom(32)),  # pki/credentials.key
        deploy_setup=ssh_setup(placeholder_wheelhouse(tmp_path / "wheelhouse")),
        notify_requesters=notify_requesters,
    )
    issuer.tokens = services.tokens
    revoked: list[str] = []
    services.wakeups.on_revoked(revoked.append)
    tokens: dict[str, str] = {}
    for name, role in (("admin", Role.ADMIN), ("ann", Role.L1), ("bob", Role.L2)):
        _, tokens[name] = await services.users.add(SETUP_ADMIN, name, role)
    server = grpc.aio.server(interceptors=[TestUserInterceptor(services.users, tokens)])
    console_pb2_grpc.add_ConsoleServiceServicer_to_server(ConsoleServicer(services), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        stub = console_pb2_grpc.ConsoleServiceStub(channel)
        yield Console(services, stub, revoked, tokens, catalog_key)
    finally:
        await channel.close()
        await server.stop(grace=None)
        await services.deployments.close()
        await services.agentless_runs.close()  # what the server still runs itself
