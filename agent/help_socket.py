"""The running agent's local help socket: `sonde-agent help TEXT` asks it for a ticket
(`sonde-agent fix` and `sonde-agent rate` use it too).

One connection, one request. The client writes one frame (a 4-byte big-endian length, then a
sonde.v1.LocalHelpAsk) and the agent answers one frame (a LocalHelpAnswer), then closes.
Who asked is the kernel's word (SO_PEERCRED on Linux, LOCAL_PEERCRED on macOS), never the
client's: the ask carries no user name. A client that sends nothing within REQUEST_TIMEOUT_S,
an oversized or undecodable frame, or a description over MAX_DESCRIPTION_CHARS gets an answer
saying so; none of them reaches the server.

Where it listens: a system agent (/var/lib/sonde-agent, or macOS's system folder) at
/run/sonde-agent/help.sock (macOS /var/run/...), mode 0666 in a root-owned 0755 folder, so
that every local user can ask; an agent of one user's own beside its state folder
(`<state>.help.sock`, mode 0600), because the state folder itself is 0700 and must stay so.
On Windows the same frames go over a named pipe (agent/help_pipe.py); help_listener picks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import stat
import struct
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol

from sonde.agent.paths import MACOS_SYSTEM_STATE_DIR
from sonde.v1 import agent_pb2

log = logging.getLogger(__name__)

MAX_DESCRIPTION_CHARS = 4000
MAX_COMMENT_CHARS = 2000  # a rating's comment, as the server stores it
# 4000 characters of UTF-8 are at most 16,000 bytes: a frame this big is not a help request.
MAX_FRAME_BYTES = 32 * 1024
REQUEST_TIMEOUT_S = 10.0
# How long the agent waits for a client to close its end after the last answer.
CLOSE_WAIT_S = 5.0
# Connections served at once; more are told to try again (a local user cannot pile them up).
MAX_CLIENTS = 4
LINUX_SYSTEM_STATE_DIR = Path("/var/lib/sonde-agent")
SYSTEM_SOCKETS = {
    "linux": (LINUX_SYSTEM_STATE_DIR, Path("/run/sonde-agent/help.sock")),
    "darwin": (MACOS_SYSTEM_STATE_DIR, Path("/var/run/sonde-agent/help.sock")),
}
_LENGTH = struct.Struct(">I")

AskForHelp = Callable[[str, str], Awaitable[agent_pb2.LocalHelpAnswer]]
# `sonde-agent fix`: the ask, the user, and a way to write an answer frame before the last.
Progress = Callable[[agent_pb2.LocalHelpAnswer], Awaitable[None]]
SelfServiceFix = Callable[
    [agent_pb2.LocalFixAsk, str, Progress], Awaitable[agent_pb2.LocalHelpAnswer]
]
# `sonde-agent rate`: the ask and the user.
RateResolution = Callable[[agent_pb2.LocalRateAsk, str], Awaitable[agent_pb2.LocalHelpAnswer]]


class DescriptionRefused(ValueError):
    """The description cannot be sent as it is: the message says why, for the user."""


class FrameError(ValueError):
    """What the client wrote is not one help request."""


def _platform() -> str:
    return "linux" if sys.platform.startswith("linux") else sys.platform


def system_socket_path() -> Path | None:
    """Where a system agent listens on this OS (None: Windows, where it is a named pipe)."""
    entry = SYSTEM_SOCKETS.get(_platform())
    return entry[1] if entry else None


def help_socket_path(state_dir: Path) -> Path:
    """Where the agent of `state_dir` listens for `sonde-agent help`."""
    entry = SYSTEM_SOCKETS.get(_platform())
    if entry is not None and state_dir == entry[0]:
        return entry[1]
    return state_dir.with_name(f"{state_dir.name}.help.sock")


def checked_description(text: str) -> str:
    """The user's words without control characters (newlines and tabs kept), trimmed."""
    kept = "".join(c for c in text if c in "\n\t" or (c.isprintable() and c != "\x7f"))
    kept = kept.strip()
    if not kept:
        raise DescriptionRefused(
            'describe the problem in a few words, e.g. "my printer doesn\'t print"'
        )
    if len(kept) > MAX_DESCRIPTION_CHARS:
        raise DescriptionRefused(
            f"the description is {len(kept)} characters; at most {MAX_DESCRIPTION_CHARS} "
            "are sent: shorten it (the technician will call you for the details)"
        )
    return kept


def frame(message: agent_pb2.LocalHelpAsk | agent_pb2.LocalHelpAnswer) -> bytes:
    data = message.SerializeToString()
    return _LENGTH.pack(len(data)) + data


async def read_frame(reader: asyncio.StreamReader) -> bytes:
    """One frame's bytes; FrameError when it is oversized or cut short."""
    try:
        (length,) = _LENGTH.unpack(await reader.readexactly(_LENGTH.size))
        if length > MAX_FRAME_BYTES:
            raise FrameError(
                f"refused: a help request is at most {MAX_FRAME_BYTES} bytes, this one says "
                f"{length} (is this a sonde-agent help client?)"
            )
        return await reader.readexactly(length)
    except asyncio.IncompleteReadError:
        raise FrameError("refused: the request ended before it was complete") from None


def peer_user(sock: socket.socket) -> str:
    """The user name of the process at the other end, as the kernel tells it."""
    if _platform() == "linux":
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _pid, uid, _gid = struct.unpack("3i", creds)
    elif _platform() == "darwin":  # struct xucred; not exercised by the test suite (Linux)
        local_peercred, sol_local = 0x001, 0
        creds = sock.getsockopt(sol_local, local_peercred, struct.calcsize("IIh16I"))
        _version, uid = struct.unpack_from("II", creds)
    else:
        raise OSError("peer credentials are not supported on this platform")
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


Identify = Callable[[asyncio.StreamWriter], str]


class HelpService:
    """Answers one local connection: one help request, one self-service fix with its progress
    frames, or one rating. Who asks is `identify`'s word (the kernel's), taken once the
    request is read (Windows lets a pipe's server impersonate its client only then)."""

    def __init__(
        self, ask: AskForHelp, fix: SelfServiceFix | None, rate: RateResolution | None = None
    ) -> None:
        self._ask = ask
        self._fix = fix
        self._rate = rate
        self._clients = 0

    async def serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, identify: Identify
    ) -> None:
        self._clients += 1
        try:
            answer = await self._answer(reader, writer, identify)
            writer.write(frame(answer))
            await asyncio.wait_for(writer.drain(), REQUEST_TIMEOUT_S)
            await _client_gone(reader)
        except (OSError, TimeoutError):
            pass  # the client went away: nothing to tell it
        except Exception:
            log.exception("error while answering a help request")
        finally:
            self._clients -= 1
            writer.close()
            with contextlib.suppress(OSError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def _answer(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, identify: Identify
    ) -> agent_pb2.LocalHelpAnswer:
        if self._clients > MAX_CLIENTS:
            return _refusal("the agent is answering other requests for help; try again in a minute")
        try:
            data = await asyncio.wait_for(read_frame(reader), REQUEST_TIMEOUT_S)
            ask = agent_pb2.LocalHelpAsk.FromString(data)
        except TimeoutError:
            log.warning(
                "a help client (user %s) sent no request within %g s",
                _known(identify, writer),
                REQUEST_TIMEOUT_S,
            )
            return _refusal(f"refused: no request within {REQUEST_TIMEOUT_S:g} s")
        except FrameError as error:
            log.warning(
                "a help client (user %s) sent a bad request: %s", _known(identify, writer), error
            )
            return _refusal(str(error))
        except Exception:  # protobuf's DecodeError, invalid UTF-8
            log.warning(
                "a help client (user %s) sent bytes that are not a help request",
                _known(identify, writer),
            )
            return _refusal("refused: that is not a sonde-agent help request")
        try:
            user = identify(writer)
        except OSError as error:
            return _refusal(f"refused: cannot tell who is asking ({error})")
        if ask.HasField("fix"):
            return await self._self_service(ask.fix, user, writer)
        if ask.HasField("rate"):
            return await self._rating(ask.rate, user)
        try:
            description = checked_description(ask.description)
        except DescriptionRefused as refused:
            return _refusal(f"refused: {refused}")
        log.info("user %s asks for help (%d characters)", user, len(description))
        return await self._ask(description, user)

    async def _self_service(
        self, ask: agent_pb2.LocalFixAsk, user: str, writer: asyncio.StreamWriter
    ) -> agent_pb2.LocalHelpAnswer:
        if self._fix is None:
            return _refusal("this agent does not run self-service fixes")
        if len(ask.script_id) > 64:
            return _refusal("refused: a script id is at most 64 characters")

        async def progress(answer: agent_pb2.LocalHelpAnswer) -> None:
            writer.write(frame(answer))
            await asyncio.wait_for(writer.drain(), REQUEST_TIMEOUT_S)

        log.info("user %s asks for a self-service fix (%s)", user, ask.script_id or "the list")
        return await self._fix(ask, user, progress)

    async def _rating(self, ask: agent_pb2.LocalRateAsk, user: str) -> agent_pb2.LocalHelpAnswer:
        if self._rate is None:
            return _refusal("this agent does not take ratings")
        if ask.ticket_id and not 1 <= ask.rating <= 5:
            return _refusal("refused: a rating is from 1 (bad) to 5 (very good)")
        if len(ask.comment) > MAX_COMMENT_CHARS:
            return _refusal(f"refused: a comment is at most {MAX_COMMENT_CHARS} characters")
        shown = f"rates ticket #{ask.ticket_id}" if ask.ticket_id else "lists the requests to rate"
        log.info("user %s %s", user, shown)
        return await self._rate(ask, user)


def _known(identify: Identify, writer: asyncio.StreamWriter) -> str:
    """Who the client is, for a log line, or "unknown" (a pipe client that sent nothing)."""
    try:
        return identify(writer)
    except OSError:
        return "unknown"


async def _client_gone(reader: asyncio.StreamReader) -> None:
    """Wait (CLOSE_WAIT_S at most) for the client to close its end once it has the answer:
    closing a pipe's server end first may drop what the client has not read yet."""
    with contextlib.suppress(OSError, TimeoutError):
        async with asyncio.timeout(CLOSE_WAIT_S):
            while await reader.read(4096):
                pass  # a client has nothing more to say: what it writes now is dropped


def socket_user(writer: asyncio.StreamWriter) -> str:
    return peer_user(writer.get_extra_info("socket"))


class HelpSocket:
    """Serves `sonde-agent help` clients on a Unix socket, one request each."""

    def __init__(self, path: Path, service: HelpService, *, shared: bool) -> None:
        self._path = path
        self._service = service
        self._shared = shared  # every local user may connect (the system agent)
        self._server: asyncio.Server | None = None

    async def start(self) -> bool:
        """Listen; False (logged) when it cannot, and the agent runs on without it."""
        try:
            self._prepare()
            self._server = await asyncio.start_unix_server(self._serve_one, path=str(self._path))
            os.chmod(self._path, 0o666 if self._shared else 0o600)
        except (OSError, ValueError) as error:
            log.error("cannot listen for help requests on %s: %s", self._path, error)
            return False
        log.info("listening for `sonde-agent help` on %s", self._path)
        return True

    def _prepare(self) -> None:
        folder = self._path.parent
        if self._path == system_socket_path():
            folder.mkdir(mode=0o755, parents=True, exist_ok=True)
            info = folder.lstat()
            if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
                raise OSError(f"{folder} is not a folder of the agent's own")
            os.chmod(folder, 0o755)  # noqa: S103 (every local user reaches the socket)
        try:
            info = self._path.lstat()
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(info.st_mode):
            raise OSError(f"{self._path} exists and is not a socket (remove it)")
        self._path.unlink()  # left by an agent that stopped without removing it

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        with contextlib.suppress(OSError):
            self._path.unlink()
        await self._server.wait_closed()
        self._server = None

    async def _serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._service.serve(reader, writer, socket_user)


class HelpListener(Protocol):
    async def start(self) -> bool: ...

    async def stop(self) -> None: ...


def help_listener(
    state_dir: Path,
    ask: AskForHelp,
    given: str | None,
    fix: SelfServiceFix | None = None,
    rate: RateResolution | None = None,
) -> HelpListener:
    """Where the agent of `state_dir` listens: a Unix socket, or on Windows a named pipe;
    `given` (--help-socket) is open to every local user."""
    service = HelpService(ask, fix, rate)
    if sys.platform == "win32":
        from sonde.agent.help_pipe import HelpPipe

        return HelpPipe.for_state_dir(state_dir, service, given)
    chosen = Path(given) if given else help_socket_path(state_dir)
    shared = given is not None or chosen == system_socket_path()
    return HelpSocket(chosen, service, shared=shared)


def _refusal(text: str) -> agent_pb2.LocalHelpAnswer:
    return agent_pb2.LocalHelpAnswer(error=text)
