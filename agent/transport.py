"""The stream session: one mTLS AgentService.Session kept open, reconnected with backoff.

On it the agent says Hello, waits for Welcome, resends its outbox, sends heartbeats, runs
the Collect commands the server pushes and sends their results, dropping each result from
the outbox only once the server acknowledges it. Run orders (run_script) are checked and run
by agent/remediation/orders.py in a short-lived child process (agent/order_process.py): a
refusal or a run's Result goes through the outbox, its output as ScriptOutput chunks on the
stream while it runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import grpc
import grpc.aio
import psutil

import sonde
from sonde.agent import exit_codes
from sonde.agent.backoff import AddressRotation, Backoff
from sonde.agent.diagnostic_hold import wait_while_held
from sonde.agent.heartbeat import build_heartbeat, now_timestamp, prime_cpu_gauge
from sonde.agent.journal import Outbox, is_command_id
from sonde.agent.platform_info import describe_machine
from sonde.agent.run_record import recover_interrupted
from sonde.agent.self_service import FIX_WAIT_S, FixProgress, RunEnds, ended_answer
from sonde.agent.server_replies import AwaitedReplies
from sonde.agent.state import AgentState, Credentials
from sonde.v1 import agent_pb2, agent_pb2_grpc, diagnostics_pb2, remediation_pb2
from sonde.wire_limits import RETRY_AFTER_MS_KEY

if TYPE_CHECKING:  # loaded with the first run order: the idle agent keeps cryptography out
    from sonde.agent.order_process import OrderProcess

log = logging.getLogger(__name__)

# Must agree with the server's keepalive policy (see PERFORMANCE.md): a ping every 30 s
# keeps NAT state alive and finds a dead server within 40 s.
KEEPALIVE_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
)
# From the Hello written (TLS done) to Welcome; the server lets a session wait as long
# (server/api/app.py). In a connect storm it answers its established sessions in turn:
# 10,000 at once on 2 cores took up to 30 s, and an agent giving up then starts a new TCP +
# TLS handshake at the back of the queue.
WELCOME_TIMEOUT_S = 60.0
DEFAULT_HEARTBEAT_S = 30
MAX_CONCURRENT_COLLECTS = 2
# The server refuses messages over 4 MiB; a result that big would be refused on every
# reconnect and wedge the outbox, so it is replaced by a failure saying so.
MAX_RESULT_BYTES = 4 * 1024 * 1024 - 64 * 1024
# How long `sonde-agent help` waits for the server's HelpReply once its request is sent.
HELP_REPLY_TIMEOUT_S = 30.0
NOT_SENT = "your request for help was not sent: "

# A server's reply to the local user's request: refused, or what was asked for.
Refusable = TypeVar("Refusable", agent_pb2.SelfServiceReply, agent_pb2.RatingReply)
SessionCall = grpc.aio.StreamStreamCall[agent_pb2.AgentMessage, agent_pb2.ServerMessage]
CollectFn = Callable[[Sequence[str]], Awaitable[diagnostics_pb2.Snapshot]]


class AgentRevoked(Exception):
    """The server revoked this agent; it must not reconnect."""


class SessionEnded(Exception):
    """The stream ended in a way worth one log line (not a gRPC error)."""


@dataclass(frozen=True)
class SessionTarget:
    """Where and how the stream connects: addresses, pinned CA, our key and certificate."""

    agent_addresses: tuple[str, ...]
    server_name: str
    credentials: Credentials

    @classmethod
    def from_state(cls, state: AgentState, credentials: Credentials) -> SessionTarget:
        return cls(state.agent_addresses, state.server_name, credentials)

    def open_channel(self, address: str) -> grpc.aio.Channel:
        # The only trust root is the pinned Sonde CA; there is deliberately no insecure path.
        channel_credentials = grpc.ssl_channel_credentials(
            root_certificates=self.credentials.ca_certificate_pem,
            private_key=self.credentials.private_key_pem,
            certificate_chain=self.credentials.certificate_pem,
        )
        options = [*KEEPALIVE_OPTIONS, ("grpc.ssl_target_name_override", self.server_name)]
        return grpc.aio.secure_channel(address, channel_credentials, options=options)


@dataclass(frozen=True)
class SessionEnd:
    """Why a session ended, and the wait the server asked for (RESOURCE_EXHAUSTED), if any."""

    reason: str
    retry_after_s: float | None = None


def _failure(
    command_id: str,
    reason: str,
    kind: agent_pb2.FailureKind.ValueType = agent_pb2.FAILURE_KIND_FAILED,
) -> agent_pb2.Result:
    return agent_pb2.Result(
        command_id=command_id, failure=agent_pb2.Failure(reason=reason, kind=kind)
    )


def _is_revocation(error: grpc.aio.AioRpcError) -> bool:
    revoked_codes = (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED)
    return error.code() in revoked_codes and "revoked" in (error.details() or "").lower()


def _retry_after_s(error: BaseException) -> float | None:
    """The server's `sonde-retry-after-ms` hint on a RESOURCE_EXHAUSTED status, in seconds."""
    if not isinstance(error, grpc.aio.AioRpcError):
        return None
    if error.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
        return None
    for key, value in error.trailing_metadata() or ():
        if key != RETRY_AFTER_MS_KEY:
            continue
        text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
        text = text.strip()
        # Bounded before int(): a garbled hint is ignored, not a reason to crash.
        if text.isascii() and text.isdigit() and len(text) <= 12:
            return int(text) / 1000
    return None


def _describe(error: BaseException) -> str:
    if isinstance(error, grpc.aio.AioRpcError):
        details = " ".join((error.details() or "no details").split())
        return f"{error.code().name}: {details}"
    if isinstance(error, TimeoutError):
        return f"no Welcome from the server within {WELCOME_TIMEOUT_S:g} s"
    text = " ".join(str(error).split())
    return text if isinstance(error, SessionEnded) else f"{type(error).__name__}: {text}"


class _Sender:
    """Serialises writes: grpc.aio allows one outstanding write per stream."""

    def __init__(
        self, call: grpc.aio.StreamStreamCall[agent_pb2.AgentMessage, agent_pb2.ServerMessage]
    ) -> None:
        self._call = call
        self._lock = asyncio.Lock()

    async def send(self, message: agent_pb2.AgentMessage) -> None:
        async with self._lock:
            await self._call.write(message)


class AgentRuntime:
    """Keeps the session alive until stopped or revoked; owns the running collections."""

    def __init__(
        self,
        *,
        state: AgentState,
        target: SessionTarget,
        outbox: Outbox,
        collect: CollectFn,
        collectors: Sequence[str],
        backoff: Backoff | None = None,
        state_dir: Path | None = None,
    ) -> None:
        self._state = state
        # Where run orders are recorded; None: this runtime refuses to run scripts.
        self._state_dir = state_dir
        self._run_cancels: dict[str, asyncio.Event] = {}
        # One script at a time: two fixes racing on one machine (a restart and a reboot) help
        # nobody. The others wait, not yet recorded as started.
        self._script_slot = asyncio.Semaphore(1)
        self._target = target
        self._outbox = outbox
        self._collect = collect
        self._collectors = list(collectors)
        self._rotation = AddressRotation(target.agent_addresses, backoff or Backoff())
        self._sender: _Sender | None = None
        self._running: dict[str, asyncio.Task[None]] = {}
        self._cancelled: set[str] = set()
        self._slots = asyncio.Semaphore(MAX_CONCURRENT_COLLECTS)
        # Help requests sent and waiting for their HelpReply; one at a time.
        self._help_replies = AwaitedReplies[agent_pb2.HelpReply]()
        self._help_slot = asyncio.Lock()
        # `sonde-agent fix`: its requests waiting for the server's reply, and the runs' ends.
        self._fix_replies = AwaitedReplies[agent_pb2.SelfServiceReply]()
        self._run_ends = RunEnds()
        # `sonde-agent rate`: its requests waiting for the server's reply.
        self._rating_replies = AwaitedReplies[agent_pb2.RatingReply]()

    async def run(self, stop: asyncio.Event) -> int:
        """Return the exit code: 0 once `stop` is set, 4 when revoked."""
        prime_cpu_gauge()
        if self._state_dir is not None:
            # Runs the agent stopped during: reported interrupted once online, never rerun.
            recover_interrupted(self._state_dir, self._outbox)
        try:
            while not stop.is_set():
                address = self._rotation.current
                ended = await self._one_session_or_stop(stop, address)
                if ended is None:
                    return exit_codes.OK
                delay = self._plan_reconnect(address, ended)
                if delay <= 0:
                    continue
                try:
                    await asyncio.wait_for(stop.wait(), delay)
                except TimeoutError:
                    continue
            return exit_codes.OK
        except AgentRevoked as revoked:
            log.error("this agent has been revoked by the server (%s); not reconnecting", revoked)
            return exit_codes.REVOKED
        finally:
            await self._cancel_collections()

    def _plan_reconnect(self, address: str, ended: SessionEnd) -> float:
        """Move on to the next address; log why and when; the seconds to wait first."""
        rotation = self._rotation
        several = rotation.count > 1
        if ended.retry_after_s is not None:
            delay = rotation.asked_to_wait(ended.retry_after_s)
            plan = f"the server asks to wait {ended.retry_after_s:.1f} s; "
        else:
            delay = rotation.failed()
            plan = f"all {rotation.count} addresses failed; " if several and delay > 0 else ""
        if delay > 0:
            plan += f"reconnecting in {delay:.1f} s" + (
                f" to {rotation.current}" if several else ""
            )
        else:
            plan += f"trying {rotation.current} now"
        source = f" from {address}" if several else ""
        log.warning("disconnected%s (%s); %s", source, ended.reason, plan)
        return delay

    async def _one_session_or_stop(self, stop: asyncio.Event, address: str) -> SessionEnd | None:
        """Run one session; why it ended, or None when stop was asked for."""
        session = asyncio.create_task(self._session(address))
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait({session, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if not session.done():
            session.cancel()
            await asyncio.gather(session, return_exceptions=True)
            log.info("stopping: stream closed")
            return None
        error = session.exception()
        if error is None:
            return SessionEnd("the server ended the stream")
        if isinstance(error, AgentRevoked):
            raise error
        if isinstance(error, grpc.aio.AioRpcError) and _is_revocation(error):
            raise AgentRevoked(error.details()) from error
        return SessionEnd(_describe(error), _retry_after_s(error))

    def _hello(self) -> agent_pb2.Hello:
        machine = describe_machine()
        hello = agent_pb2.Hello(
            agent_id=self._state.agent_id,
            agent_version=sonde.__version__,
            hostname=machine.hostname,
            platform=machine.platform,
            os_name=machine.os_name,
            os_version=machine.os_version,
            collectors=self._collectors,
            interpreters=machine.interpreters,
            agent_time=now_timestamp(),
        )
        with contextlib.suppress(OSError, ValueError):  # a sandbox that hides it: not sent
            hello.boot_time.FromSeconds(int(psutil.boot_time()))
        return hello

    async def _session(self, address: str) -> None:
        async with self._target.open_channel(address) as channel:
            call = agent_pb2_grpc.AgentServiceStub(channel).Session()
            sender = _Sender(call)
            # The TLS handshake (pinned CA, server name) completes before this is written.
            with contextlib.suppress(asyncio.InvalidStateError):
                # A server that refused the call at once: the read below raises its status.
                await sender.send(agent_pb2.AgentMessage(hello=self._hello()))
            first = await asyncio.wait_for(call.read(), WELCOME_TIMEOUT_S)
            if first is grpc.aio.EOF:
                raise SessionEnded("the server closed the stream before its Welcome")
            assert isinstance(first, agent_pb2.ServerMessage)
            kind = first.WhichOneof("kind")
            if kind == "revoked":
                raise AgentRevoked(first.revoked.reason or "no reason given")
            if kind != "welcome":
                raise SessionEnded(f"the server sent {kind} before its Welcome")
            self._rotation.connected()
            interval = first.welcome.heartbeat_interval_s or DEFAULT_HEARTBEAT_S
            log.info(
                "online: %s as agent %s (heartbeat every %d s, %d results to resend)",
                address,
                self._state.agent_id,
                interval,
                self._outbox.count(),
            )
            self._sender = sender
            heartbeats = asyncio.create_task(self._heartbeats(sender, interval))
            try:
                for pending in self._outbox.pending():
                    result = agent_pb2.Result.FromString(pending.result)
                    await sender.send(agent_pb2.AgentMessage(result=result))
                await self._serve(call)
            finally:
                self._sender = None
                for replies in (self._help_replies, self._fix_replies, self._rating_replies):
                    replies.end(SessionEnded("the stream to the server ended"))
                heartbeats.cancel()
                await asyncio.gather(heartbeats, return_exceptions=True)

    async def _serve(self, call: SessionCall) -> None:
        while True:
            message = await call.read()
            if message is grpc.aio.EOF:
                return
            assert isinstance(message, agent_pb2.ServerMessage)
            kind = message.WhichOneof("kind")
            if kind == "collect":
                await self._on_collect(message.collect)
            elif kind == "run_script":
                await self._on_run_script(message.run_script)
            elif kind == "cancel":
                self._on_cancel(message.cancel.command_id)
            elif kind == "ack":
                self._outbox.acknowledge(message.ack.command_id)
            elif kind == "help_reply":
                self._help_replies.settle(message.help_reply.request_id, message.help_reply)
            elif kind == "self_service_reply":
                reply = message.self_service_reply
                self._fix_replies.settle(reply.request_id, reply)
            elif kind == "rating_reply":
                rated = message.rating_reply
                self._rating_replies.settle(rated.request_id, rated)
            elif kind == "revoked":
                raise AgentRevoked(message.revoked.reason or "no reason given")
            else:
                log.debug("ignoring a %s message", kind)

    async def _heartbeats(self, sender: _Sender, interval_s: int) -> None:
        """One at once, so the machine's gauges are known as soon as it is online (not 0 %
        until the first interval ends), then one every interval."""
        first = True
        while True:
            if not first:
                await asyncio.sleep(interval_s)
            first = False
            heartbeat = build_heartbeat(outbox_pending=self._outbox.count())
            try:
                await sender.send(agent_pb2.AgentMessage(heartbeat=heartbeat))
            except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
                return  # the stream is gone; the session's reader reports why

    async def _on_collect(self, collect: agent_pb2.Collect) -> None:
        command_id = collect.command_id
        if not is_command_id(command_id):
            # The outbox cannot keep its result, so it is refused before anything runs.
            reason = "refused: a command id is 1 to 200 printable ASCII characters without spaces"
            log.warning("refusing a Collect with the command id %r", command_id[:64])
            await self._send_result(_failure(command_id, reason, agent_pb2.FAILURE_KIND_REFUSED))
            return
        if command_id in self._running:
            return  # already running: its result is sent when it finishes
        stored = self._outbox.get(command_id)
        if stored is not None:
            # Resent after a reconnect or restart: answer from the outbox, do not run twice.
            await self._send_result(agent_pb2.Result.FromString(stored))
            return
        if self._outbox.is_completed(command_id):
            reason = "already ran on this agent and its result was acknowledged"
            await self._deliver(_failure(command_id, reason, agent_pb2.FAILURE_KIND_REFUSED))
            return
        if collect.HasField("expires_at"):
            expires_at = collect.expires_at.ToDatetime(tzinfo=datetime.UTC)
            if expires_at <= datetime.datetime.now(datetime.UTC):
                reason = (
                    f"expired at {expires_at.isoformat(timespec='seconds')} before it could run"
                )
                await self._deliver(_failure(command_id, reason, agent_pb2.FAILURE_KIND_EXPIRED))
                return
        log.info("running command %s (a full diagnostic)", command_id)
        task = asyncio.create_task(self._run_collect(command_id, list(collect.collectors)))
        self._running[command_id] = task
        task.add_done_callback(lambda _: self._running.pop(command_id, None))

    async def _on_run_script(self, signed: remediation_pb2.SignedRunScript) -> None:
        if self._state_dir is None:
            log.warning("ignoring a run order: this agent runs no scripts")
            return
        from sonde.agent.order_process import check_order

        # Awaited here, so orders keep their order of arrival for the script slot.
        checked = await check_order(
            self._state_dir, self._state.agent_id, signed, self._outbox.is_completed
        )
        if isinstance(checked, agent_pb2.Result):
            await self._refuse_order(checked)
            return
        command_id = checked.command_id
        if command_id in self._running:
            await checked.abandon()  # cannot happen (the record refuses a replay): a guard
            return
        ready: OrderProcess | None = checked
        if self._script_slot.locked():
            # Another script runs: this one's process is let go while it waits (a server can
            # send many), and a new one checks the order again when its turn comes.
            await checked.abandon()
            ready = None
        cancel = asyncio.Event()
        self._run_cancels[command_id] = cancel
        task = asyncio.create_task(self._run_order(signed, command_id, ready, cancel))
        self._running[command_id] = task

        def done(_: asyncio.Task[None]) -> None:
            self._running.pop(command_id, None)
            self._run_cancels.pop(command_id, None)

        task.add_done_callback(done)

    async def _refuse_order(self, result: agent_pb2.Result) -> None:
        """The answer to an order that does not run: its refusal (or why it was not checked)."""
        command_id = result.command_id
        log.warning(
            "refused a run order%s (%s): %s",
            f" for command {command_id}" if command_id else "",
            result.failure.refusal or "not checked",
            result.failure.reason,
        )
        if command_id in self._running:
            return  # a copy of an order now running: its own result is sent when it ends
        stored = self._outbox.get(command_id) if is_command_id(command_id) else None
        if stored is not None:
            # The server resent it (its ack or our result was lost): the result it lacks. A
            # refusal never replaces the result of what ran under that id.
            await self._send_result(agent_pb2.Result.FromString(stored))
            return
        if is_command_id(command_id):
            await self._deliver(result)
        else:
            await self._send_result(result)  # no id the outbox can keep: sent once

    async def _run_order(
        self,
        signed: remediation_pb2.SignedRunScript,
        command_id: str,
        order: OrderProcess | None,
        cancel: asyncio.Event,
    ) -> None:
        """Runs it once the script slot is free; `order` None: its process was let go while
        it waited, so a new one checks it again first."""
        from sonde.agent.order_process import check_order

        async def send_output(output: agent_pb2.ScriptOutput) -> None:
            sender = self._sender
            if sender is None:
                return  # offline: the Result carries the output kept
            with contextlib.suppress(grpc.aio.AioRpcError, asyncio.InvalidStateError):
                await sender.send(agent_pb2.AgentMessage(script_output=output))

        assert self._state_dir is not None
        async with self._script_slot:
            if cancel.is_set():
                if order is not None:
                    await order.abandon()
                reason = "cancelled by the server before it started"
                await self._deliver(_failure(command_id, reason, agent_pb2.FAILURE_KIND_CANCELLED))
                return
            if order is None:
                checked = await check_order(
                    self._state_dir, self._state.agent_id, signed, self._outbox.is_completed
                )
                if isinstance(checked, agent_pb2.Result):  # it expired while it waited, ...
                    log.warning("refused command %s: %s", command_id, checked.failure.reason)
                    await self._deliver(checked)
                    return
                order = checked
            result = await order.run(send_output, cancel)
            await self._deliver(result)
            order.finish()

    def _on_cancel(self, command_id: str) -> None:
        run_cancel = self._run_cancels.get(command_id)
        if run_cancel is not None:
            # The runner stops the script's tree and reports the run cancelled.
            log.info("cancelling the run of command %s", command_id)
            run_cancel.set()
            return
        task = self._running.get(command_id)
        if task is not None:
            self._cancelled.add(command_id)
            task.cancel()

    async def _run_collect(self, command_id: str, collectors: list[str]) -> None:
        try:
            await wait_while_held(command_id)  # a test hook, off unless SONDE_AGENT_TEST_HOLD
            async with self._slots:
                snapshot = await self._collect(collectors)
            snapshot.agent_id = self._state.agent_id
            snapshot.agent_version = sonde.__version__
            result = agent_pb2.Result(command_id=command_id, snapshot=snapshot)
        except asyncio.CancelledError:
            if command_id not in self._cancelled:
                raise  # the agent is stopping: the server will resend it
            self._cancelled.discard(command_id)
            reason = "cancelled by the server before it finished"
            result = _failure(command_id, reason, agent_pb2.FAILURE_KIND_CANCELLED)
        except Exception as error:
            reason = f"collection failed: {' '.join(str(error).split()) or type(error).__name__}"
            result = _failure(command_id, reason)
        await self._deliver(result)

    async def _deliver(self, result: agent_pb2.Result) -> None:
        """Outbox first, then the stream: a crash in between loses nothing."""
        size = result.ByteSize()
        if size > MAX_RESULT_BYTES:
            reason = f"the result was {size} bytes, over the {MAX_RESULT_BYTES}-byte message limit"
            log.warning("command %s: %s; sending a failure instead", result.command_id, reason)
            result = _failure(result.command_id, reason)
        self._run_ends.ended(result)
        self._outbox.put(result.command_id, result.SerializeToString())
        await self._send_result(result)

    async def _send_result(self, result: agent_pb2.Result) -> None:
        sender = self._sender
        if sender is None:
            return  # offline: the outbox resends it after the next Welcome
        # If the stream broke meanwhile, the outbox still holds the result.
        with contextlib.suppress(grpc.aio.AioRpcError, asyncio.InvalidStateError):
            await sender.send(agent_pb2.AgentMessage(result=result))

    async def ask_for_help(self, description: str, local_user: str) -> agent_pb2.LocalHelpAnswer:
        """Collect a fresh snapshot and send the user's request; the ticket or why not.

        Nothing is kept when it fails: the user is told it was not sent (and calls the
        helpdesk), so a copy sent later would only open the same ticket twice.
        """
        hostname = describe_machine().hostname
        if self._help_slot.locked():
            return agent_pb2.LocalHelpAnswer(
                error="another request for help from this computer is being sent; try again "
                "in a minute",
                hostname=hostname,
            )
        async with self._help_slot:
            answer = await self._send_help(description, local_user)
        answer.hostname = hostname
        return answer

    async def _send_help(self, description: str, local_user: str) -> agent_pb2.LocalHelpAnswer:
        if self._sender is None:
            return agent_pb2.LocalHelpAnswer(
                error=NOT_SENT + "this computer is not connected to the helpdesk server right "
                "now; call the helpdesk, or try again later"
            )
        try:
            async with self._slots:
                snapshot = await self._collect([])
        except Exception as error:
            log.warning("help request: the collection failed (%s); sent without a snapshot", error)
            snapshot = diagnostics_pb2.Snapshot()
        snapshot.agent_id = self._state.agent_id
        snapshot.agent_version = sonde.__version__
        request = agent_pb2.HelpRequest(
            request_id=os.urandom(16).hex(),
            description=description,
            local_user=local_user,
            snapshot=snapshot,
        )
        if request.ByteSize() > MAX_RESULT_BYTES:
            request.ClearField("snapshot")  # the server refuses messages that big
        sender = self._sender
        if sender is None:
            return agent_pb2.LocalHelpAnswer(
                error=NOT_SENT + "the connection to the helpdesk server was lost; try again"
            )
        try:
            reply = await self._help_replies.ask(
                request.request_id,
                lambda: sender.send(agent_pb2.AgentMessage(help_request=request)),
                HELP_REPLY_TIMEOUT_S,
            )
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError, SessionEnded):
            return agent_pb2.LocalHelpAnswer(
                error="the connection to the helpdesk server was lost before it answered: your "
                "request may not have been received; call the helpdesk"
            )
        except TimeoutError:
            return agent_pb2.LocalHelpAnswer(
                error=f"the helpdesk server did not answer within {HELP_REPLY_TIMEOUT_S:g} s: "
                "your request may not have been received; call the helpdesk"
            )
        if reply.refusal or not reply.ticket_id:
            refusal = " ".join(reply.refusal.split()) or "no reason given"
            return agent_pb2.LocalHelpAnswer(error=f"the helpdesk refused it: {refusal}")
        log.info("help request of user %s: ticket #%d opened", local_user, reply.ticket_id)
        return agent_pb2.LocalHelpAnswer(ticket_id=reply.ticket_id)

    async def self_service(
        self, ask: agent_pb2.LocalFixAsk, local_user: str, progress: FixProgress
    ) -> agent_pb2.LocalHelpAnswer:
        """`sonde-agent fix`: the scripts the server allows, or a run queued (told through
        `progress`) and then how it ended (docs/agent.md, "Self-service fixes")."""
        request = agent_pb2.SelfServiceRequest(
            request_id=os.urandom(16).hex(),
            local_user=local_user,
            script_id=ask.script_id[:65],
            ticket_id=ask.ticket_id,
        )
        reply = await self._ask_server(
            self._fix_replies,
            request.request_id,
            agent_pb2.AgentMessage(self_service=request),
            offline="nothing was run; try again later, or call the helpdesk",
            lost="if a fix was asked for, its ticket shows whether it ran",
        )
        if isinstance(reply, agent_pb2.LocalHelpAnswer):
            return reply
        if not ask.script_id:
            return agent_pb2.LocalHelpAnswer(fix=agent_pb2.LocalFixAnswer(scripts=reply.scripts))
        queued = agent_pb2.LocalFixAnswer(
            command_id=reply.command_id, script_title=reply.script_title
        )
        log.info(
            "user %s runs the self-service script %s (command %s, ticket #%d)",
            local_user,
            ask.script_id,
            reply.command_id,
            reply.ticket_id,
        )
        await progress(agent_pb2.LocalHelpAnswer(ticket_id=reply.ticket_id, fix=queued))
        result = await self._run_ends.wait(reply.command_id, FIX_WAIT_S)
        if result is None:
            queued.output_tail = (
                f"still running after {FIX_WAIT_S:g} s: ticket #{reply.ticket_id} will show how "
                "it ends"
            )
            return agent_pb2.LocalHelpAnswer(ticket_id=reply.ticket_id, fix=queued)
        return agent_pb2.LocalHelpAnswer(ticket_id=reply.ticket_id, fix=ended_answer(result))

    async def rate_resolution(
        self, ask: agent_pb2.LocalRateAsk, local_user: str
    ) -> agent_pb2.LocalHelpAnswer:
        """`sonde-agent rate`: the user's resolved requests waiting for a rating, or their
        rating sent and stored (docs/web.md, "Satisfaction")."""
        request = agent_pb2.RatingRequest(
            request_id=os.urandom(16).hex(),
            local_user=local_user,
            ticket_id=ask.ticket_id,
            rating=ask.rating,
            comment=ask.comment,
        )
        reply = await self._ask_server(
            self._rating_replies,
            request.request_id,
            agent_pb2.AgentMessage(rating=request),
            offline="try again later",
            lost="try again later",
        )
        if isinstance(reply, agent_pb2.LocalHelpAnswer):
            return reply
        if not ask.ticket_id:
            return agent_pb2.LocalHelpAnswer(rate=agent_pb2.LocalRateAnswer(asked=reply.asked))
        log.info("user %s rated ticket #%d %d/5", local_user, reply.rated_ticket_id, ask.rating)
        rated = agent_pb2.LocalRateAnswer(rated=reply.rated_ticket_id == ask.ticket_id)
        return agent_pb2.LocalHelpAnswer(ticket_id=reply.rated_ticket_id, rate=rated)

    async def _ask_server(
        self,
        replies: AwaitedReplies[Refusable],
        request_id: str,
        message: agent_pb2.AgentMessage,
        *,
        offline: str,
        lost: str,
    ) -> Refusable | agent_pb2.LocalHelpAnswer:
        """Send the local user's `message` and wait for the server's reply; or the answer
        telling the user why there is none or what was refused (`offline`, `lost`: what it
        means for them when not connected, when the reply did not come)."""
        sender = self._sender
        if sender is None:
            return agent_pb2.LocalHelpAnswer(
                error=f"this computer is not connected to the helpdesk server right now: {offline}"
            )
        try:
            reply = await replies.ask(
                request_id, lambda: sender.send(message), HELP_REPLY_TIMEOUT_S
            )
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError, SessionEnded, TimeoutError):
            return agent_pb2.LocalHelpAnswer(
                error="the helpdesk server did not answer (the connection was lost or it "
                f"took over {HELP_REPLY_TIMEOUT_S:g} s); {lost}"
            )
        if reply.refusal:
            refusal = " ".join(reply.refusal.split())
            return agent_pb2.LocalHelpAnswer(error=f"refused by the helpdesk server: {refusal}")
        return reply

    async def _cancel_collections(self) -> None:
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
