"""The Win32 calls of the agent's local help pipe (agent/help_pipe.py serves it,
agent/local_channel.py connects to it), through ctypes. Windows only: import it on Windows.

The rules it applies are in agent/pipe_security.py. How:
- every instance is created with the security descriptor of pipe_sddl, byte mode,
  overlapped (for the agent's proactor loop), remote clients rejected
  (PIPE_REJECT_REMOTE_CLIENTS: never reachable over SMB); the first with
  FILE_FLAG_FIRST_PIPE_INSTANCE, so the agent refuses a name another program took first;
- who asks is taken by impersonating the client for one call (ImpersonateNamedPipeClient,
  OpenThreadToken, RevertToSelf), never from what it sends; the client connects at
  SecurityIdentification, so that whoever serves the pipe can learn who the user is but
  cannot act as them, and refuses a pipe whose owner is not trusted.

mypy checks this module with `--platform win32` (.ci/run); no test runs it: Linux CI has no
Windows CPython (docs/agent.md, "On Windows").
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
import time
from dataclasses import dataclass
from functools import cache
from typing import Any

from sonde.agent.pipe_security import CLIENT_ACCESS, trusted_owners

assert sys.platform == "win32"  # the rest is Windows-only, and mypy skips it elsewhere

log = logging.getLogger(__name__)

BUFFER_BYTES = 64 * 1024

_PIPE_ACCESS_DUPLEX = 0x3
_FILE_FLAG_OVERLAPPED = 0x40000000
_FILE_FLAG_FIRST_PIPE_INSTANCE = 0x00080000
_PIPE_REJECT_REMOTE_CLIENTS = 0x8  # byte type, byte read mode and blocking are all 0
_PIPE_UNLIMITED_INSTANCES = 255
_OPEN_EXISTING = 3
_SECURITY_SQOS_PRESENT = 0x00100000
_SECURITY_IDENTIFICATION = 0x00010000
_TOKEN_QUERY = 0x8
_TOKEN_USER = 1
_SE_KERNEL_OBJECT = 6
_OWNER_SECURITY_INFORMATION = 0x1
_SDDL_REVISION_1 = 1
_ERROR_INSUFFICIENT_BUFFER = 122
_ERROR_BROKEN_PIPE = 109
_ERROR_PIPE_BUSY = 231
_ERROR_NO_DATA = 232
_ERROR_PIPE_NOT_CONNECTED = 233
_CLOSED_ERRORS = (_ERROR_BROKEN_PIPE, _ERROR_NO_DATA, _ERROR_PIPE_NOT_CONNECTED)
_INVALID_HANDLE = ctypes.c_void_p(-1).value
_POLL_S = 0.05
# The exit code of an agent that could not stop acting as a client it impersonated.
_REVERT_FAILED_EXIT = 70


@dataclass(frozen=True)
class _Api:
    kernel32: Any
    advapi32: Any


@cache
def _api() -> _Api:
    from ctypes import wintypes as w

    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    advapi32 = ctypes.WinDLL("advapi32", use_last_error=True)
    handle, pointer = ctypes.c_void_p, ctypes.c_void_p
    out_pointer, dword_out = ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(w.DWORD)
    signatures: list[tuple[Any, str, list[Any], Any]] = [
        (kernel32, "CreateNamedPipeW", [w.LPCWSTR, *[w.DWORD] * 7, pointer], handle),
        (
            kernel32,
            "CreateFileW",
            [w.LPCWSTR, w.DWORD, w.DWORD, pointer, w.DWORD, w.DWORD, handle],
            handle,
        ),
        (kernel32, "WaitNamedPipeW", [w.LPCWSTR, w.DWORD], w.BOOL),
        (kernel32, "ReadFile", [handle, pointer, w.DWORD, dword_out, pointer], w.BOOL),
        (kernel32, "WriteFile", [handle, pointer, w.DWORD, dword_out, pointer], w.BOOL),
        (
            kernel32,
            "PeekNamedPipe",
            [handle, pointer, w.DWORD, dword_out, dword_out, dword_out],
            w.BOOL,
        ),
        (kernel32, "CloseHandle", [handle], w.BOOL),
        (kernel32, "GetCurrentThread", [], handle),
        (kernel32, "GetCurrentProcess", [], handle),
        (kernel32, "LocalFree", [pointer], pointer),
        (
            advapi32,
            "ConvertStringSecurityDescriptorToSecurityDescriptorW",
            [w.LPCWSTR, w.DWORD, out_pointer, dword_out],
            w.BOOL,
        ),
        (advapi32, "ImpersonateNamedPipeClient", [handle], w.BOOL),
        (advapi32, "RevertToSelf", [], w.BOOL),
        (advapi32, "OpenThreadToken", [handle, w.DWORD, w.BOOL, out_pointer], w.BOOL),
        (advapi32, "OpenProcessToken", [handle, w.DWORD, out_pointer], w.BOOL),
        (
            advapi32,
            "GetTokenInformation",
            [handle, ctypes.c_int, pointer, w.DWORD, dword_out],
            w.BOOL,
        ),
        (
            advapi32,
            "LookupAccountSidW",
            [
                w.LPCWSTR,
                pointer,
                w.LPWSTR,
                dword_out,
                w.LPWSTR,
                dword_out,
                ctypes.POINTER(ctypes.c_int),
            ],
            w.BOOL,
        ),
        (advapi32, "ConvertSidToStringSidW", [pointer, out_pointer], w.BOOL),
        (
            advapi32,
            "GetSecurityInfo",
            [
                handle,
                ctypes.c_int,
                w.DWORD,
                out_pointer,
                out_pointer,
                out_pointer,
                out_pointer,
                out_pointer,
            ],
            w.DWORD,
        ),
    ]
    for library, name, argtypes, restype in signatures:
        function = getattr(library, name)
        function.argtypes = argtypes
        function.restype = restype
    return _Api(kernel32, advapi32)


def _error(code: int, doing: str) -> OSError:
    """An OSError Python maps by its Windows code (2: FileNotFoundError, 5: PermissionError)."""
    return OSError(None, f"{doing}: {ctypes.FormatError(code).strip()}", None, code)


def _last_error(doing: str) -> OSError:
    return _error(ctypes.get_last_error(), doing)


def _valid(handle: int | None) -> bool:
    return handle is not None and handle != _INVALID_HANDLE


def _sid_string(sid: int) -> str:
    api = _api()
    text = ctypes.c_void_p()
    if not api.advapi32.ConvertSidToStringSidW(sid, ctypes.byref(text)):
        raise _last_error("cannot write a SID as text")
    try:
        return ctypes.wstring_at(text.value) if text.value else ""
    finally:
        api.kernel32.LocalFree(text)


def _account_name(sid: int) -> str:
    """DOMAIN\\name of a SID, or the SID itself when it has no name (a deleted account)."""
    api = _api()
    name, domain = ctypes.create_unicode_buffer(256), ctypes.create_unicode_buffer(256)
    name_length, domain_length = ctypes.c_ulong(256), ctypes.c_ulong(256)
    use = ctypes.c_int()
    found = api.advapi32.LookupAccountSidW(
        None,
        sid,
        name,
        ctypes.byref(name_length),
        domain,
        ctypes.byref(domain_length),
        ctypes.byref(use),
    )
    if not found:
        return _sid_string(sid)
    return f"{domain.value}\\{name.value}" if domain.value else name.value


def _token_user(token: int) -> tuple[str, str]:
    """(SID, account name) of the user a token is of."""
    api = _api()
    needed = ctypes.c_ulong()
    api.advapi32.GetTokenInformation(token, _TOKEN_USER, None, 0, ctypes.byref(needed))
    if ctypes.get_last_error() != _ERROR_INSUFFICIENT_BUFFER or not needed.value:
        raise _last_error("cannot read the token's user")
    buffer = ctypes.create_string_buffer(needed.value)
    if not api.advapi32.GetTokenInformation(
        token, _TOKEN_USER, buffer, needed.value, ctypes.byref(needed)
    ):
        raise _last_error("cannot read the token's user")
    # TOKEN_USER starts with SID_AND_ATTRIBUTES, whose first field is the SID's address (in
    # the buffer, which lives until both are read).
    sid = ctypes.c_void_p.from_buffer(buffer).value
    if not sid:
        raise OSError("the token names no user")
    return _sid_string(sid), _account_name(sid)


@cache
def own_sid() -> str:
    """The SID of the user this process runs as."""
    api = _api()
    token = ctypes.c_void_p()
    if not api.advapi32.OpenProcessToken(
        api.kernel32.GetCurrentProcess(), _TOKEN_QUERY, ctypes.byref(token)
    ):
        raise _last_error("cannot open this process's token")
    try:
        return _token_user(token.value or 0)[0]
    finally:
        api.kernel32.CloseHandle(token)


def pipe_client_user(pipe: int) -> str:
    """The account of the process at the other end of a server pipe, by impersonating it for
    the length of this call. Only after something was read from the pipe (Windows' rule)."""
    api = _api()
    if not api.advapi32.ImpersonateNamedPipeClient(pipe):
        raise _last_error("cannot tell who is at the other end of the pipe")
    token = ctypes.c_void_p()
    try:
        opened = api.advapi32.OpenThreadToken(
            api.kernel32.GetCurrentThread(), _TOKEN_QUERY, True, ctypes.byref(token)
        )
        failure = ctypes.get_last_error()
    finally:
        if not api.advapi32.RevertToSelf():
            # Going on as the user who asked would let them act as the agent's account's
            # opposite: never. The service manager restarts the agent.
            log.critical("could not stop impersonating a help client: the agent stops")
            os._exit(_REVERT_FAILED_EXIT)
    if not opened:
        # An anonymous client (ERROR_CANT_OPEN_ANONYMOUS) lands here: it is refused.
        raise _error(failure, "cannot read the client's token")
    try:
        return _token_user(token.value or 0)[1]
    finally:
        api.kernel32.CloseHandle(token)


class PipeSecurity:
    """The SECURITY_ATTRIBUTES every instance of the pipe is created with."""

    def __init__(self, sddl: str) -> None:
        api = _api()
        self._descriptor = ctypes.c_void_p()
        if not api.advapi32.ConvertStringSecurityDescriptorToSecurityDescriptorW(
            sddl, _SDDL_REVISION_1, ctypes.byref(self._descriptor), None
        ):
            raise _last_error(f"cannot build the pipe's security descriptor {sddl}")

        class SecurityAttributes(ctypes.Structure):
            _fields_ = [
                ("nLength", ctypes.c_ulong),
                ("lpSecurityDescriptor", ctypes.c_void_p),
                ("bInheritHandle", ctypes.c_int),
            ]

        self.attributes = SecurityAttributes(
            ctypes.sizeof(SecurityAttributes), self._descriptor.value, 0
        )

    def close(self) -> None:
        if self._descriptor.value:
            _api().kernel32.LocalFree(self._descriptor)
            self._descriptor = ctypes.c_void_p()


def create_pipe_instance(name: str, security: PipeSecurity, first: bool) -> int:
    """A new overlapped, byte-mode instance of the pipe, local clients only. The first one
    fails (access denied) when another program already holds the name."""
    api = _api()
    flags = _PIPE_ACCESS_DUPLEX | _FILE_FLAG_OVERLAPPED
    if first:
        flags |= _FILE_FLAG_FIRST_PIPE_INSTANCE
    handle = api.kernel32.CreateNamedPipeW(
        name,
        flags,
        _PIPE_REJECT_REMOTE_CLIENTS,
        _PIPE_UNLIMITED_INSTANCES,
        BUFFER_BYTES,
        BUFFER_BYTES,
        0,
        ctypes.byref(security.attributes),
    )
    if not _valid(handle):
        raise _last_error(f"cannot create the pipe {name}")
    return int(handle)


def _pipe_owner(handle: int) -> str:
    api = _api()
    owner, descriptor = ctypes.c_void_p(), ctypes.c_void_p()
    failure = api.advapi32.GetSecurityInfo(
        handle,
        _SE_KERNEL_OBJECT,
        _OWNER_SECURITY_INFORMATION,
        ctypes.byref(owner),
        None,
        None,
        None,
        ctypes.byref(descriptor),
    )
    if failure:
        raise _error(failure, "cannot read who owns the pipe")
    try:
        return _sid_string(owner.value or 0)
    finally:
        api.kernel32.LocalFree(descriptor)


class PipeClient:
    """A blocking client end of the pipe, with reads bounded in time (PeekNamedPipe)."""

    def __init__(self, handle: int, name: str) -> None:
        self._handle: int | None = handle
        self._name = name

    @classmethod
    def open(cls, name: str, timeout_s: float) -> PipeClient:
        """Connect, waiting while every instance is busy; FileNotFoundError when nothing
        serves the name, PermissionError when it is not the agent's."""
        api = _api()
        deadline = time.monotonic() + timeout_s
        while True:
            handle = api.kernel32.CreateFileW(
                name,
                CLIENT_ACCESS,
                0,
                None,
                _OPEN_EXISTING,
                _SECURITY_SQOS_PRESENT | _SECURITY_IDENTIFICATION,
                None,
            )
            if _valid(handle):
                break
            failure = ctypes.get_last_error()
            left_ms = int((deadline - time.monotonic()) * 1000)
            if failure != _ERROR_PIPE_BUSY or left_ms <= 0:
                raise _error(failure, f"cannot open {name}")
            api.kernel32.WaitNamedPipeW(name, min(left_ms, 1000))
        client = cls(int(handle), name)
        try:
            owner = _pipe_owner(int(handle))
            if owner not in trusted_owners(own_sid()):
                raise PermissionError(
                    f"{name} is not the Sonde agent's: it belongs to {owner}, not to "
                    "LocalSystem or the Administrators (another program took its name)"
                )
        except BaseException:
            client.close()
            raise
        return client

    def send(self, data: bytes) -> None:
        api = _api()
        view = memoryview(data)
        while view:
            written = ctypes.c_ulong()
            chunk = ctypes.create_string_buffer(
                bytes(view[:BUFFER_BYTES]), len(view[:BUFFER_BYTES])
            )
            if not api.kernel32.WriteFile(
                self._live(), chunk, len(chunk), ctypes.byref(written), None
            ):
                raise _last_error(f"cannot write to {self._name}")
            view = view[written.value :]

    def receive(self, timeout_s: float) -> bytes:
        """What the agent sent so far (at most BUFFER_BYTES); b"" once it closed its end;
        TimeoutError when it sent nothing within `timeout_s`."""
        api = _api()
        deadline = time.monotonic() + timeout_s
        while True:
            available = ctypes.c_ulong()
            if not api.kernel32.PeekNamedPipe(
                self._live(), None, 0, None, ctypes.byref(available), None
            ):
                if ctypes.get_last_error() in _CLOSED_ERRORS:
                    return b""
                raise _last_error(f"cannot read from {self._name}")
            if available.value:
                size = min(available.value, BUFFER_BYTES)
                buffer, got = ctypes.create_string_buffer(size), ctypes.c_ulong()
                if not api.kernel32.ReadFile(self._live(), buffer, size, ctypes.byref(got), None):
                    if ctypes.get_last_error() in _CLOSED_ERRORS:
                        return b""
                    raise _last_error(f"cannot read from {self._name}")
                return buffer.raw[: got.value]
            if time.monotonic() >= deadline:
                raise TimeoutError(f"nothing from {self._name} within {timeout_s:g} s")
            time.sleep(_POLL_S)

    def close(self) -> None:
        if self._handle is not None:
            _api().kernel32.CloseHandle(self._handle)
            self._handle = None

    def _live(self) -> int:
        if self._handle is None:
            raise OSError(f"the connection to {self._name} is closed")
        return self._handle
