"""One host of a push install, from login to its agent online: the stages and their failures.

The outcome is a HostOutcome (never an exception): which stage the host reached, the check or
step that failed and why, in words an admin can act on. Deployments (deployments.py) writes it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sonde.server.domain.deployment_store import DeployOptions, DeployStage, HostPlan
from sonde.server.errors import SondeError
from sonde.server.remote.credentials import CredentialSource
from sonde.server.remote.host_keys import HostKeyRefused
from sonde.server.remote.linux_install import InstallFailed, LinuxLayout, install_linux
from sonde.server.remote.linux_preflight import PreflightFailed, preflight_linux
from sonde.server.remote.shell import RemoteError, RemoteErrorKind, RemoteShell, Transport
from sonde.server.remote.wheelhouse import Wheelhouse

# What a failed login is called in the report, by how it failed.
_LOGIN_CHECK = {
    RemoteErrorKind.UNREACHABLE: "reachable",
    RemoteErrorKind.AUTHENTICATION: "credentials",
    RemoteErrorKind.HOST_KEY: "host key",
    RemoteErrorKind.TIMEOUT: "reachable",
    RemoteErrorKind.PROTOCOL: "login",
}


def host_layout(options: DeployOptions, plan: HostPlan) -> LinuxLayout:
    """The folders on this host: `{host}` and `{port}` in a path become the target's own, so
    hosts that share a file system (a test fleet on one machine) keep apart."""

    def placed(path: str) -> str:
        return path.replace("{host}", plan.target.host).replace("{port}", str(plan.target.port))

    return LinuxLayout(placed(options.prefix), placed(options.state_dir), placed(options.unit_dir))


@dataclass(frozen=True)
class HostOutcome:
    stage: DeployStage
    succeeded: bool
    failed_check: str = ""
    reason: str = ""
    agent_id: str | None = None
    found_version: str = ""


Progress = Callable[..., Awaitable[None]]  # progress(stage=..., token_id=..., agent_id=...)
OpenShell = Callable[..., Awaitable[RemoteShell]]
IssueEnrollment = Callable[[], Awaitable[tuple[str, str]]]  # -> (token id, enrollment string)
AgentVersionOnline = Callable[[str], Awaitable[str | None]]


@dataclass(frozen=True)
class HostDeployer:
    """What one host's deployment needs from the server."""

    wheelhouse: Wheelhouse
    options: DeployOptions
    credentials: CredentialSource
    trusted_for: Callable[[str, int], Awaitable[list[object]]]
    open_shell: OpenShell
    issue_enrollment: IssueEnrollment
    agent_version_online: AgentVersionOnline

    async def deploy(self, plan: HostPlan, progress: Progress) -> HostOutcome:
        stage = DeployStage.PREFLIGHT
        found_version = ""
        target = plan.target
        try:
            await progress(stage=stage)
            if target.transport is not Transport.SSH:
                return HostOutcome(
                    stage,
                    False,
                    "transport",
                    f"{target.label}: push install over {target.transport.value} is not built "
                    "yet (docs/deploy.md)",
                )
            try:
                trusted = await self.trusted_for(target.host, target.port)
                credential = await self.credentials.for_target(target, plan.credential_name)
                shell = await self.open_shell(target, credential, trusted)
            except HostKeyRefused as refused:
                return HostOutcome(stage, False, "host key", refused.message)
            except RemoteError as error:
                return HostOutcome(stage, False, _LOGIN_CHECK[error.kind], error.message)
            except SondeError as error:
                return HostOutcome(stage, False, "credentials", str(error))
            try:
                layout = host_layout(self.options, plan)
                host = await preflight_linux(
                    shell,
                    self.wheelhouse,
                    prefix=layout.prefix,
                    state_dir=layout.state_dir,
                    unit_dir=layout.unit_dir,
                    min_free_bytes=self.options.min_free_mb * 2**20,
                )
                found_version = host.installed_version

                async def mark(name: str) -> None:
                    nonlocal stage
                    stage = DeployStage(name)
                    await progress(stage=stage, found_version=found_version)

                async def enrollment() -> str:
                    token_id, text = await self.issue_enrollment()
                    await progress(stage=DeployStage.ENROLL, token_id=token_id)
                    return text

                agent_id = await install_linux(
                    shell, host, self.wheelhouse, layout, enrollment=enrollment, stage=mark
                )
            finally:
                await shell.close()
            stage = DeployStage.ONLINE
            await progress(stage=stage, agent_id=agent_id)
            return await self._came_online(agent_id, found_version)
        except PreflightFailed as failed:
            return HostOutcome(stage, False, failed.check, failed.message, None, found_version)
        except InstallFailed as failed:
            return HostOutcome(stage, False, stage.value, failed.message, None, found_version)
        except RemoteError as error:
            return HostOutcome(stage, False, stage.value, error.message, None, found_version)
        except SondeError as error:
            return HostOutcome(stage, False, stage.value, str(error), None, found_version)

    async def _came_online(self, agent_id: str, found_version: str) -> HostOutcome:
        wanted = self.wheelhouse.agent_version
        deadline = time.monotonic() + self.options.online_timeout_s
        seen: str | None = None
        while time.monotonic() < deadline:
            seen = await self.agent_version_online(agent_id)
            if seen == wanted:
                return HostOutcome(
                    DeployStage.DONE,
                    True,
                    reason=f"agent {agent_id} online at {wanted}",
                    agent_id=agent_id,
                    found_version=found_version,
                )
            await asyncio.sleep(0.2)
        said = (
            f"it is online at version {seen}, not {wanted}"
            if seen
            else "it has not connected: check that the host reaches the server's agent address"
        )
        return HostOutcome(
            DeployStage.ONLINE,
            False,
            "online",
            f"agent {agent_id} was installed and started but {said} "
            f"(waited {self.options.online_timeout_s:g} s)",
            agent_id,
            found_version,
        )
