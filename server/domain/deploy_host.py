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
from sonde.server.remote.credentials import Credential, CredentialSource
from sonde.server.remote.host_keys import HostKeyRefused
from sonde.server.remote.linux_install import InstallFailed, LinuxLayout, install_linux
from sonde.server.remote.linux_preflight import PreflightFailed, preflight_linux
from sonde.server.remote.msi_fetch import (
    DeliveryRefused,
    MsiDelivery,
    PackageOffer,
    chosen_delivery,
)
from sonde.server.remote.shell import (
    RemoteError,
    RemoteErrorKind,
    RemoteShell,
    RemoteTarget,
    Transport,
)
from sonde.server.remote.wheelhouse import Wheelhouse
from sonde.server.remote.windows_install import AgentMsi, install_windows, preflight_windows

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
AgentOfToken = Callable[[str], Awaitable[tuple[str, str] | None]]  # -> (agent id, version)
OpenWinRM = Callable[[RemoteTarget, Credential], Awaitable[RemoteShell]]
Stage = Callable[[str], Awaitable[None]]


@dataclass(frozen=True)
class HostDeployer:
    """What one host's deployment needs from the server."""

    wheelhouse: Wheelhouse | None
    msi: AgentMsi | None
    options: DeployOptions
    credentials: CredentialSource
    trusted_for: Callable[[str, int], Awaitable[list[object]]]
    open_shell: OpenShell
    open_winrm: OpenWinRM
    issue_enrollment: IssueEnrollment
    agent_version_online: AgentVersionOnline
    agent_of_token: AgentOfToken
    package: PackageOffer | None = None  # the MSI over HTTPS from the server (msi_fetch.py)

    def wanted_version(self, transport: Transport) -> str:
        """The version a host of `transport` gets: the MSI's on Windows, the wheel's else."""
        source = self.msi if transport is Transport.WINRM else self.wheelhouse
        return (
            source.version
            if isinstance(source, AgentMsi)
            else (source.agent_version if source is not None else "")
        )

    async def deploy(self, plan: HostPlan, progress: Progress) -> HostOutcome:
        stage = DeployStage.PREFLIGHT
        found_version = ""
        target = plan.target

        async def mark(name: str) -> None:
            nonlocal stage
            stage = DeployStage(name)
            await progress(stage=stage, found_version=found_version)

        try:
            await progress(stage=stage)
            if target.transport is Transport.WINRM and self.msi is None:
                return HostOutcome(
                    stage,
                    False,
                    "transport",
                    f"{target.label}: this server has no agent MSI to install on Windows: "
                    "start it with --msi sonde-agent-VERSION.msi (docs/deploy.md)",
                )
            if target.transport is Transport.SSH and self.wheelhouse is None:
                return HostOutcome(
                    stage,
                    False,
                    "transport",
                    f"{target.label}: this server has no wheelhouse to install on Linux: "
                    "start it with --wheelhouse DIR (docs/deploy.md)",
                )
            try:
                credential = await self.credentials.for_target(target, plan.credential_name)
                if target.transport is Transport.WINRM:
                    shell = await self.open_winrm(target, credential)
                else:
                    trusted = await self.trusted_for(target.host, target.port)
                    shell = await self.open_shell(target, credential, trusted)
            except HostKeyRefused as refused:
                return HostOutcome(stage, False, "host key", refused.message)
            except RemoteError as error:
                return HostOutcome(stage, False, _LOGIN_CHECK[error.kind], error.message)
            except SondeError as error:
                return HostOutcome(stage, False, "credentials", str(error))
            try:
                if target.transport is Transport.WINRM:
                    found_version, fetch_from = await self._found_on_windows(
                        shell, progress, target.label
                    )
                    token_id = await self._install_windows(shell, progress, mark, fetch_from)
                    agent_id = ""
                else:
                    agent_id, found_version, token_id = await self._linux(
                        shell, plan, progress, mark
                    )
            finally:
                await shell.close()
            stage = DeployStage.ONLINE
            await progress(stage=stage)  # its agent id is written once it is seen online
            return await self._came_online(agent_id, token_id, found_version, target.transport)
        except PreflightFailed as failed:
            return HostOutcome(stage, False, failed.check, failed.message, None, found_version)
        except InstallFailed as failed:
            return HostOutcome(stage, False, stage.value, failed.message, None, found_version)
        except RemoteError as error:
            return HostOutcome(stage, False, stage.value, error.message, None, found_version)
        except SondeError as error:
            return HostOutcome(stage, False, stage.value, str(error), None, found_version)

    async def _linux(
        self, shell: RemoteShell, plan: HostPlan, progress: Progress, mark: Stage
    ) -> tuple[str, str, str]:
        """(agent id as the host says, version found before, the token issued or "")."""
        assert self.wheelhouse is not None
        layout = host_layout(self.options, plan)
        host = await preflight_linux(
            shell,
            self.wheelhouse,
            prefix=layout.prefix,
            state_dir=layout.state_dir,
            unit_dir=layout.unit_dir,
            min_free_bytes=self.options.min_free_mb * 2**20,
        )
        await progress(found_version=host.installed_version)

        issued: list[str] = []

        async def enrollment() -> str:
            token_id, text = await self.issue_enrollment()
            issued.append(token_id)
            await progress(stage=DeployStage.ENROLL, token_id=token_id)
            return text

        agent_id = await install_linux(
            shell, host, self.wheelhouse, layout, enrollment=enrollment, stage=mark
        )
        return agent_id, host.installed_version, issued[0] if issued else ""

    async def _found_on_windows(
        self, shell: RemoteShell, progress: Progress, label: str
    ) -> tuple[str, PackageOffer | None]:
        """(the version found before, the offer to fetch from or None to stream)."""
        assert self.msi is not None
        asked = MsiDelivery(self.options.msi_delivery)
        offer = None if asked is MsiDelivery.STREAM else self.package
        host = await preflight_windows(
            shell,
            min_free_bytes=self.options.min_free_mb * 2**20,
            msi_size=len(self.msi.data),
            package_url=offer.url if offer else "",
        )
        await progress(found_version=host.installed_version)
        try:
            delivery = chosen_delivery(asked, offer, host.reaches_server, label)
        except DeliveryRefused as refused:
            raise PreflightFailed("package", str(refused)) from None
        fetched = delivery is MsiDelivery.FETCH
        await progress(msi_delivery="fetched" if fetched else "streamed")
        return host.installed_version, offer if fetched else None

    async def _install_windows(
        self, shell: RemoteShell, progress: Progress, mark: Stage, fetch_from: PackageOffer | None
    ) -> str:
        """The token the service will enroll with when it starts; the agent is found by it."""
        assert self.msi is not None
        await mark("enroll")
        token_id, text = await self.issue_enrollment()
        await progress(token_id=token_id)
        await install_windows(shell, self.msi, enrollment=text, stage=mark, fetch_from=fetch_from)
        return token_id

    async def _came_online(
        self, agent_id: str, token_id: str, found_version: str, transport: Transport
    ) -> HostOutcome:
        wanted = self.wanted_version(transport)
        deadline = time.monotonic() + self.options.online_timeout_s
        seen: str | None = None
        while time.monotonic() < deadline:
            if token_id:  # the agent that enrolled with this host's token, whatever it says
                found = await self.agent_of_token(token_id)
                if found is not None and agent_id and found[0] != agent_id:
                    return HostOutcome(
                        DeployStage.ONLINE,
                        False,
                        "online",
                        f"the host said it enrolled as agent {agent_id[:26]}, but the agent "
                        f"enrolled with its token is {found[0]}: the host is not to be "
                        "trusted; revoke that agent and look at the machine",
                        found[0],
                        found_version,
                    )
                agent_id, seen = found if found else (agent_id, None)
            else:
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
            if not token_id
            else "no agent enrolled with its one-time token has connected: check that the "
            "host reaches the server's agent address"
        )
        return HostOutcome(
            DeployStage.ONLINE,
            False,
            "online",
            f"agent {agent_id} was installed and started but {said} "
            f"(waited {self.options.online_timeout_s:g} s)",
            None if token_id else agent_id,  # a fresh enrollment's id is what the host said
            found_version,
        )
