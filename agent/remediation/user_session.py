"""The Win32 calls that start a script in a logged-on user's session (ctypes; imported only on
Windows, never run by the Linux tests: docs/remediation.md lists what only Windows shows).

The agent runs as LocalSystem in session 0, which holds SeTcbPrivilege, so it may ask for a
session's user token (WTSQueryUserToken). The script then starts with that user's primary
token (DuplicateTokenEx), environment (CreateEnvironmentBlock: their %LOCALAPPDATA%, %TEMP%)
and interactive desktop ("winsta0\\default"), hidden, suspended so that the caller can put
it in a Job Object before it runs (windows_job.py). Its stdout and stderr are files the
SYSTEM side opened and hands over as inherited handles: the user's process writes to them
without any right on the path. Those two handles are the only ones it inherits
(PROC_THREAD_ATTRIBUTE_HANDLE_LIST): any other inheritable handle of the agent's process, such
as another run's output file being handed over at the same moment, stays out of the user's
reach. Which session is decided elsewhere (session_choice.py).
"""

from __future__ import annotations

import ctypes
import os
import re
import subprocess
import sys
from ctypes import wintypes
from dataclasses import dataclass
from pathlib import Path

from sonde.agent.remediation.session_choice import ConnectState, LockState, LogonSession

assert sys.platform == "win32"  # mypy checks the rest for Windows only

_HANDLE, _BOOL, _DWORD = wintypes.HANDLE, wintypes.BOOL, wintypes.DWORD
_WTS_CURRENT_SERVER = _HANDLE(0)
_WTS_USER_NAME, _WTS_DOMAIN_NAME, _WTS_SESSION_INFO_EX = 5, 7, 25
_WTS_SESSIONSTATE_LOCK, _WTS_SESSIONSTATE_UNLOCK = 0, 1
_MAXIMUM_ALLOWED = 0x02000000
_SECURITY_IMPERSONATION, _TOKEN_PRIMARY = 2, 1
_TOKEN_USER_CLASS = 1
_CREATE_UNICODE_ENVIRONMENT = 0x00000400
_CREATE_SUSPENDED = 0x00000004
_CREATE_NO_WINDOW = 0x08000000
_CREATE_NEW_PROCESS_GROUP = 0x00000200
_STARTF_USESHOWWINDOW, _STARTF_USESTDHANDLES = 0x1, 0x100
_SW_HIDE = 0
_WAIT_OBJECT_0, _WAIT_TIMEOUT = 0, 0x102
_HANDLE_FLAG_INHERIT = 0x1
_EXTENDED_STARTUPINFO_PRESENT = 0x00080000
_PROC_THREAD_ATTRIBUTE_HANDLE_LIST = 0x00020002
_DESKTOP = "winsta0\\default"
_SID = re.compile(r"S-1(-[0-9]{1,10}){1,15}")


class _SessionInfo(ctypes.Structure):  # WTS_SESSION_INFOW
    _fields_ = [
        ("SessionId", _DWORD),
        ("pWinStationName", wintypes.LPWSTR),
        ("State", ctypes.c_int),
    ]


class _SessionInfoEx1(ctypes.Structure):  # WTSINFOEX_LEVEL1_W, up to SessionFlags
    _fields_ = [
        ("SessionId", wintypes.ULONG),
        ("SessionState", ctypes.c_int),
        ("SessionFlags", wintypes.LONG),
    ]


class _SessionInfoEx(ctypes.Structure):  # WTSINFOEXW
    _fields_ = [("Level", _DWORD), ("Data", _SessionInfoEx1)]


class _StartupInfo(ctypes.Structure):  # STARTUPINFOW
    _fields_ = [
        ("cb", _DWORD),
        ("lpReserved", wintypes.LPWSTR),
        ("lpDesktop", wintypes.LPWSTR),
        ("lpTitle", wintypes.LPWSTR),
        ("dwX", _DWORD),
        ("dwY", _DWORD),
        ("dwXSize", _DWORD),
        ("dwYSize", _DWORD),
        ("dwXCountChars", _DWORD),
        ("dwYCountChars", _DWORD),
        ("dwFillAttribute", _DWORD),
        ("dwFlags", _DWORD),
        ("wShowWindow", wintypes.WORD),
        ("cbReserved2", wintypes.WORD),
        ("lpReserved2", ctypes.c_void_p),
        ("hStdInput", _HANDLE),
        ("hStdOutput", _HANDLE),
        ("hStdError", _HANDLE),
    ]


class _StartupInfoEx(ctypes.Structure):  # STARTUPINFOEXW
    _fields_ = [("StartupInfo", _StartupInfo), ("lpAttributeList", ctypes.c_void_p)]


class _ProcessInformation(ctypes.Structure):
    _fields_ = [
        ("hProcess", _HANDLE),
        ("hThread", _HANDLE),
        ("dwProcessId", _DWORD),
        ("dwThreadId", _DWORD),
    ]


_kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
_wtsapi32 = ctypes.WinDLL("wtsapi32", use_last_error=True)
_advapi32 = ctypes.WinDLL("advapi32", use_last_error=True)
_userenv = ctypes.WinDLL("userenv", use_last_error=True)
_P = ctypes.POINTER
for _function, _arguments, _result in (
    (_kernel32.WTSGetActiveConsoleSessionId, (), _DWORD),
    (
        _wtsapi32.WTSEnumerateSessionsW,
        (_HANDLE, _DWORD, _DWORD, _P(_P(_SessionInfo)), _P(_DWORD)),
        _BOOL,
    ),
    (
        _wtsapi32.WTSQuerySessionInformationW,
        (_HANDLE, _DWORD, ctypes.c_int, _P(ctypes.c_void_p), _P(_DWORD)),
        _BOOL,
    ),
    (_wtsapi32.WTSFreeMemory, (ctypes.c_void_p,), None),
    (_wtsapi32.WTSQueryUserToken, (wintypes.ULONG, _P(_HANDLE)), _BOOL),
    (
        _advapi32.DuplicateTokenEx,
        (_HANDLE, _DWORD, ctypes.c_void_p, ctypes.c_int, ctypes.c_int, _P(_HANDLE)),
        _BOOL,
    ),
    (
        _advapi32.GetTokenInformation,
        (_HANDLE, ctypes.c_int, ctypes.c_void_p, _DWORD, _P(_DWORD)),
        _BOOL,
    ),
    (_advapi32.ConvertSidToStringSidW, (ctypes.c_void_p, _P(wintypes.LPWSTR)), _BOOL),
    (_kernel32.LocalFree, (ctypes.c_void_p,), ctypes.c_void_p),
    (_userenv.CreateEnvironmentBlock, (_P(ctypes.c_void_p), _HANDLE, _BOOL), _BOOL),
    (_userenv.DestroyEnvironmentBlock, (ctypes.c_void_p,), _BOOL),
    (
        _advapi32.CreateProcessAsUserW,
        (
            _HANDLE,
            wintypes.LPCWSTR,
            wintypes.LPWSTR,
            ctypes.c_void_p,
            ctypes.c_void_p,
            _BOOL,
            _DWORD,
            ctypes.c_void_p,
            wintypes.LPCWSTR,
            _P(_StartupInfoEx),
            _P(_ProcessInformation),
        ),
        _BOOL,
    ),
    (_kernel32.WaitForSingleObject, (_HANDLE, _DWORD), _DWORD),
    (_kernel32.GetExitCodeProcess, (_HANDLE, _P(_DWORD)), _BOOL),
    (_kernel32.CloseHandle, (_HANDLE,), _BOOL),
    (_kernel32.TerminateProcess, (_HANDLE, wintypes.UINT), _BOOL),
    (_kernel32.SetHandleInformation, (_HANDLE, _DWORD, _DWORD), _BOOL),
    (
        _kernel32.InitializeProcThreadAttributeList,
        (ctypes.c_void_p, _DWORD, _DWORD, _P(ctypes.c_size_t)),
        _BOOL,
    ),
    (
        _kernel32.UpdateProcThreadAttribute,
        (
            ctypes.c_void_p,
            _DWORD,
            ctypes.c_size_t,
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ),
        _BOOL,
    ),
    (_kernel32.DeleteProcThreadAttributeList, (ctypes.c_void_p,), None),
):
    _function.argtypes = _arguments
    _function.restype = _result


def _failed(call: str) -> OSError:
    code = ctypes.get_last_error()
    return OSError(code, f"{call} failed: {ctypes.FormatError(code).strip()}")


def _session_text(session_id: int, info_class: int) -> str:
    buffer, size = ctypes.c_void_p(), _DWORD()
    query = _wtsapi32.WTSQuerySessionInformationW
    if not query(_WTS_CURRENT_SERVER, session_id, info_class, ctypes.byref(buffer), size):
        return ""
    try:
        return ctypes.wstring_at(buffer.value) if buffer.value else ""
    finally:
        _wtsapi32.WTSFreeMemory(buffer)


def _lock_state(session_id: int) -> LockState:
    buffer, size = ctypes.c_void_p(), _DWORD()
    query = _wtsapi32.WTSQuerySessionInformationW
    if not query(_WTS_CURRENT_SERVER, session_id, _WTS_SESSION_INFO_EX, ctypes.byref(buffer), size):
        return LockState.UNKNOWN
    try:
        flags = ctypes.cast(buffer, _P(_SessionInfoEx)).contents.Data.SessionFlags
    finally:
        _wtsapi32.WTSFreeMemory(buffer)
    # Windows 7 and Server 2008 R2 report these two the other way round; not supported.
    if flags == _WTS_SESSIONSTATE_LOCK:
        return LockState.LOCKED
    if flags == _WTS_SESSIONSTATE_UNLOCK:
        return LockState.UNLOCKED
    return LockState.UNKNOWN


def console_session_id() -> int:
    return int(_kernel32.WTSGetActiveConsoleSessionId())


def read_sessions() -> list[LogonSession]:
    """Every session of this machine, with its user and lock state."""
    entries, count = _P(_SessionInfo)(), _DWORD()
    if not _wtsapi32.WTSEnumerateSessionsW(
        _WTS_CURRENT_SERVER, 0, 1, ctypes.byref(entries), ctypes.byref(count)
    ):
        raise _failed("WTSEnumerateSessionsW")
    sessions = []
    try:
        for index in range(count.value):
            entry = entries[index]
            user = _session_text(entry.SessionId, _WTS_USER_NAME)
            domain = _session_text(entry.SessionId, _WTS_DOMAIN_NAME)
            try:
                state = ConnectState(entry.State)
            except ValueError:
                state = ConnectState.DOWN
            sessions.append(
                LogonSession(
                    session_id=int(entry.SessionId),
                    station=entry.pWinStationName or "",
                    state=state,
                    user=f"{domain}\\{user}" if user and domain else user,
                    lock=_lock_state(entry.SessionId) if user else LockState.UNKNOWN,
                )
            )
    finally:
        _wtsapi32.WTSFreeMemory(entries)
    return sessions


def _user_token(session_id: int) -> int:
    """A primary token of the session's user (the caller closes it)."""
    token, primary = _HANDLE(), _HANDLE()
    if not _wtsapi32.WTSQueryUserToken(session_id, ctypes.byref(token)):
        raise _failed(f"WTSQueryUserToken for session {session_id}")
    try:
        if not _advapi32.DuplicateTokenEx(
            token,
            _MAXIMUM_ALLOWED,
            None,
            _SECURITY_IMPERSONATION,
            _TOKEN_PRIMARY,
            ctypes.byref(primary),
        ):
            raise _failed("DuplicateTokenEx")
    finally:
        _kernel32.CloseHandle(token)
    return int(primary.value or 0)


def _user_sid(token: int) -> str:
    size = _DWORD()
    _advapi32.GetTokenInformation(token, _TOKEN_USER_CLASS, None, 0, ctypes.byref(size))
    buffer = ctypes.create_string_buffer(size.value)
    if not _advapi32.GetTokenInformation(
        token, _TOKEN_USER_CLASS, buffer, size, ctypes.byref(size)
    ):
        raise _failed("GetTokenInformation(TokenUser)")
    sid_pointer = ctypes.cast(buffer, _P(ctypes.c_void_p)).contents  # TOKEN_USER.User.Sid
    text = wintypes.LPWSTR()
    if not _advapi32.ConvertSidToStringSidW(sid_pointer, ctypes.byref(text)):
        raise _failed("ConvertSidToStringSidW")
    try:
        return str(text.value)
    finally:
        _kernel32.LocalFree(text)


@dataclass
class UserProcess:
    """A script started suspended in a user's session: resume it with a Job Object."""

    process: int
    pid: int

    def wait(self, timeout_s: float) -> int | None:
        """Its exit code, or None if it still runs after timeout_s."""
        waited = _kernel32.WaitForSingleObject(self.process, int(timeout_s * 1000))
        if waited == _WAIT_TIMEOUT:
            return None
        if waited != _WAIT_OBJECT_0:
            raise _failed("WaitForSingleObject")
        code = _DWORD()
        if not _kernel32.GetExitCodeProcess(self.process, ctypes.byref(code)):
            raise _failed("GetExitCodeProcess")
        return int(code.value)

    def terminate(self) -> None:
        _kernel32.TerminateProcess(self.process, 1)

    def close(self) -> None:
        _kernel32.CloseHandle(self.process)


def _inheritable(path: Path) -> tuple[int, object]:
    """A handle of a new file for the child to inherit, and the object that keeps it open."""
    handle = open(path, "xb", buffering=0)  # noqa: SIM115 - closed by the caller
    import msvcrt

    os_handle = msvcrt.get_osfhandle(handle.fileno())
    if not _kernel32.SetHandleInformation(os_handle, _HANDLE_FLAG_INHERIT, _HANDLE_FLAG_INHERIT):
        handle.close()
        raise _failed("SetHandleInformation")
    return os_handle, handle


class _OnlyThese:
    """A process attribute list whose one attribute is the handles a child may inherit (the
    list and the array it points to live as long as this object)."""

    def __init__(self, handles: list[int]) -> None:
        self.handles = (_HANDLE * len(handles))(*handles)
        size = ctypes.c_size_t()
        _kernel32.InitializeProcThreadAttributeList(None, 1, 0, ctypes.byref(size))
        self.buffer = ctypes.create_string_buffer(size.value)
        if not _kernel32.InitializeProcThreadAttributeList(self.buffer, 1, 0, ctypes.byref(size)):
            raise _failed("InitializeProcThreadAttributeList")
        if not _kernel32.UpdateProcThreadAttribute(
            self.buffer,
            0,
            _PROC_THREAD_ATTRIBUTE_HANDLE_LIST,
            self.handles,
            ctypes.sizeof(self.handles),
            None,
            None,
        ):
            _kernel32.DeleteProcThreadAttributeList(self.buffer)
            raise _failed("UpdateProcThreadAttribute(HANDLE_LIST)")

    def close(self) -> None:
        _kernel32.DeleteProcThreadAttributeList(self.buffer)


def start_in_session(
    session_id: int, argv: list[str], folder: Path, stdout: Path, stderr: Path
) -> UserProcess:
    """Start `argv` suspended in `session_id` as its user, in `folder`, which the user is
    granted read on (the script and its parameter file are there); output to the new files
    `stdout` and `stderr` through inherited handles."""
    token = _user_token(session_id)
    environment = ctypes.c_void_p()
    keep: list[object] = []
    try:
        sid = _user_sid(token)
        if not _SID.fullmatch(sid):
            raise OSError(f"the session's user has an unexpected SID {sid[:80]!r}")
        # icacls with an argument list: no shell, and the SID is "S-1-5-..." digits only.
        icacls = os.path.join(os.environ.get("SYSTEMROOT", r"C:\Windows"), "System32", "icacls.exe")
        granted = subprocess.run(
            [icacls, str(folder), "/grant", f"*{sid}:(OI)(CI)(RX)"],
            capture_output=True,
            check=False,
            stdin=subprocess.DEVNULL,
            creationflags=_CREATE_NO_WINDOW,
        )
        if granted.returncode != 0:
            raise OSError(
                f"icacls could not let the user read {folder} (exit {granted.returncode})"
            )
        if not _userenv.CreateEnvironmentBlock(ctypes.byref(environment), token, False):
            raise _failed("CreateEnvironmentBlock")
        out_handle, out_file = _inheritable(stdout)
        keep.append(out_file)  # closed even when the next one fails
        err_handle, err_file = _inheritable(stderr)
        keep.append(err_file)
        only_these = _OnlyThese([out_handle, err_handle])
        keep.append(only_these)
        extended = _StartupInfoEx(lpAttributeList=ctypes.addressof(only_these.buffer))
        startup = extended.StartupInfo
        startup.cb = ctypes.sizeof(_StartupInfoEx)
        startup.lpDesktop = _DESKTOP
        startup.dwFlags = _STARTF_USESTDHANDLES | _STARTF_USESHOWWINDOW
        startup.wShowWindow = _SW_HIDE
        startup.hStdInput = None  # no input: a script that reads it gets end of file
        startup.hStdOutput, startup.hStdError = out_handle, err_handle
        information = _ProcessInformation()
        command_line = ctypes.create_unicode_buffer(subprocess.list2cmdline(argv))
        flags = _CREATE_UNICODE_ENVIRONMENT | _CREATE_SUSPENDED | _CREATE_NO_WINDOW
        flags |= _EXTENDED_STARTUPINFO_PRESENT
        if not _advapi32.CreateProcessAsUserW(
            token,
            argv[0],
            command_line,
            None,
            None,
            True,
            flags | _CREATE_NEW_PROCESS_GROUP,
            environment,
            str(folder),
            ctypes.byref(extended),
            ctypes.byref(information),
        ):
            raise _failed(f"CreateProcessAsUserW in session {session_id}")
        _kernel32.CloseHandle(information.hThread)
        return UserProcess(process=int(information.hProcess), pid=int(information.dwProcessId))
    finally:
        for held in keep:
            close = getattr(held, "close", None)
            if close is not None:
                close()
        if environment.value:
            _userenv.DestroyEnvironmentBlock(environment)
        _kernel32.CloseHandle(token)
