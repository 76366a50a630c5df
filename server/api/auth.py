"""The one auth layer: who is calling, and may they call this method.

The interceptor (below) authenticates the bearer token, checks that the caller's role holds the
method's permission from METHOD_PERMISSIONS (deny by default: a method absent from the table is
refused; what each role holds is ROLE_PERMISSIONS in server/domain/roles.py), and runs the handler
with the caller's Principal in a context variable that servicers read with current_principal().
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextvars import ContextVar
from typing import Any

import grpc

from sonde.server.api.errors import abort_with
from sonde.server.api.peer_lockout import AUTH_FAILURES, PeerLockout, peer_address
from sonde.server.domain.roles import Permission, Principal, roles_with
from sonde.server.errors import PermissionDenied, SondeError, Unauthenticated

_principal: ContextVar[Principal | None] = ContextVar("sonde_principal", default=None)


def current_principal() -> Principal:
    """The authenticated caller of the current RPC."""
    principal = _principal.get()
    if principal is None:
        raise Unauthenticated("this call carries no authenticated technician")
    return principal


@contextlib.contextmanager
def principal_scope(principal: Principal) -> Iterator[None]:
    """Run the enclosed code as `principal` (used by the interceptor)."""
    token = _principal.set(principal)
    try:
        yield
    finally:
        _principal.reset(token)


CONSOLE = "/sonde.v1.ConsoleService/"

# The permission every console method needs. A method missing here is refused: deny by default.
METHOD_PERMISSIONS: dict[str, Permission] = {
    CONSOLE + "WhoAmI": Permission.ACCOUNT_READ,
    CONSOLE + "ListAgents": Permission.AGENTS_READ,
    CONSOLE + "GetAgent": Permission.AGENTS_READ,
    CONSOLE + "RunDiagnostics": Permission.DIAGNOSTICS_RUN,
    CONSOLE + "GetSnapshot": Permission.DIAGNOSTICS_READ,
    CONSOLE + "ListCommands": Permission.COMMANDS_READ,
    CONSOLE + "GetCommand": Permission.COMMANDS_READ,
    CONSOLE + "CancelCommand": Permission.COMMANDS_CANCEL,
    CONSOLE + "OpenTicket": Permission.TICKETS_WORK,
    CONSOLE + "ListTickets": Permission.TICKETS_READ,
    CONSOLE + "GetTicket": Permission.TICKETS_READ,
    CONSOLE + "CommentTicket": Permission.TICKETS_WORK,
    CONSOLE + "AssignTicket": Permission.TICKETS_WORK,
    CONSOLE + "EscalateTicket": Permission.TICKETS_WORK,
    # Resolving or closing an L2 ticket also needs tickets.resolve_escalated (server/domain).
    CONSOLE + "ResolveTicket": Permission.TICKETS_WORK,
    CONSOLE + "CloseTicket": Permission.TICKETS_WORK,
    CONSOLE + "ReopenTicket": Permission.TICKETS_WORK,
    CONSOLE + "WaitTicket": Permission.TICKETS_WORK,
    CONSOLE + "ResumeTicket": Permission.TICKETS_WORK,
    CONSOLE + "SetTicketDetails": Permission.TICKETS_WORK,
    CONSOLE + "ListQueue": Permission.TICKETS_READ,
    CONSOLE + "TakeTicket": Permission.TICKETS_WORK,
    CONSOLE + "HandBackTicket": Permission.TICKETS_WORK,
    CONSOLE + "LogTicketTime": Permission.TICKETS_WORK,
    CONSOLE + "ListCategories": Permission.TICKETS_READ,
    CONSOLE + "AddCategory": Permission.CATEGORIES_MANAGE,
    CONSOLE + "RetireCategory": Permission.CATEGORIES_MANAGE,
    CONSOLE + "SaveProcedure": Permission.KB_EDIT,
    CONSOLE + "GetProcedure": Permission.TICKETS_READ,
    CONSOLE + "ListProcedures": Permission.TICKETS_READ,
    CONSOLE + "SuggestProcedures": Permission.TICKETS_READ,
    CONSOLE + "ReportInterventions": Permission.TICKETS_READ,
    CONSOLE + "ListRequesters": Permission.TICKETS_READ,
    # SLA (docs/sla.md): anyone who reads tickets may read the targets they are held to; the
    # compliance report is L2's (the quality of the service); keeping them is an admin's.
    CONSOLE + "ListSlaCalendars": Permission.TICKETS_READ,
    CONSOLE + "ListSlaPolicies": Permission.TICKETS_READ,
    CONSOLE + "ReportSla": Permission.SLA_READ,
    CONSOLE + "SetSlaCalendar": Permission.SLA_MANAGE,
    CONSOLE + "SetSlaPolicy": Permission.SLA_MANAGE,
    CONSOLE + "RetireSlaPolicy": Permission.SLA_MANAGE,
    CONSOLE + "RevokeAgent": Permission.AGENTS_REVOKE,
    CONSOLE + "RemoveAgent": Permission.AGENTS_REMOVE,
    CONSOLE + "SetAgentGroup": Permission.MONITORING_MANAGE,
    CONSOLE + "AssignAgentGroup": Permission.MONITORING_MANAGE,
    CONSOLE + "ListAgentGroups": Permission.AGENTS_READ,
    CONSOLE + "CreateUser": Permission.USERS_MANAGE,
    CONSOLE + "ListUsers": Permission.USERS_MANAGE,
    CONSOLE + "DisableUser": Permission.USERS_MANAGE,
    CONSOLE + "EnableUser": Permission.USERS_MANAGE,
    CONSOLE + "SetUserRole": Permission.USERS_MANAGE,
    CONSOLE + "SetUserEmail": Permission.USERS_MANAGE,
    CONSOLE + "RotateUserToken": Permission.USERS_MANAGE,
    CONSOLE + "Logout": Permission.ACCOUNT_LOGOUT,
    CONSOLE + "CreateEnrollmentToken": Permission.ENROLLMENT_MANAGE,
    CONSOLE + "ListEnrollmentTokens": Permission.ENROLLMENT_MANAGE,
    CONSOLE + "RevokeEnrollmentToken": Permission.ENROLLMENT_MANAGE,
    CONSOLE + "ListAudit": Permission.AUDIT_READ,
    CONSOLE + "PublishCatalog": Permission.CATALOG_MANAGE,
    # What a caller may run within the list is its scripts.run.<risk> (server/domain).
    CONSOLE + "ListScripts": Permission.SCRIPTS_READ,
    CONSOLE + "GetScript": Permission.SCRIPTS_READ,
    # Proposals: approving or rejecting one is also never its author's (server/domain).
    CONSOLE + "ProposeScripts": Permission.SCRIPTS_PROPOSE,
    CONSOLE + "ListProposals": Permission.SCRIPTS_PROPOSE,
    CONSOLE + "GetProposal": Permission.SCRIPTS_PROPOSE,
    CONSOLE + "WithdrawProposal": Permission.SCRIPTS_PROPOSE,
    CONSOLE + "ReviewProposal": Permission.CATALOG_REVIEW,
    CONSOLE + "ExportApproved": Permission.CATALOG_MANAGE,
    # A run's tier (scripts.run.low with a ticket, .medium, .high, then another person's
    # scripts.approve) is checked by the script's risk in the domain (server/domain/script_runs.py).
    CONSOLE + "RunScript": Permission.SCRIPTS_RUN_LOW,
    CONSOLE + "FixFinding": Permission.SCRIPTS_RUN_LOW,
    CONSOLE + "GetScriptStats": Permission.SCRIPTS_READ,
    CONSOLE + "ListRuns": Permission.SCRIPTS_READ,
    CONSOLE + "GetRun": Permission.SCRIPTS_READ,
    CONSOLE + "CancelRun": Permission.COMMANDS_CANCEL,
    CONSOLE + "ApproveRun": Permission.SCRIPTS_APPROVE,
    CONSOLE + "RejectRun": Permission.SCRIPTS_APPROVE,
    # The credential store; using a credential is checked by whoever connects with it.
    CONSOLE + "AddCredential": Permission.CREDENTIALS_MANAGE,
    CONSOLE + "ListCredentials": Permission.CREDENTIALS_READ,
    CONSOLE + "RemoveCredential": Permission.CREDENTIALS_MANAGE,
    # Agentless reach over SSH: the same permission as an agent's diagnostic.
    CONSOLE + "TrustHost": Permission.HOSTS_TRUST,
    CONSOLE + "ListHosts": Permission.HOSTS_READ,
    CONSOLE + "ForgetHost": Permission.HOSTS_TRUST,
    CONSOLE + "RunAgentlessDiagnostics": Permission.DIAGNOSTICS_RUN,
    CONSOLE + "SetWinRMHost": Permission.HOSTS_TRUST,
    # Push install of the agent: an admin's, as enrollment tokens are.
    CONSOLE + "StartDeployment": Permission.AGENTS_DEPLOY,
    CONSOLE + "GetDeployment": Permission.AGENTS_DEPLOY,
    # Outbound webhooks: an admin's, as the credentials key their secrets are sealed with.
    CONSOLE + "AddWebhook": Permission.WEBHOOKS_MANAGE,
    CONSOLE + "ListWebhooks": Permission.WEBHOOKS_MANAGE,
    CONSOLE + "RemoveWebhook": Permission.WEBHOOKS_MANAGE,
    CONSOLE + "RotateWebhookSecret": Permission.WEBHOOKS_MANAGE,
}

# Methods that need no technician: enrollment carries its own one-time secret; health and
# reflection let standard gRPC tools work.
OPEN_METHODS: frozenset[str] = frozenset(
    {
        "/sonde.v1.EnrollmentService/Enroll",
        "/grpc.health.v1.Health/Check",
        "/grpc.health.v1.Health/Watch",
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    }
)

Authenticator = Callable[[str], Awaitable[Principal]]
# (actor, action, the refusal, detail, peer): the server audits it at a bounded rate.
RefusalRecorder = Callable[[str, str, SondeError, dict[str, str], str], Awaitable[None]]
ANONYMOUS = "anonymous"

# A principal is trusted this long: a token disabled, revoked or expiring on another replica is
# refused here within it even if that replica's wake-up (pg_notify) never arrives.
_TOKEN_CACHE_TTL_S = 1.0


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Authenticates the bearer token and checks METHOD_PERMISSIONS before console handlers."""

    def __init__(
        self,
        authenticate: Authenticator,
        record_refusal: RefusalRecorder,
        generation: Callable[[], int] = lambda: 0,
        lockout: PeerLockout | None = None,
    ) -> None:
        self._authenticate = authenticate
        self._record_refusal = record_refusal
        # Failed tokens per peer address: past AUTH_FAILURES in a window, refused before lookup.
        self._lockout = lockout or PeerLockout("failed authentications", max_failures=AUTH_FAILURES)
        # Short cache: a burst of CLI calls costs one lookup; hashed keys, never raw tokens.
        # `generation` moves whenever users change here: the cache is dropped at once then.
        self._generation = generation
        self._cached_generation = generation()
        self._cache: dict[bytes, tuple[float, Principal]] = {}

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method in OPEN_METHODS:
            return handler
        required = METHOD_PERMISSIONS.get(method)
        metadata = handler_call_details.invocation_metadata or ()
        token = _bearer_token(metadata)
        return _guarded(handler, lambda peer: self._admit(method, required, token, peer))

    async def _admit(
        self, method: str, required: Permission | None, token: str | None, peer: str
    ) -> Principal:
        """The caller as a Principal (with its peer), or a refusal that is audited."""
        detail = {"method": method}
        try:
            if required is None:
                raise PermissionDenied(f"{method} is not open to any role")
            if not token:
                raise Unauthenticated(
                    "no API token: send 'authorization: Bearer <token>' (sonde login does this)"
                )
        except SondeError as error:
            await self._record_refusal(ANONYMOUS, "auth.refused", error, detail, peer)
            raise
        locked = self._lockout.refusal(peer)
        if locked is not None:
            # Keyed by the address, not the connection: the refusals' rate bounds its rows.
            address = peer_address(peer)
            await self._record_refusal(ANONYMOUS, "auth.refused", locked, detail, address)
            raise locked
        try:
            principal = await self._principal_for(token)
        except SondeError as error:
            self._lockout.failed(peer)
            await self._record_refusal(ANONYMOUS, "auth.refused", error, detail, peer)
            raise
        if not principal.may(required):
            holders = ", ".join(role.label for role in roles_with(required)) or "no role"
            denied = PermissionDenied(
                f"{method.rsplit('/', 1)[-1]} needs the {required} permission ({holders}); "
                f"{principal.name} is {principal.role.label}"
            )
            detail["required_permission"] = required.value
            await self._record_refusal(principal.name, "auth.denied", denied, detail, peer)
            raise denied
        return dataclasses.replace(principal, peer=peer)

    async def _principal_for(self, token: str) -> Principal:
        key = hashlib.sha256(token.encode("utf-8", "replace")).digest()
        now = time.monotonic()
        if (generation := self._generation()) != self._cached_generation:
            self._cache.clear()
            self._cached_generation = generation
        cached = self._cache.get(key)
        if cached is not None and now - cached[0] < _TOKEN_CACHE_TTL_S:
            return cached[1]
        principal = await self._authenticate(token)
        if len(self._cache) > 1024:
            self._cache.clear()
        self._cache[key] = (now, principal)
        return principal


def _bearer_token(metadata: Sequence[tuple[str, str | bytes]]) -> str | None:
    for key, value in metadata:
        if key.lower() == "authorization" and isinstance(value, str):
            scheme, _, token = value.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None


Admission = Callable[[str], Awaitable[Principal]]  # takes the caller's peer address


def _guarded(
    handler: grpc.RpcMethodHandler[Any, Any], admit: Admission
) -> grpc.RpcMethodHandler[Any, Any]:
    """The same handler, but it first admits the caller and runs as them, or aborts."""

    async def refuse(error: SondeError, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        await abort_with(context, error)

    if handler.unary_unary is not None:
        inner_uu = handler.unary_unary

        async def unary_unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            try:
                principal = await admit(context.peer())
            except SondeError as error:
                await refuse(error, context)
                return None
            with principal_scope(principal):
                # grpc.aio calls handlers with its aio context; the stubs only know the sync one.
                return await inner_uu(request, context)  # type: ignore[arg-type]

        return grpc.unary_unary_rpc_method_handler(
            unary_unary,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    async def refused_stream(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        # Sonde's console has no streaming methods; any other streaming method is refused.
        try:
            await admit(context.peer())
        except SondeError as error:
            await refuse(error, context)
        await refuse(PermissionDenied("streaming console methods are not served"), context)

    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(
            refused_stream,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(
            refused_stream,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    return grpc.stream_stream_rpc_method_handler(
        refused_stream,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )
