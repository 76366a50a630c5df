"""Every process a script started, found and stopped without cgroups (POSIX).

A script runs as the leader of its own session and process group, so one killpg reaches
everything that stayed in the group. A child can leave it (setsid, or a daemon's double
fork), so the runner also finds processes three more ways:

- while the script runs, it records the leader's descendants every `observe()` (psutil,
  recursive), and the descendants of those it already knows, so a child whose parent exits
  is still known by its (pid, start time);
- when it stops the run it scans the machine for processes whose session or group is the
  leader's, or whose environment holds the run's mark (SONDE_RUN_MARK, a random token):
  a child that called setsid keeps the environment it inherited.

What escapes all four: a process that left the group and cleared its environment between two
observations, or one started through another service (systemd-run, at, cron). Only a
cgroup (a systemd scope) would hold those; docs/remediation.md says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Callable

import psutil

from sonde.agent.remediation.environment import RUN_MARK

_GONE = (psutil.NoSuchProcess, psutil.ZombieProcess)
if sys.platform == "win32":
    _SIGKILL = signal.SIGTERM  # psutil sends it as TerminateProcess
else:
    _SIGKILL = signal.SIGKILL


class ProcessTree:
    def __init__(self, leader_pid: int, mark: str, leader_running: Callable[[], bool]) -> None:
        self.leader_pid = leader_pid  # also its session and process group id
        self.mark = mark
        self.known: dict[int, psutil.Process] = {}
        self._leader_running = leader_running  # false once the leader has exited (reaped)

    @property
    def leader_running(self) -> bool:
        return self._leader_running()

    def observe(self) -> None:
        """Record the descendants of the leader and of every process already known."""
        roots: list[int] = [self.leader_pid] if self.leader_running else []
        roots += list(self.known)
        for pid in roots:
            for child in self._descendants(pid):
                self._remember(child)

    def _descendants(self, pid: int) -> list[psutil.Process]:
        listed = _proc_descendants(pid) if sys.platform == "linux" else None
        if listed is None:  # not Linux, or a kernel without /proc/PID/task/TID/children
            try:
                parent = self.known.get(pid) or psutil.Process(pid)
                return parent.children(recursive=True)
            except (psutil.Error, OSError):
                return []
        found = []
        for child in listed:
            if child in self.known:
                continue
            with contextlib.suppress(psutil.Error):
                found.append(psutil.Process(child))
        return found

    def _remember(self, process: psutil.Process) -> None:
        known = self.known.get(process.pid)
        # psutil.Process compares by (pid, start time): a reused pid is a new process.
        if known is None or known != process:
            self.known[process.pid] = process

    def scan(self) -> None:
        """Find the run's processes anywhere on the machine: by session, group or mark."""
        me = os.getpid()
        for process in psutil.process_iter():
            if process.pid in (me, self.leader_pid) or process.pid in self.known:
                continue
            if self._belongs(process):
                self._remember(process)

    def _belongs(self, process: psutil.Process) -> bool:
        if sys.platform == "win32":  # a Job Object holds the tree there: this runs on POSIX
            return False
        with contextlib.suppress(OSError):
            if self.leader_pid in (os.getsid(process.pid), os.getpgid(process.pid)):
                return True
        try:
            environment = process.environ()
        except (psutil.Error, OSError):
            return False
        return environment.get(RUN_MARK) == self.mark

    def alive(self) -> list[psutil.Process]:
        """The known processes still running (a zombie has ended: its parent reaps it)."""
        running = []
        for pid, process in list(self.known.items()):
            try:
                if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                    running.append(process)
                    continue
            except _GONE:
                pass
            except psutil.Error:
                running.append(process)
                continue
            del self.known[pid]
        return running

    def signal_all(self, number: signal.Signals) -> None:
        if self.leader_running and sys.platform != "win32":
            with contextlib.suppress(OSError):
                os.killpg(self.leader_pid, number)
        for process in self.alive():
            with contextlib.suppress(psutil.Error):
                process.send_signal(number)

    async def stop(self, grace_s: float) -> int:
        """SIGTERM to all, SIGKILL after `grace_s` to what is left; how many were stopped
        besides the leader (the leader itself: its group, while it runs)."""
        self.observe()
        self.scan()
        found = {process.pid for process in self.alive()}
        self.signal_all(signal.SIGTERM)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_s
        # Polled: a process's end has no event to wait on here (the leader's is the caller's).
        while loop.time() < deadline and (self.alive() or self.leader_running):  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        for _ in range(5):  # what was started during the grace is found and killed too
            self.observe()
            self.scan()
            found |= {process.pid for process in self.alive()}
            if not self.alive() and not self.leader_running:
                break
            self.signal_all(_SIGKILL)
            await asyncio.sleep(0.05)
        return len(found)


def _proc_descendants(pid: int) -> list[int] | None:
    """The descendants of `pid` from /proc/PID/task/TID/children: a few small reads, where
    psutil's children() reads every process on the machine. None if the kernel lacks them."""
    found: list[int] = []
    pending = [pid]
    while pending:
        parent = pending.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue  # it has ended
        for task in tasks:
            try:
                with open(f"/proc/{parent}/task/{task}/children", "rb") as listing:
                    children = [int(child) for child in listing.read().split()]
            except FileNotFoundError:
                if os.path.exists(f"/proc/{parent}/task/{task}"):
                    return None  # the file is missing, not the task
                continue
            except OSError:
                continue
            found += children
            pending += children
    return found
