"""A Job Object that holds a script's whole process tree on Windows (ctypes; imported only
on Windows).

The script starts suspended, is put in a new job whose limit is KILL_ON_JOB_CLOSE, then
resumed: every process it starts is in the job from its first instruction (a child cannot
break away: BREAKAWAY_OK is not set), and terminating the job, or closing its last handle
(the agent exiting, even killed), ends them all.
"""

from __future__ import annotations

import ctypes
import sys
from ctypes import wintypes

assert sys.platform == "win32"  # mypy checks the rest for Windows only

CREATE_SUSPENDED = 0x00000004
CREATE_NEW_PROCESS_GROUP = 0x00000200
CREATE_NO_WINDOW = 0x08000000
_JOB_OBJECT_EXTENDED_LIMIT_INFORMATION_CLASS = 9
_JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE = 0x00002000
_PROCESS_SET_QUOTA = 0x0100
_PROCESS_TERMINATE = 0x0001
_PROCESS_SUSPEND_RESUME = 0x0800

_kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
_ntdll = ctypes.WinDLL("ntdll")
# Declared, not left to ctypes' default (int): a HANDLE is pointer-sized on 64-bit Windows.
_HANDLE, _BOOL, _DWORD = wintypes.HANDLE, wintypes.BOOL, wintypes.DWORD
for _function, _arguments, _result in (
    (_kernel32.CreateJobObjectW, (ctypes.c_void_p, wintypes.LPCWSTR), _HANDLE),
    (_kernel32.SetInformationJobObject, (_HANDLE, ctypes.c_int, ctypes.c_void_p, _DWORD), _BOOL),
    (_kernel32.OpenProcess, (_DWORD, _BOOL, _DWORD), _HANDLE),
    (_kernel32.AssignProcessToJobObject, (_HANDLE, _HANDLE), _BOOL),
    (_kernel32.TerminateJobObject, (_HANDLE, wintypes.UINT), _BOOL),
    (_kernel32.CloseHandle, (_HANDLE,), _BOOL),
    (_ntdll.NtResumeProcess, (_HANDLE,), wintypes.LONG),
):
    _function.argtypes = _arguments
    _function.restype = _result


class _BasicLimits(ctypes.Structure):
    _fields_ = [
        ("PerProcessUserTimeLimit", ctypes.c_int64),
        ("PerJobUserTimeLimit", ctypes.c_int64),
        ("LimitFlags", wintypes.DWORD),
        ("MinimumWorkingSetSize", ctypes.c_size_t),
        ("MaximumWorkingSetSize", ctypes.c_size_t),
        ("ActiveProcessLimit", wintypes.DWORD),
        ("Affinity", ctypes.c_size_t),
        ("PriorityClass", wintypes.DWORD),
        ("SchedulingClass", wintypes.DWORD),
    ]


class _IoCounters(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_uint64)
        for name in (
            "ReadOperationCount", "WriteOperationCount", "OtherOperationCount",
            "ReadTransferCount", "WriteTransferCount", "OtherTransferCount",
        )
    ]  # fmt: skip


class _ExtendedLimits(ctypes.Structure):
    _fields_ = [
        ("BasicLimitInformation", _BasicLimits),
        ("IoInfo", _IoCounters),
        ("ProcessMemoryLimit", ctypes.c_size_t),
        ("JobMemoryLimit", ctypes.c_size_t),
        ("PeakProcessMemoryUsed", ctypes.c_size_t),
        ("PeakJobMemoryUsed", ctypes.c_size_t),
    ]


def _check(result: int | None, what: str) -> int:
    if not result:
        raise OSError(ctypes.get_last_error(), f"{what} failed")
    return result


class ScriptJob:
    """The job of one run; `close()` (or the agent's exit) ends every process in it."""

    def __init__(self) -> None:
        self.handle = _check(_kernel32.CreateJobObjectW(None, None), "CreateJobObjectW")
        limits = _ExtendedLimits()
        limits.BasicLimitInformation.LimitFlags = _JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE
        _check(
            _kernel32.SetInformationJobObject(
                self.handle,
                _JOB_OBJECT_EXTENDED_LIMIT_INFORMATION_CLASS,
                ctypes.byref(limits),
                ctypes.sizeof(limits),
            ),
            "SetInformationJobObject",
        )

    def adopt_and_resume(self, pid: int) -> None:
        """Put the suspended process `pid` in the job, then let it run."""
        access = _PROCESS_SET_QUOTA | _PROCESS_TERMINATE | _PROCESS_SUSPEND_RESUME
        process = _check(_kernel32.OpenProcess(access, False, pid), "OpenProcess")
        try:
            _check(_kernel32.AssignProcessToJobObject(self.handle, process), "AssignProcess")
            status = _ntdll.NtResumeProcess(process)
            if status != 0:
                raise OSError(status, "NtResumeProcess failed")
        finally:
            _kernel32.CloseHandle(process)

    def terminate(self, exit_code: int = 1) -> None:
        _kernel32.TerminateJobObject(self.handle, exit_code)

    def close(self) -> None:
        if self.handle:
            _kernel32.CloseHandle(self.handle)
            self.handle = 0
