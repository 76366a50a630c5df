"""`sonde deploy`: push install of the agent to hosts the server logs in to (docs/deploy.md).

The server does the connecting: StartDeployment returns at once with the deployment's id and
its hosts `pending`; this command then polls GetDeployment, draws a progress bar on a
terminal's stderr, and prints one row per host at the end (or the deployment as JSON). Running
the same command again, or `--retry ID`, touches only the hosts that failed or have no agent
online at the wanted version. Exit code 1 when a host failed.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from sonde.server.console.context import Context
from sonde.server.console.errors import CliError
from sonde.server.console.layout import Column, Give, ListTable
from sonde.server.console.render import text
from sonde.v1 import deploy_pb2

POLL_S = 0.5
MAX_HOSTS_FILE_BYTES = 1024 * 1024
_TRANSPORTS = {"ssh": deploy_pb2.DEPLOY_TRANSPORT_SSH, "winrm": deploy_pb2.DEPLOY_TRANSPORT_WINRM}
_FINAL = {
    deploy_pb2.DEPLOY_HOST_RESULT_SUCCEEDED,
    deploy_pb2.DEPLOY_HOST_RESULT_FAILED,
    deploy_pb2.DEPLOY_HOST_RESULT_SKIPPED,
}


def register(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    deploy = commands.add_parser(
        "deploy",
        parents=[common],
        help="install the agent on hosts the server logs in to (admin)",
        description="The server logs in to each host with a stored credential (its SSH key "
        "trusted first: sonde hosts trust), checks it (reachable, login, admin, OS and "
        "architecture, python3, free space, the agent already there), installs the agent (Linux: "
        "its own venv and systemd unit; Windows: the MSI, fetched by the host from the server "
        "over HTTPS or streamed over WinRM), enrolls it with a one-time token and waits until "
        "it is online. Run it again, or --retry ID, to redo only the hosts that failed.",
    )
    which = deploy.add_mutually_exclusive_group(required=True)
    which.add_argument("--ssh", nargs="+", metavar="USER@HOST[:PORT]", help="Linux hosts")
    which.add_argument("--winrm", nargs="+", metavar="USER@HOST[:PORT]", help="Windows hosts")
    which.add_argument(
        "--from",
        dest="hosts_file",
        type=Path,
        metavar="FILE",
        help="one host a line: `ssh USER@HOST[:PORT] [credential=NAME]` or `winrm ...`; "
        "# starts a comment",
    )
    which.add_argument("--retry", metavar="DEPLOYMENT", help="a deployment's hosts again")
    which.add_argument("--show", metavar="DEPLOYMENT", help="where a deployment's hosts got to")
    deploy.add_argument(
        "--credential",
        default="",
        help="the stored credential (default: the one whose hosts match)",
    )
    deploy.add_argument("--prefix", default="", help="the agent's venv (/opt/sonde-agent)")
    deploy.add_argument("--state-dir", default="", help="its state (/var/lib/sonde-agent)")
    deploy.add_argument("--unit-dir", default="", help="systemd units (/etc/systemd/system)")
    deploy.add_argument("--parallel", type=int, default=0, metavar="N", help="hosts at once (8)")
    deploy.add_argument(
        "--host-timeout", type=int, default=0, metavar="S", help="seconds per host (600)"
    )
    deploy.add_argument(
        "--online-timeout",
        type=int,
        default=0,
        metavar="S",
        help="seconds to wait for each agent's first connection (60)",
    )
    deploy.add_argument(
        "--min-free-mb", type=int, default=0, metavar="MB", help="free space needed (200)"
    )
    deploy.add_argument(
        "--msi-delivery",
        choices=["auto", "fetch", "stream"],
        default="",
        help="Windows: the host fetches the MSI from the server over HTTPS, or has it "
        "streamed over WinRM; auto (the default) fetches where the host reaches the server",
    )
    deploy.add_argument(
        "--no-wait", action="store_true", help="print the deployment's id and return"
    )
    deploy.set_defaults(handler=run_deploy)


def hosts_from_file(path: Path, credential: str) -> list[deploy_pb2.DeployTarget]:
    """The hosts a file names; CliError naming the line that is wrong."""
    try:
        if path.stat().st_size > MAX_HOSTS_FILE_BYTES:
            raise CliError("INVALID_ARGUMENT", f"{path} is larger than 1 MiB: not a hosts file")
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise CliError("INVALID_ARGUMENT", f"cannot read the hosts file {path}: {error}") from None
    targets = []
    for number, line in enumerate(lines, start=1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        where = f"{path}, line {number}"
        if words[0] not in _TRANSPORTS or len(words) < 2:
            raise CliError(
                "INVALID_ARGUMENT",
                f"{where}: expected `ssh USER@HOST[:PORT]` or `winrm USER@HOST[:PORT]`, "
                "optionally followed by credential=NAME",
            )
        named = credential
        for extra in words[2:]:
            key, sep, value = extra.partition("=")
            if key != "credential" or not sep or not value:
                raise CliError(
                    "INVALID_ARGUMENT", f"{where}: {extra[:40]!r} is not credential=NAME"
                )
            named = value
        targets.append(
            deploy_pb2.DeployTarget(
                transport=_TRANSPORTS[words[0]], address=words[1], credential=named
            )
        )
    if not targets:
        raise CliError("INVALID_ARGUMENT", f"{path} names no host")
    return targets


def _request(args: argparse.Namespace) -> deploy_pb2.StartDeploymentRequest:
    options = deploy_pb2.DeployOptions(
        prefix=args.prefix,
        state_dir=args.state_dir,
        unit_dir=args.unit_dir,
        parallel=max(args.parallel, 0),
        host_timeout_s=max(args.host_timeout, 0),
        online_timeout_s=max(args.online_timeout, 0),
        min_free_mb=max(args.min_free_mb, 0),
        msi_delivery=args.msi_delivery,
    )
    if args.retry:
        return deploy_pb2.StartDeploymentRequest(retry=args.retry)
    if args.hosts_file:
        hosts = hosts_from_file(args.hosts_file, args.credential)
    else:
        transport = _TRANSPORTS["ssh" if args.ssh else "winrm"]
        hosts = [
            deploy_pb2.DeployTarget(
                transport=transport, address=address, credential=args.credential
            )
            for address in args.ssh or args.winrm
        ]
    return deploy_pb2.StartDeploymentRequest(hosts=hosts, options=options)


def _summary(deployment: deploy_pb2.Deployment) -> str:
    counts: dict[str, int] = {}
    for host in deployment.hosts:
        name = deploy_pb2.DeployHostResult.Name(host.result).removeprefix("DEPLOY_HOST_RESULT_")
        counts[name.lower()] = counts.get(name.lower(), 0) + 1
    return ", ".join(f"{count} {name}" for name, count in sorted(counts.items()))


def report_table(deployment: deploy_pb2.Deployment) -> ListTable:
    table = ListTable(
        f"Deployment {deployment.id} of agent {deployment.agent_version}: {_summary(deployment)}",
        [
            Column("host"),
            Column("result"),
            Column("stage", optional=True),
            Column("check"),
            Column("agent", optional=True),
            Column("why", Give.WRAP),
        ],
    )
    for host in deployment.hosts:
        result = deploy_pb2.DeployHostResult.Name(host.result).removeprefix("DEPLOY_HOST_RESULT_")
        style = {"FAILED": "red", "SUCCEEDED": "green"}.get(result, "")
        transport = deploy_pb2.DeployTransport.Name(host.transport).removeprefix(
            "DEPLOY_TRANSPORT_"
        )
        stage = deploy_pb2.DeployStage.Name(host.stage).removeprefix("DEPLOY_STAGE_").lower()
        table.add_row(
            text(f"{transport.lower()}://{host.address}"),
            text(result.lower(), style),
            text(f"{stage} (MSI {host.msi_delivery})" if host.msi_delivery else stage),
            text(host.failed_check),
            text(host.agent_id[:8]),
            text(host.reason),
        )
    return table


def _follow(ctx: Context, deployment: deploy_pb2.Deployment) -> deploy_pb2.Deployment:
    client = ctx.client()
    request = deploy_pb2.GetDeploymentRequest(id=deployment.id)
    bar = not ctx.out.json_mode and ctx.out.stderr.isatty()
    progress = Progress(
        TextColumn("[bold]deploying[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=ctx.out.errors,
        disable=not bar,
        transient=True,
    )
    with progress:
        task = progress.add_task("", total=len(deployment.hosts))
        while not deployment.finished:
            time.sleep(POLL_S)
            deployment = client.call(client.stub.GetDeployment, request).deployment
            done = sum(1 for host in deployment.hosts if host.result in _FINAL)
            progress.update(task, completed=done, description=_summary(deployment))
    return deployment


def run_deploy(args: argparse.Namespace, ctx: Context) -> int:
    client = ctx.client()
    if args.show:
        shown = client.call(
            client.stub.GetDeployment, deploy_pb2.GetDeploymentRequest(id=args.show)
        ).deployment
    else:
        started = client.call(client.stub.StartDeployment, _request(args)).deployment
        if args.no_wait:
            ctx.out.emit_message(started)
            ctx.out.done(
                f"deployment {started.id} started on {len(started.hosts)} hosts: "
                f"sonde deploy --show {started.id}"
            )
            return 0
        if not ctx.out.json_mode:
            ctx.out.done(f"deployment {started.id}: {len(started.hosts)} hosts")
        shown = _follow(ctx, started)
    ctx.out.result(shown, report_table(shown))
    failed = any(host.result == deploy_pb2.DEPLOY_HOST_RESULT_FAILED for host in shown.hosts)
    if failed and not ctx.out.json_mode:
        ctx.out.done(
            f"some hosts failed: fix what the table says, then `sonde deploy --retry {shown.id}` "
            "redoes only those"
        )
    return 1 if failed else 0
