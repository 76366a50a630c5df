"""Run orders on the agent: check a signed order, remember it before it starts, run it.

What happens to a ServerMessage.run_script (agent/transport.py hands it to a short-lived
process, agent/remediation/order_child.py, which calls this module):

1. The order is checked by sonde.catalog.envelope.verify_order with the keys pinned at
   enrollment (dispatch.pub, catalog.pub), this agent's id and platform, the workstation's
   policy (policy.toml, optional) and the record of the commands that ran here. A refusal
   becomes a Result with Failure(kind=REFUSED, refusal=<code>, reason=<sentence>); nothing
   runs. No pinned key, a damaged one, or a policy.toml that does not parse refuses every
   order, saying so.
2. A verified order is written to the run record (state_dir/runs/, one file per command,
   fsynced) as started BEFORE the script starts, and kept until the order's expiry: an order
   replayed while it is remembered is refused as replayed.
3. The script runs (agent/remediation/runner.py); its output goes to the server as
   ScriptOutput chunks while it runs; the Result (script_run) goes through the outbox, and
   only then is the record marked finished.
   A `user_session` script runs in the logged-on user's session (Windows): the session is
   chosen when the order is checked (session_choice.py), and an order with no session to
   run in is refused `user-session`, saying why; other systems refuse every such order.
4. On the next start, a record still marked started has no result: the agent stopped during
   the run (crash, kill -9, the machine went down). It is reported as Failure(kind=FAILED,
   "interrupted: ...") and never run again.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC
from pathlib import Path

from sonde.agent.catalog_key import CATALOG_KEY
from sonde.agent.dispatch_key import DISPATCH_KEY
from sonde.agent.order_process import claimed_command_id
from sonde.agent.paths import POLICY_FILE
from sonde.agent.pinned_key import PinnedKeyRefused
from sonde.agent.remediation.output import OutputChunk, OutputStream
from sonde.agent.remediation.runner import RunOutcome, ScriptCannotRun, run, this_platform
from sonde.agent.remediation.session_choice import (
    ChosenSession,
    LockState,
    LogonSession,
    NoUserSession,
    choose_session,
)
from sonde.agent.remediation.user_session_run import run_in_user_session
from sonde.agent.run_record import MAX_RECORDED_ID, RunRecord
from sonde.catalog.envelope import OrderRefused, Refusal, VerifiedOrder, verify_order
from sonde.catalog.policy import AgentPolicy, PolicyError, parse_policy
from sonde.v1 import agent_pb2, remediation_pb2

log = logging.getLogger(__name__)

INTERRUPTED = "interrupted: the agent stopped during the run; not run again"
RECORD_SUFFIX = ".run"
_STARTED = "started"
_FINISHED = "finished"

RUN_FOLDER_PREFIX = "sonde-run-"  # the runner's tempfile prefix (agent/remediation/runner.py)

SendOutput = Callable[[agent_pb2.ScriptOutput], Awaitable[None]]
# This machine's sessions and the console's session id (WTSGetActiveConsoleSessionId).
SessionSource = Callable[[], tuple[Sequence[LogonSession], int]]


def windows_sessions() -> tuple[Sequence[LogonSession], int]:
    if sys.platform != "win32":
        raise OSError("the logged-on users' sessions are read only on Windows")
    from sonde.agent.remediation import user_session

    return user_session.read_sessions(), user_session.console_session_id()


def refused(command_id: str, refusal: Refusal, reason: str) -> agent_pb2.Result:
    return agent_pb2.Result(
        command_id=command_id,
        failure=agent_pb2.Failure(
            reason=reason, kind=agent_pb2.FAILURE_KIND_REFUSED, refusal=refusal.value
        ),
    )


class RunOrders:
    """Checks and runs the run orders of one agent; see the module's docstring."""

    def __init__(
        self,
        state_dir: Path,
        agent_id: str,
        completed: Callable[[str], bool],
        *,
        sessions: SessionSource | None = None,
        machine: str | None = None,
    ) -> None:
        """`completed`: whether the outbox holds an acknowledged result for a command id;
        `sessions`: where the logged-on users' sessions are read (Windows' own by default;
        None elsewhere: user_session scripts are refused)."""
        self._state_dir = state_dir
        self._agent_id = agent_id
        self._completed = completed
        if sessions is None and sys.platform == "win32":
            sessions = windows_sessions
        self._sessions = sessions
        self._machine = machine or socket.gethostname()
        self._chosen: dict[str, ChosenSession] = {}
        self.record = RunRecord.in_state_dir(state_dir)

    def _policy(self) -> AgentPolicy | str:
        path = self._state_dir / POLICY_FILE
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return AgentPolicy()
        except OSError as error:
            return f"this workstation's policy {path} cannot be read ({error}): every run refused"
        try:
            return parse_policy(data)
        except PolicyError as error:
            return (
                f"this workstation's policy {path} does not parse ({error}): every run is "
                "refused until the admin fixes it"
            )

    def _already_ran(self, command_id: str) -> bool:
        return self.record.knows(command_id) or self._completed(command_id)

    def check(self, signed: remediation_pb2.SignedRunScript) -> VerifiedOrder:
        """The verified order; OrderRefused with its code and sentence (command id filled
        in as far as the bytes say it) when it must not run."""
        try:
            dispatch_key = DISPATCH_KEY.pinned(self._state_dir)
            catalog_key = CATALOG_KEY.pinned(self._state_dir)
        except PinnedKeyRefused as error:
            raise OrderRefused(
                Refusal.NO_PINNED_KEY,
                f"{error}; no run order is accepted until the agent is enrolled again "
                "(sonde-agent enroll --force TOKEN)",
                claimed_command_id(signed),
            ) from None
        if dispatch_key is None or catalog_key is None:
            missing = " and ".join(
                name
                for name, key in (("dispatch", dispatch_key), ("catalog", catalog_key))
                if key is None
            )
            raise OrderRefused(
                Refusal.NO_PINNED_KEY,
                f"this agent pinned no {missing} key at enrollment, so it cannot check a run "
                "order; enroll it again with a token from a server that sends them "
                "(sonde-agent enroll --force TOKEN)",
                claimed_command_id(signed),
            )
        if len(claimed_command_id(signed)) > MAX_RECORDED_ID:
            raise OrderRefused(
                Refusal.MALFORMED,
                f"a run order's command id is at most {MAX_RECORDED_ID} characters",
            )
        policy = self._policy()
        try:
            verified = verify_order(
                signed,
                dispatch_key=dispatch_key,
                catalog_key=catalog_key,
                agent_id=self._agent_id,
                platform=this_platform(),
                policy=policy if isinstance(policy, AgentPolicy) else AgentPolicy(),
                already_ran=self._already_ran,
            )
        except OrderRefused as error:
            if not error.command_id:
                error.command_id = claimed_command_id(signed)
            raise
        if isinstance(policy, str):
            raise OrderRefused(Refusal.POLICY, policy, verified.order.command_id)
        if verified.manifest.user_session:
            self._chosen[verified.order.command_id] = self._user_session(verified)
        return verified

    def _user_session(self, verified: VerifiedOrder) -> ChosenSession:
        """The session a user_session script runs in; OrderRefused saying why there is none."""
        script_id, command_id = verified.manifest.id, verified.order.command_id
        if self._sessions is None:
            raise OrderRefused(
                Refusal.USER_SESSION,
                f"{script_id} runs in the logged-on user's session, which Sonde starts only on "
                f"Windows; this agent runs on {this_platform().value}",
                command_id,
            )
        try:
            sessions, console = self._sessions()
        except OSError as error:
            raise OrderRefused(
                Refusal.USER_SESSION,
                f"the sessions of {self._machine} could not be listed ({error}); {script_id} "
                "needs the user's session",
                command_id,
            ) from None
        try:
            return choose_session(sessions, console, machine=self._machine, script_id=script_id)
        except NoUserSession as error:
            raise OrderRefused(Refusal.USER_SESSION, str(error), command_id) from None

    def chosen_session(self, command_id: str) -> ChosenSession | None:
        """The session check() chose for this command's user_session script."""
        return self._chosen.get(command_id)

    async def execute(
        self,
        verified: VerifiedOrder,
        send_output: SendOutput,
        cancel: asyncio.Event,
    ) -> agent_pb2.Result:
        """Record the run as started, run it, and the Result to deliver (then finish())."""
        order = verified.order
        command_id = order.command_id
        self.record.started(command_id, order.expires_at.ToDatetime(tzinfo=UTC))
        log.info(
            "running command %s: %s %s%s (asked by %s%s)",
            command_id,
            verified.manifest.id,
            verified.manifest.version,
            " in dry run" if order.dry_run else "",
            order.requested_by or "(unknown)",
            f", approved by {order.approved_by}" if order.approved_by else "",
        )

        async def on_output(chunk: OutputChunk) -> None:
            stream = (
                agent_pb2.SCRIPT_STREAM_STDOUT
                if chunk.stream is OutputStream.STDOUT
                else agent_pb2.SCRIPT_STREAM_STDERR
            )
            await send_output(
                agent_pb2.ScriptOutput(
                    command_id=command_id, stream=stream, offset=chunk.offset, data=chunk.data
                )
            )

        started = time.monotonic()
        session = self._chosen.get(command_id)
        try:
            if verified.manifest.user_session:
                if session is None:
                    raise ScriptCannotRun("no user's session was chosen when it was checked")
                log.info("command %s runs in %s", command_id, session.describe())
                outcome = await run_in_user_session(
                    verified.manifest,
                    verified.script,
                    verified.values,
                    session,
                    on_output=on_output,
                    cancel=cancel,
                    work_root=self._state_dir,
                )
            else:
                outcome = await run(
                    verified.manifest,
                    verified.script,
                    verified.values,
                    on_output=on_output,
                    cancel=cancel,
                    work_root=self._state_dir,
                    home=Path.home(),
                )
        except ScriptCannotRun as error:
            log.warning("command %s could not start: %s", command_id, error)
            return agent_pb2.Result(
                command_id=command_id,
                failure=agent_pb2.Failure(
                    reason=f"the script could not start: {error}",
                    kind=agent_pb2.FAILURE_KIND_FAILED,
                ),
            )
        log.info(
            "command %s ended in %.1f s: exit %s%s%s",
            command_id,
            time.monotonic() - started,
            outcome.exit_code,
            ", timed out" if outcome.timed_out else "",
            ", cancelled" if outcome.cancelled else "",
        )
        ran = script_run(verified, outcome, session)
        return agent_pb2.Result(command_id=command_id, script_run=ran)

    def finish(self, verified: VerifiedOrder) -> None:
        """After its Result is in the outbox."""
        order = verified.order
        self.record.finished(order.command_id, order.expires_at.ToDatetime(tzinfo=UTC))


def run_session(chosen: ChosenSession) -> agent_pb2.RunSession:
    return agent_pb2.RunSession(
        session_id=chosen.session.session_id,
        user=chosen.session.user,
        connection=chosen.connection,
        screen_locked=chosen.session.lock is LockState.LOCKED,
    )


def script_run(
    verified: VerifiedOrder, outcome: RunOutcome, session: ChosenSession | None = None
) -> agent_pb2.ScriptRun:
    stopped = outcome.timed_out or outcome.cancelled or outcome.exit_code is None
    ran = agent_pb2.ScriptRun(
        script_id=verified.manifest.id,
        script_version=verified.manifest.version,
        dry_run=verified.order.dry_run,
        exit_code=-1 if stopped or outcome.exit_code is None else outcome.exit_code,
        timed_out=outcome.timed_out,
        cancelled=outcome.cancelled,
        stdout=outcome.stdout,
        stderr=outcome.stderr,
        stdout_truncated=outcome.stdout_truncated,
        stderr_truncated=outcome.stderr_truncated,
        stdout_bytes=outcome.stdout_size,
        stderr_bytes=outcome.stderr_size,
        duration_ms=min(int(outcome.duration_s * 1000), 2**32 - 1),
    )
    if session is not None:
        ran.session.CopyFrom(run_session(session))
    return ran
