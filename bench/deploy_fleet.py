"""Deploy throughput: hosts per minute at the default concurrency for a test fleet of sshd hosts.

A real server (in this process, SQLite), N real sshd hosts on loopback (tests/support), each
with its own stand-in systemd; `--fresh` of them get the full install (venv, wheels over SFTP,
pip), the others ship the agent pre-installed at the wanted version (enroll, unit, start and
the online check only), as in tests/integration/deploy/test_deploy_fleet.py. Then the same
deployment again: every host skipped (no login). Prints one table.

    .venv/bin/python -m bench.deploy_fleet [--hosts 20] [--fresh 3] [--parallel 8]
        [--wheelhouse DIR] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sonde.server.storage.db import migrate
from sonde.v1 import console_pb2, console_pb2_grpc, deploy_pb2
from tests.support.deploy_hosts import (
    TestHost,
    build_agent_template,
    build_wheelhouse,
    fleet_options,
    provision_agent,
    start_host,
)
from tests.support.live_server import live_server
from tests.support.sshd import ed25519_pair


async def _deploy(
    console: console_pb2_grpc.ConsoleServiceAsyncStub, request: deploy_pb2.StartDeploymentRequest
) -> tuple[float, deploy_pb2.Deployment]:
    started = time.monotonic()
    deployment = (await console.StartDeployment(request)).deployment
    while not deployment.finished:
        await asyncio.sleep(0.1)
        reply = await console.GetDeployment(deploy_pb2.GetDeploymentRequest(id=deployment.id))
        deployment = reply.deployment
    return time.monotonic() - started, deployment


def _per_host_s(deployment: deploy_pb2.Deployment) -> list[float]:
    begun = deployment.created_at.ToDatetime()
    return [(host.updated_at.ToDatetime() - begun).total_seconds() for host in deployment.hosts]


async def _run(args: argparse.Namespace, root: Path) -> dict[str, object]:
    wheelhouse = args.wheelhouse or build_wheelhouse(root / "wheelhouse")
    template = build_agent_template(root / "template", wheelhouse)
    database = root / "sonde.db"
    migrate(f"sqlite+aiosqlite:///{database}")
    hosts: list[TestHost] = []
    try:
        for index in range(args.hosts):
            host = start_host(root / "hosts")
            if index >= args.fresh:
                provision_agent(host, template)
            hosts.append(host)
        private, public = ed25519_pair()
        for host in hosts:
            host.authorize(public)
        url = f"sqlite+aiosqlite:///{database}"
        server = live_server(root / "server", url, wheelhouse=wheelhouse)
        async with server as live, live.console_channel(live.admin_token) as channel:
            console = console_pb2_grpc.ConsoleServiceStub(channel)
            await console.AddCredential(
                console_pb2.AddCredentialRequest(
                    name="bench-key",
                    kind=console_pb2.CREDENTIAL_KIND_SSH_PRIVATE_KEY,
                    user="root",
                    hosts=["127.0.0.1"],
                    secret=private.decode(),
                )
            )
            for host in hosts:
                await console.TrustHost(
                    console_pb2.TrustHostRequest(
                        address=host.address, fingerprint=host.sshd.host_key.fingerprint
                    )
                )
            options = fleet_options(root / "hosts", parallel=args.parallel)
            request = deploy_pb2.StartDeploymentRequest(
                hosts=[
                    deploy_pb2.DeployTarget(
                        transport=deploy_pb2.DEPLOY_TRANSPORT_SSH,
                        address=f"root@{host.address}",
                    )
                    for host in hosts
                ],
                options=deploy_pb2.DeployOptions(
                    prefix=options.prefix,
                    state_dir=options.state_dir,
                    unit_dir=options.unit_dir,
                    parallel=args.parallel,
                    online_timeout_s=60,
                    min_free_mb=50,
                ),
            )
            first_s, first = await _deploy(console, request)
            again_s, again = await _deploy(console, request)
    finally:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(TestHost.stop, hosts))
    succeeded = sum(h.result == deploy_pb2.DEPLOY_HOST_RESULT_SUCCEEDED for h in first.hosts)
    skipped = sum(h.result == deploy_pb2.DEPLOY_HOST_RESULT_SKIPPED for h in again.hosts)
    per_host = _per_host_s(first)
    fresh = per_host[: args.fresh]
    imaged = per_host[args.fresh :]
    return {
        "hosts": args.hosts,
        "fresh": args.fresh,
        "parallel": args.parallel,
        "succeeded": succeeded,
        "failed": [
            h.reason for h in first.hosts if h.result == deploy_pb2.DEPLOY_HOST_RESULT_FAILED
        ],
        "deploy_s": round(first_s, 1),
        "hosts_per_minute": round(args.hosts * 60 / first_s, 1),
        "fresh_done_p50_s": round(statistics.median(fresh), 1) if fresh else None,
        "imaged_done_p50_s": round(statistics.median(imaged), 1) if imaged else None,
        "rerun_s": round(again_s, 2),
        "rerun_skipped": skipped,
        "rerun_hosts_per_minute": round(args.hosts * 60 / again_s, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--hosts", type=int, default=20)
    parser.add_argument("--fresh", type=int, default=3, help="hosts that get the full install")
    parser.add_argument("--parallel", type=int, default=8, help="the default concurrency: 8")
    parser.add_argument("--wheelhouse", type=Path, help="built already (else ~20 s to build)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    args.fresh = min(args.fresh, args.hosts)
    with tempfile.TemporaryDirectory(prefix="sonde-bench-deploy-") as folder:
        figures = asyncio.run(_run(args, Path(folder)))
    if args.json:
        print(json.dumps(figures))
        return 0
    print(
        f"deploy, {figures['hosts']} sshd hosts ({figures['fresh']} full installs), "
        f"--parallel {figures['parallel']}"
    )
    print(f"{'what':<34}{'value':>10}")
    for name, label in (
        ("succeeded", "hosts succeeded"),
        ("deploy_s", "deployment, s"),
        ("hosts_per_minute", "hosts per minute"),
        ("fresh_done_p50_s", "full install done at (p50), s"),
        ("imaged_done_p50_s", "pre-installed done at (p50), s"),
        ("rerun_s", "re-run (all skipped), s"),
        ("rerun_hosts_per_minute", "re-run hosts per minute"),
    ):
        print(f"{label:<34}{figures[name]!s:>10}")
    for reason in figures["failed"]:  # type: ignore[attr-defined]
        print(f"failed: {reason}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
