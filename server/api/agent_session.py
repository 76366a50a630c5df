"""AgentService.Session: one bidirectional stream per agent, on the mTLS agent listener.

The agent's id comes from its verified client certificate only. Hello's fields are descriptive
and cleaned at intake; a Hello that claims another id changes nothing. Welcome goes out before
anything is written (the session row is batched); then the session delivers the agent's due
commands, in creation order, and keeps delivering as they are queued.

Every Result gets its ResultAck once it is stored or refused (a command that is unknown, of
another agent or already ended; a snapshot the checks cannot read ends its command as
failed): only a failure to store it (the database) ends the stream, so that the agent resends
it later. Warnings about what one stream sent are rate-limited (StreamWarnings).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import random
import time
from collections.abc import AsyncIterator, Callable

import grpc

from sonde.agent.checks import CheckContext, evaluate
from sonde.server.domain.agents import MAX_HOSTNAME_CHARS, HeartbeatRecord, HelloInfo
from sonde.server.domain.clock import utc_now
from sonde.server.domain.command_queue import Commands
from sonde.server.domain.commands import CommandKind, CommandRecord
from sonde.server.domain.diagnostics import Diagnostics
from sonde.server.domain.heartbeats import HeartbeatBatcher
from sonde.server.domain.script_runs import ScriptRuns
from sonde.server.domain.self_service import SelfService
from sonde.server.domain.sessions import (
    AgentAdmission,
    AgentConnection,
    LocalSessions,
    SessionClosed,
    SessionOpened,
    SessionRows,
)
from sonde.server.domain.text import sanitized
from sonde.server.domain.wakeups import Wakeups
from sonde.server.domain.workstation_help import HelpAsked, WorkstationHelp
from sonde.server.domain.workstation_rating import WorkstationRatings
from sonde.server.errors import SondeError, Unauthenticated
from sonde.server.pki import agent_id_from_certificate
from sonde.server.settings import DEFAULT_MAX_CONNECTING
from sonde.v1 import agent_pb2, agent_pb2_grpc, remediation_pb2
from sonde.wire_limits import RETRY_AFTER_MS_KEY

log = logging.getLogger(__name__)

HELLO_TIMEOUT_S = 10.0
RETRY_AFTER_MS = (2_000, 10_000)
# Per stream: this many warnings a minute in full, then one line counting the rest.
WARNINGS_PER_WINDOW = 10
WARNING_WINDOW_S = 60.0

Context = grpc.aio.ServicerContext[agent_pb2.AgentMessage, agent_pb2.ServerMessage]


def certificate_agent_id(context: Context) -> str:
    certificates = list(context.auth_context().get("x509_pem_cert") or [])
    if not certificates:
        raise Unauthenticated("the agent listener needs a client certificate")
    return agent_id_from_certificate(certificates[0])


def hello_info(hello: agent_pb2.Hello) -> HelloInfo:
    """Hello's descriptive fields, as sent: the session rows clean and bound them."""
    return HelloInfo(
        hostname=hello.hostname,
        platform=hello.platform,
        os_name=hello.os_name,
        os_version=hello.os_version,
        agent_version=hello.agent_version,
    )


class StreamWarnings:
    """Warnings about what one agent's stream sent: the first `per_window` of each window in
    full, the rest counted and told in one line when the window is over or the stream ends
    (a hostile agent's flood costs a few lines a minute, not one a message)."""

    def __init__(
        self,
        agent_id: str,
        *,
        per_window: int = WARNINGS_PER_WINDOW,
        window_s: float = WARNING_WINDOW_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._agent_id = agent_id
        self._per_window, self._window_s = per_window, window_s
        self._monotonic = monotonic
        self._started = monotonic()
        self._told = self._left_out = 0

    def warn(self, message: str, *args: object) -> None:
        self.tick()
        if self._told < self._per_window:
            self._told += 1
            log.warning("agent %s " + message, self._agent_id, *args)
        else:
            self._left_out += 1

    def tick(self) -> None:
        """Start a new window once this one is over, telling what it left out."""
        now = self._monotonic()
        if now - self._started >= self._window_s:
            self.flush()
            self._started, self._told = now, 0

    def flush(self) -> None:
        if self._left_out:
            log.warning(
                "agent %s: %d more warnings about its stream in the last %.0f s, left out",
                self._agent_id,
                self._left_out,
                self._monotonic() - self._started,
            )
            self._left_out = 0


def _unreadable_snapshot(command_id: str, error: Exception) -> agent_pb2.Result:
    """What a snapshot the checks could not read is stored as: its command's failure."""
    problem = " ".join(str(error).split())[:300] or type(error).__name__
    failure = agent_pb2.Failure(
        reason=f"the server could not read this snapshot: {problem}",
        kind=agent_pb2.FAILURE_KIND_FAILED,
    )
    return agent_pb2.Result(command_id=command_id, failure=failure)


class AgentSessionServicer(agent_pb2_grpc.AgentServiceServicer):
    def __init__(
        self,
        *,
        sessions: LocalSessions,
        admission: AgentAdmission,
        session_rows: SessionRows,
        heartbeats: HeartbeatBatcher,
        commands: Commands,
        diagnostics: Diagnostics,
        wakeups: Wakeups,
        max_hellos_in_flight: int = DEFAULT_MAX_CONNECTING,
        script_runs: ScriptRuns | None = None,
        workstation_help: WorkstationHelp | None = None,
        self_service: SelfService | None = None,
        ratings: WorkstationRatings | None = None,
    ) -> None:
        self._sessions = sessions
        self._admission = admission
        self._session_rows = session_rows
        self._heartbeats = heartbeats
        self._commands = commands
        self._diagnostics = diagnostics
        self._wakeups = wakeups
        self._script_runs = script_runs
        self._workstation_help = workstation_help
        self._self_service = self_service
        self._ratings = ratings
        self._max_hellos = max_hellos_in_flight
        self._hellos = 0

    # The read/write API of grpc.aio: the method writes with context.write and returns None.
    async def Session(  # type: ignore[override]
        self, request_iterator: AsyncIterator[agent_pb2.AgentMessage], context: Context
    ) -> None:
        if self._hellos >= self._max_hellos:
            await self._come_back_later(context)
        self._hellos += 1
        try:
            connection = await self._admit(request_iterator, context)
        finally:
            self._hellos -= 1
        await self._serve(connection, request_iterator, context)

    async def _come_back_later(self, context: Context) -> None:
        retry_ms = random.randint(*RETRY_AFTER_MS)  # noqa: S311 (spreading retries, not secrets)
        context.set_trailing_metadata(((RETRY_AFTER_MS_KEY, str(retry_ms)),))
        await context.abort(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"{self._hellos} agents are connecting at once; retry in {retry_ms / 1000:.1f} s",
        )

    async def _admit(
        self, request_iterator: AsyncIterator[agent_pb2.AgentMessage], context: Context
    ) -> AgentConnection:
        """Check the certificate's agent, read its Hello, attach it and send Welcome."""
        try:
            agent_id = certificate_agent_id(context)
        except (Unauthenticated, ValueError) as error:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, str(error))
        if not await self._admission.admits(agent_id):
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"agent {agent_id} is revoked or unknown; it must be enrolled again with a new key",
            )
        hello = await self._receive_hello(request_iterator, context)
        if hello.agent_id and hello.agent_id != agent_id:
            log.warning("agent %s said it was %r: ignored", agent_id, hello.agent_id[:64])
        info = hello_info(hello)
        hostname = sanitized(info.hostname, max_chars=MAX_HOSTNAME_CHARS) or agent_id
        now = utc_now()
        connection = self._sessions.attach(agent_id, hostname, now)
        if hello.HasField("boot_time"):
            connection.boot_time = hello.boot_time.ToDatetime(tzinfo=dt.UTC)
        self._wakeups.attach_session(agent_id, connection.on_wake)
        welcome = agent_pb2.ServerMessage()
        welcome.welcome.heartbeat_interval_s = int(self._sessions.heartbeat_interval_s)
        welcome.welcome.server_time.FromDatetime(now)
        await context.write(welcome)
        self._session_rows.add(
            SessionOpened(agent_id, connection.session_id, info, context.peer(), now)
        )
        log.info("agent %s (%s) connected from %s", hostname, agent_id, context.peer())
        return connection

    async def _serve(
        self,
        connection: AgentConnection,
        request_iterator: AsyncIterator[agent_pb2.AgentMessage],
        context: Context,
    ) -> None:
        agent_id = connection.agent_id
        tasks = [
            asyncio.create_task(self._read(connection, request_iterator)),
            asyncio.create_task(self._deliver(connection)),
        ]
        try:
            await self._write(connection, context)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            self._wakeups.detach_session(agent_id, connection.on_wake)
            self._wakeups.detach_stream(connection)
            if self._sessions.detach(connection):
                self._session_rows.add(SessionClosed(agent_id, connection.session_id, utc_now()))
            log.info(
                "agent %s disconnected: %s", agent_id, connection.close_reason or "stream ended"
            )
        if connection.revoked:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, f"agent {agent_id} was revoked")

    async def _receive_hello(
        self, request_iterator: AsyncIterator[agent_pb2.AgentMessage], context: Context
    ) -> agent_pb2.Hello:
        try:
            first = await asyncio.wait_for(anext(request_iterator), HELLO_TIMEOUT_S)
        except (TimeoutError, StopAsyncIteration):
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"no Hello within {HELLO_TIMEOUT_S:.0f} s of opening the session",
            )
        if not first.HasField("hello"):
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "the first message of a session must be Hello"
            )
        return first.hello

    async def _deliver(self, connection: AgentConnection) -> None:
        """Send the agent's due commands: all that are open when it connects, then each one
        queued for it (queued on this replica: handed over by the queueing unit itself; else
        woken by the wake-ups, or by the replica's periodic look)."""
        resend = True
        while not connection.closing:
            connection.due.clear()
            known_due, connection.due_known = connection.due_known, False
            if resend and self._script_runs is not None:
                await self._checks_after_restart(connection)
            try:
                due = await self._commands.claim_due(
                    connection.agent_id,
                    connection.session_id,
                    resend_delivered=resend,
                    known_due=known_due,
                )
            except Exception:
                log.exception("agent %s: could not read its due commands", connection.agent_id)
                due = []
                await asyncio.sleep(1.0)
                connection.due.set()
            orders = await self._orders(connection.agent_id, due)
            if resend:  # what was due at connect goes first; then commands come directly
                self._wakeups.attach_stream(connection)
            resend = False
            connection.deliver(due, orders)
            await connection.due.wait()

    async def _checks_after_restart(self, connection: AgentConnection) -> None:
        """Runs whose fix needed a restart are verified once the machine has restarted."""
        assert self._script_runs is not None
        try:
            await self._script_runs.verify_after_restart(connection.agent_id, connection.boot_time)
        except Exception:
            log.exception("agent %s: could not queue its runs' checks", connection.agent_id)

    async def _orders(
        self, agent_id: str, due: list[CommandRecord]
    ) -> dict[str, remediation_pb2.SignedRunScript]:
        """The signed orders of the script runs among `due`; none when they cannot be made
        (no dispatch key, the database): those runs stay delivered, resent at the next
        connect, and end interrupted after their expiry if they never reach the agent."""
        if self._script_runs is None or not any(
            command.kind is CommandKind.RUN_SCRIPT for command in due
        ):
            return {}
        try:
            return await self._script_runs.orders(due)
        except Exception:
            log.exception("agent %s: could not sign its script runs' orders", agent_id)
            return {}

    async def _write(self, connection: AgentConnection, context: Context) -> None:
        while True:
            message = await connection.outbound.get()
            if message is None:
                break
            await context.write(message)
        if connection.revoked:
            revoked = agent_pb2.ServerMessage()
            revoked.revoked.reason = connection.close_reason
            await context.write(revoked)

    async def _read(
        self, connection: AgentConnection, request_iterator: AsyncIterator[agent_pb2.AgentMessage]
    ) -> None:
        agent_id = connection.agent_id
        warnings = StreamWarnings(agent_id)
        try:
            async for message in request_iterator:
                connection.heard_from()
                warnings.tick()
                kind = message.WhichOneof("kind")
                if kind == "heartbeat":
                    self._heartbeats.add(_heartbeat_record(agent_id, message.heartbeat))
                elif kind == "script_output":
                    await self._output(agent_id, message.script_output, warnings)
                elif kind == "result":
                    await self._accept(agent_id, message.result, warnings)
                    ack = agent_pb2.ServerMessage()
                    ack.ack.command_id = message.result.command_id
                    connection.send(ack)
                elif kind == "help_request":
                    reply = await self._help(agent_id, message.help_request, warnings)
                    connection.send(agent_pb2.ServerMessage(help_reply=reply))
                elif kind == "self_service":
                    answer = await self._fix(agent_id, message.self_service, warnings)
                    connection.send(agent_pb2.ServerMessage(self_service_reply=answer))
                elif kind == "rating":
                    rated = await self._rate(agent_id, message.rating, warnings)
                    connection.send(agent_pb2.ServerMessage(rating_reply=rated))
                else:
                    warnings.warn("sent an unexpected %s message: ignored", kind or "empty")
        except grpc.aio.AioRpcError:
            pass
        except Exception:
            log.exception("agent %s: error while reading its stream", agent_id)
        finally:
            warnings.flush()
            connection.close(connection.close_reason or "the agent closed its stream")

    async def _help(
        self, agent_id: str, request: agent_pb2.HelpRequest, warnings: StreamWarnings
    ) -> agent_pb2.HelpReply:
        """Open the ticket its user asked for (docs/agent.md, "Asking for help from the
        workstation"); the reply says its number or why not."""
        reply = agent_pb2.HelpReply(request_id=request.request_id[:64])
        if self._workstation_help is None:
            reply.refusal = "this server does not take requests for help from workstations"
            return reply
        received_at = utc_now()
        snapshot = request.snapshot if request.HasField("snapshot") else None
        found = []
        if snapshot is not None:
            snapshot.agent_id = agent_id
            try:
                found = evaluate(snapshot, CheckContext(reference_time=received_at))
            except Exception as error:  # a snapshot the checks cannot read: the words still count
                warnings.warn("sent a help request whose snapshot cannot be read (%s)", error)
                snapshot = None
        asked = HelpAsked(
            agent_id, request.description, request.local_user, snapshot, found, received_at
        )
        try:
            ticket = await self._workstation_help.open(asked)
        except SondeError as refused:
            warnings.warn("asked for help and was refused: %s", refused)
            reply.refusal = str(refused)
            return reply
        log.info(
            "agent %s: ticket #%d opened for its user %s", agent_id, ticket.id, ticket.requester
        )
        reply.ticket_id = ticket.id
        return reply

    async def _fix(
        self, agent_id: str, request: agent_pb2.SelfServiceRequest, warnings: StreamWarnings
    ) -> agent_pb2.SelfServiceReply:
        """`sonde-agent fix`: the self-service scripts, or the run queued on its ticket
        (docs/agent.md, "Self-service fixes"); the reply says which, or why not."""
        reply = agent_pb2.SelfServiceReply(request_id=request.request_id[:64])
        if self._self_service is None:
            reply.refusal = "this server does not take self-service fixes from workstations"
            return reply
        try:
            if not request.script_id:
                for script in await self._self_service.scripts(agent_id):
                    reply.scripts.add(
                        id=script.id,
                        version=script.version,
                        title=script.title,
                        description=script.description,
                    )
                return reply
            run = await self._self_service.fix(
                agent_id, request.script_id[:65], request.local_user, request.ticket_id or None
            )
        except SondeError as refused:
            warnings.warn("asked for a self-service fix and was refused: %s", refused)
            reply.refusal = str(refused)
            return reply
        log.info(
            "agent %s: self-service run %s of %s on ticket #%d",
            agent_id,
            run.command_id,
            request.script_id,
            run.ticket_id,
        )
        reply.command_id = run.command_id
        reply.ticket_id = run.ticket_id
        reply.script_title = run.script_title
        return reply

    async def _rate(
        self, agent_id: str, request: agent_pb2.RatingRequest, warnings: StreamWarnings
    ) -> agent_pb2.RatingReply:
        """`sonde-agent rate`: the user's requests waiting for a rating, or their rating stored
        (server/domain/workstation_rating.py); the reply says which, or why not."""
        reply = agent_pb2.RatingReply(request_id=request.request_id[:64])
        if self._ratings is None:
            reply.refusal = "this server does not take ratings from workstations"
            return reply
        try:
            if not request.ticket_id:
                for waiting in await self._ratings.waiting(agent_id, request.local_user):
                    asked = reply.asked.add(
                        ticket_id=waiting.ticket_id,
                        title=waiting.title,
                        resolution=waiting.resolution,
                    )
                    if waiting.resolved_at is not None:
                        asked.resolved_at.FromDatetime(waiting.resolved_at)
                return reply
            rated = await self._ratings.answer(
                agent_id,
                request.local_user,
                request.ticket_id,
                request.rating,
                request.comment,
            )
        except SondeError as refused:
            warnings.warn("sent a rating that was refused: %s", refused)
            reply.refusal = str(refused)
            return reply
        reply.rated_ticket_id = rated.ticket_id
        return reply

    async def _output(
        self, agent_id: str, chunk: agent_pb2.ScriptOutput, warnings: StreamWarnings
    ) -> None:
        """A running script's output, kept (bounded) for `sonde runs show --follow`."""
        if self._script_runs is None:
            return
        try:
            kept = await self._script_runs.append_output(agent_id, chunk)
        except SondeError as refused:
            warnings.warn("sent script output that was refused: %s", refused)
            return
        if not kept:
            warnings.warn(
                "sent output for command %s, not a running script of its own: dropped",
                chunk.command_id[:64],
            )

    async def _accept(
        self, agent_id: str, result: agent_pb2.Result, warnings: StreamWarnings
    ) -> None:
        """Store a result, or refuse it with one warning; either way it is acknowledged."""
        received_at = utc_now()
        if result.HasField("script_run") and self._script_runs is not None:
            try:
                _, changed = await self._script_runs.accept_result(agent_id, result, received_at)
            except SondeError as refused:
                warnings.warn("sent a script result that was refused: %s", refused)
                return
            if not changed:
                warnings.warn(
                    "resent the result of run %s, which had already ended: dropped",
                    result.command_id[:64],
                )
            return
        found = []
        unreadable: Exception | None = None
        if result.HasField("snapshot"):
            result.snapshot.agent_id = agent_id
            try:
                found = evaluate(result.snapshot, CheckContext(reference_time=received_at))
            except Exception as error:  # e.g. a Timestamp out of range: the same on every resend
                unreadable = error
                result = _unreadable_snapshot(result.command_id, error)
        try:
            accepted = await self._diagnostics.accept_result(agent_id, result, found, received_at)
        except SondeError as refused:
            # Unknown, another agent's, not yet sent: dropped, nothing changed, audited.
            warnings.warn("sent a result that was refused: %s", refused)
            return
        command = accepted.command
        if not accepted.changed:
            warnings.warn(
                "resent the result of command %s, which had already ended %s: dropped",
                command.id,
                command.state.value,
            )
        elif unreadable is not None:
            warnings.warn(
                "sent a snapshot for command %s that the checks cannot read (%s): it failed",
                command.id,
                unreadable,
            )


def _heartbeat_record(agent_id: str, beat: agent_pb2.Heartbeat) -> HeartbeatRecord:
    return HeartbeatRecord(
        agent_id=agent_id,
        at=utc_now(),
        cpu_percent=beat.cpu_percent,
        memory_percent=beat.memory_percent,
        system_disk_percent=beat.system_disk_percent,
    )
