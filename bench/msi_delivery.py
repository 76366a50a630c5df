"""The agent's MSI to Windows hosts, streamed over WinRM against fetched over HTTPS.

Real parts on 127.0.0.1: the server's package listener (server/api/package_listener.py, real
TLS with a certificate of a Sonde CA made here) and N WinRS endpoints (tests/support: real
HTTP, WS-Management messages) standing in for the hosts. Each round puts the MSI on every host
at once both ways, in turns so that the machine's load falls on each alike:

- **streamed**: WinRMShell.upload, what `sonde deploy --msi-delivery stream` does: base64
  lines of 128 KiB, one WS-Management Send each, the receiver's hash checked (the reference);
- **fetched**: fetch.ps1 started over WinRM, the host's HTTPS GET with the certificate
  pinned, the length and the SHA-256 checked (`--msi-delivery fetch`).

The stand-in hosts run in this process, so their work (decoding base64 and XML, hashing,
reading TLS) shares the two cores with the server's: the ratio says what the server's path
costs, not what a real host's disk and PowerShell do.

    .venv/bin/python -m bench.msi_delivery [--hosts 8] [--mib 40] [--rounds 3] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from bench.stats import Row, format_table
from sonde.server import pki
from sonde.server.api.package_listener import PackageListener
from sonde.server.remote.credentials import Credential
from sonde.server.remote.msi_fetch import PackageOffer, fetch_on_host
from sonde.server.remote.shell import RemoteTarget, Transport
from sonde.server.remote.windows_install import MSI_FOLDER, AgentMsi, load_msi
from sonde.server.remote.winrm import WinRMAuth, WinRMHost, WinRMShell
from tests.support.winrs_deploy import WindowsHost, start_windows_host

USER, PASSWORD = "bench", "a-throwaway-bench-password"


async def _shell(host: WindowsHost) -> WinRMShell:
    target = RemoteTarget(Transport.WINRM, USER, "127.0.0.1", host.endpoint.port)
    settings = WinRMHost(
        target, https=False, auth=WinRMAuth.BASIC, allow_basic=True, allow_unencrypted=True
    )
    return await WinRMShell.open(settings, Credential(USER, password=PASSWORD, name="bench"))


async def _each(
    shells: list[WinRMShell], one: Callable[[WinRMShell], Awaitable[None]]
) -> list[float]:
    """Every host at once; each host's seconds, and the last is the whole."""

    async def timed(shell: WinRMShell) -> float:
        started = time.perf_counter()
        await one(shell)
        return time.perf_counter() - started

    started = time.perf_counter()
    seconds = await asyncio.gather(*(timed(shell) for shell in shells))
    return [*seconds, time.perf_counter() - started]


async def _measure(
    hosts: list[WindowsHost], msi: AgentMsi, offer: PackageOffer, rounds: int
) -> dict[str, list[float]]:
    path = f"{MSI_FOLDER}\\{msi.filename}"
    shells = [await _shell(host) for host in hosts]
    found: dict[str, list[float]] = {
        "streamed": [],
        "fetched": [],
        "streamed all": [],
        "fetched all": [],
    }

    async def streamed(shell: WinRMShell) -> None:
        await shell.upload(msi.data, path, timeout_s=600)

    async def fetched(shell: WinRMShell) -> None:
        done = await fetch_on_host(shell, offer, sha256=msi.sha256, size=len(msi.data), path=path)
        if done.exit_code != 0:
            raise RuntimeError(f"fetch failed: {done.said}")

    try:
        for round_ in range(rounds):
            ways = [("streamed", streamed), ("fetched", fetched)]
            for name, way in ways if round_ % 2 == 0 else reversed(ways):
                for host in hosts:
                    host.files.clear()
                *each, whole = await _each(shells, way)
                if any(host.files.get(path) != msi.data for host in hosts):
                    raise RuntimeError(f"{name}: a host does not hold the MSI whole")
                found[name] += each
                found[f"{name} all"].append(whole)
                print(
                    f"round {round_ + 1}: {name} to {len(hosts)} hosts in {whole:.2f} s",
                    file=sys.stderr,
                )
    finally:
        for shell in shells:
            await shell.close()
    return found


async def _run(hosts_n: int, mib: int, rounds: int) -> tuple[dict[str, list[float]], int]:
    with tempfile.TemporaryDirectory(prefix="sonde-bench-msi-") as folder:
        root = Path(folder)
        paths = pki.PkiPaths(root / "pki")
        paths.root.mkdir(mode=0o700)
        pki.initialise(paths, ["127.0.0.1"])
        msi_file = root / "sonde-agent-0.1.0.msi"
        msi_file.write_bytes(os.urandom(mib * 2**20))
        msi = load_msi(msi_file)
        listener = PackageListener(msi, paths.server_certificate, paths.server_key)
        await listener.start("127.0.0.1:0")
        hosts = [start_windows_host(root / f"win-{n}", USER, PASSWORD) for n in range(hosts_n)]
        try:
            found = await _measure(hosts, msi, listener.offer(f"127.0.0.1:{listener.port}"), rounds)
        finally:
            for host in hosts:
                host.stop()
            await listener.stop()
        return found, len(msi.data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--hosts", type=int, default=8, help="Windows hosts at once (8, deploy's --parallel)"
    )
    parser.add_argument("--mib", type=int, default=40, help="the MSI's size in MiB (40)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    found, size = asyncio.run(_run(args.hosts, args.mib, args.rounds))
    streamed, fetched = statistics.median(found["streamed"]), statistics.median(found["fetched"])
    figures = {
        "hosts": args.hosts,
        "msi_bytes": size,
        "rounds": args.rounds,
        "per_host_p50_s": {"streamed": streamed, "fetched": fetched},
        "all_hosts_p50_s": {
            "streamed": statistics.median(found["streamed all"]),
            "fetched": statistics.median(found["fetched all"]),
        },
        "fetched_over_streamed_p50": fetched / streamed,
    }
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    rows = [
        Row.of(f"streamed, per host ({args.hosts} at once)", found["streamed"], "reference"),
        Row.of(
            f"fetched, per host ({args.hosts} at once)",
            found["fetched"],
            f"{fetched / streamed:.2f}x",
        ),
        Row.of(f"streamed, all {args.hosts} hosts", found["streamed all"]),
        Row.of(f"fetched, all {args.hosts} hosts", found["fetched all"]),
    ]
    print(f"MSI of {size / 2**20:.0f} MiB to {args.hosts} hosts, {args.rounds} rounds (seconds)")
    print(format_table(rows))


if __name__ == "__main__":
    main()
