"""The running agent's local help pipe on Windows: `sonde-agent help` and `fix` ask it.

The same frames and answers as the Unix socket (agent/help_socket.py, HelpService), over a
named pipe the agent creates with its own security descriptor (agent/pipe_security.py,
agent/win32_pipes.py), served on the agent's proactor event loop (Windows' default): each
instance is accepted with the loop's overlapped ConnectNamedPipe, then read and written as
an ordinary asyncio stream. One spare instance always exists, so the name is never free for
another program to take between two clients.

The service's pipe is open to every interactive user; the pipe of an agent with another state
folder (a second agent, a test's) to that agent's user, unless --help-socket names one.

Import it on Windows only. Not run by the test suite (docs/agent.md, "On Windows").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from pathlib import Path
from typing import Any

from sonde.agent.help_socket import MAX_FRAME_BYTES, HelpService
from sonde.agent.paths import windows_system_state_dir
from sonde.agent.pipe_security import SYSTEM_PIPE, is_pipe_name, pipe_name, pipe_sddl

assert sys.platform == "win32"  # the rest is Windows-only, and mypy skips it elsewhere

from asyncio.windows_utils import PipeHandle  # noqa: E402

from sonde.agent.win32_pipes import (  # noqa: E402
    PipeSecurity,
    create_pipe_instance,
    own_sid,
    pipe_client_user,
)

log = logging.getLogger(__name__)

# A failed CreateNamedPipe of a spare instance (out of memory, say) is tried again this often.
RETRY_S = 1.0


def pipe_user(writer: asyncio.StreamWriter) -> str:
    """The account of the pipe's client: Windows' word, by impersonation (win32_pipes)."""
    pipe = writer.get_extra_info("pipe")
    if pipe is None:
        raise OSError("this connection is not a pipe")
    return pipe_client_user(int(pipe.fileno()))


class HelpPipe:
    """Serves `sonde-agent help` clients on a named pipe, one request each."""

    def __init__(self, name: str, service: HelpService, *, shared: bool) -> None:
        self._name = name
        self._service = service
        self._shared = shared
        self._security: PipeSecurity | None = None
        self._spare: PipeHandle | None = None  # an instance not yet connected
        self._accepting: asyncio.Task[None] | None = None

    @classmethod
    def for_state_dir(cls, state_dir: Path, service: HelpService, given: str | None) -> HelpPipe:
        if given is not None:
            if not is_pipe_name(given):
                raise ValueError(rf"--help-socket takes a pipe name on Windows, like {SYSTEM_PIPE}")
            return cls(given, service, shared=True)
        chosen = pipe_name(state_dir, windows_system_state_dir())
        return cls(chosen, service, shared=chosen == SYSTEM_PIPE)

    async def start(self) -> bool:
        """Listen; False (logged) when it cannot, and the agent runs on without it."""
        loop: Any = asyncio.get_running_loop()
        if getattr(loop, "_proactor", None) is None:
            log.error("cannot listen for help requests: the agent's event loop is no proactor")
            return False
        try:
            security = self._security = PipeSecurity(pipe_sddl(self._shared, own_sid()))
            first = PipeHandle(create_pipe_instance(self._name, security, first=True))
        except OSError as error:
            log.error(
                "cannot listen for help requests on %s: %s (if access is denied, another "
                "program holds the name: users will be told it is not the agent's)",
                self._name,
                error,
            )
            self._close_security()
            return False
        self._spare = first
        self._accepting = asyncio.create_task(self._accept(loop, first, security))
        log.info("listening for `sonde-agent help` on %s", self._name)
        return True

    async def _accept(self, loop: Any, first: PipeHandle, security: PipeSecurity) -> None:
        listening = first
        while True:
            try:
                spare = await self._new_instance(security)
                self._spare = spare
                await loop._proactor.accept_pipe(listening)
            except asyncio.CancelledError:
                listening.close()
                raise
            except OSError:  # the client left before it was connected
                listening.close()
                continue
            reader = asyncio.StreamReader(limit=MAX_FRAME_BYTES * 2)
            protocol = asyncio.StreamReaderProtocol(reader, self._serve_one)
            loop._make_duplex_pipe_transport(listening, protocol, extra={"addr": self._name})
            listening = spare

    async def _new_instance(self, security: PipeSecurity) -> PipeHandle:
        """The next instance, made before the listening one is taken: the name is never free."""
        while True:
            try:
                return PipeHandle(create_pipe_instance(self._name, security, first=False))
            except OSError as error:
                log.warning("cannot create a spare instance of %s: %s", self._name, error)
                await asyncio.sleep(RETRY_S)

    async def _serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._service.serve(reader, writer, pipe_user)

    async def stop(self) -> None:
        if self._accepting is not None:
            self._accepting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._accepting
            self._accepting = None
        if self._spare is not None:
            self._spare.close()
            self._spare = None
        self._close_security()

    def _close_security(self) -> None:
        if self._security is not None:
            self._security.close()
            self._security = None
