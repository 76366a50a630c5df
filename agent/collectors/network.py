"""Network facts: interfaces, default gateway, DNS servers, name resolution, TCP probes, proxy."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from functools import partial

import psutil
from google.protobuf.message import Message

from sonde.agent.collectors import probes
from sonde.agent.collectors.context import CollectContext
from sonde.agent.collectors.errors import CollectorUnavailable
from sonde.agent.collectors.platform_parts import PlatformParts
from sonde.v1 import diagnostics_pb2

_FAMILIES = {socket.AF_INET: "ipv4", socket.AF_INET6: "ipv6", psutil.AF_LINK: "mac"}
_DUPLEX: dict[int, str] = {psutil.NIC_DUPLEX_FULL: "full", psutil.NIC_DUPLEX_HALF: "half"}


def interfaces() -> list[diagnostics_pb2.NetworkInterface]:
    addresses = psutil.net_if_addrs()
    stats = psutil.net_if_stats()
    try:
        counters = psutil.net_io_counters(pernic=True)
    except (OSError, RuntimeError):
        counters = {}
    found = []
    for name in sorted(set(addresses) | set(stats)):
        nic = diagnostics_pb2.NetworkInterface(name=name)
        for address in addresses.get(name, []):
            family = _FAMILIES.get(address.family)
            if family is not None:
                nic.addresses.add(
                    family=family, address=address.address, netmask=address.netmask or ""
                )
        stat = stats.get(name)
        if stat is not None:
            nic.is_up, nic.speed_mbps, nic.mtu = stat.isup, max(0, stat.speed), stat.mtu
            nic.duplex = _DUPLEX.get(stat.duplex, "")
            nic.is_loopback = "loopback" in getattr(stat, "flags", "")
        nic.is_loopback = (
            nic.is_loopback
            or name == "lo"
            or any(a.address in ("127.0.0.1", "::1") for a in nic.addresses)
        )
        io = counters.get(name)
        if io is not None:
            nic.bytes_sent, nic.bytes_received = io.bytes_sent, io.bytes_recv
            nic.errors_in, nic.errors_out = io.errin, io.errout
            nic.drops_in, nic.drops_out = io.dropin, io.dropout
        found.append(nic)
    return found


def proxy_from_environment(environ: dict[str, str]) -> diagnostics_pb2.ProxySettings | None:
    def pick(name: str) -> str:
        return environ.get(name.lower()) or environ.get(name.upper()) or ""

    proxy = diagnostics_pb2.ProxySettings(
        http_proxy=pick("http_proxy"),
        https_proxy=pick("https_proxy"),
        no_proxy=pick("no_proxy"),
        source="environment",
    )
    return proxy if proxy.http_proxy or proxy.https_proxy else None


def names_to_resolve(ctx: CollectContext) -> list[str]:
    names = list(ctx.resolve_names)
    if ctx.server_address:
        try:
            host, _ = probes.split_host_port(ctx.server_address)
        except ValueError:
            host = ""  # the probe reports the bad address
        if host and not probes.is_ip_literal(host):
            names.insert(0, host)
    return list(dict.fromkeys(n for n in names if n))


def _run_probes(ctx: CollectContext, facts: diagnostics_pb2.NetworkFacts) -> None:
    names = names_to_resolve(ctx)
    targets = [("server", ctx.server_address), ("target", ctx.target_address)]
    targets_set = [(purpose, address) for purpose, address in targets if address]
    jobs: list[Callable[[], Message]] = [partial(probes.resolve, name) for name in names]
    jobs += [partial(probes.connect, purpose, address) for purpose, address in targets_set]
    # Connects resolve first, so allow both timeouts, with a margin for thread start.
    results = probes.run_side_by_side(jobs, 2 * probes.PROBE_TIMEOUT_S + 0.5)
    for name, resolution in zip(names, results[: len(names)], strict=True):
        if isinstance(resolution, diagnostics_pb2.NameResolution):
            facts.resolutions.append(resolution)
        else:
            facts.resolutions.add(name=name, error="no answer in time")
    for (purpose, address), probe in zip(targets_set, results[len(names) :], strict=True):
        if isinstance(probe, diagnostics_pb2.ConnectProbe):
            facts.probes.append(probe)
        else:
            facts.probes.add(purpose=purpose, host=address, error="no answer in time")


def collect_network(ctx: CollectContext, parts: PlatformParts) -> diagnostics_pb2.NetworkFacts:
    facts = diagnostics_pb2.NetworkFacts()
    facts.interfaces.extend(interfaces())
    try:
        route = parts.default_route()
        if route is not None:
            facts.default_gateway, facts.default_interface = route.gateway, route.interface
    except CollectorUnavailable as unavailable:
        facts.gateway_unavailable = unavailable.reason
    try:
        facts.dns_servers.extend(parts.dns_servers())
    except CollectorUnavailable as unavailable:
        facts.dns_unavailable = unavailable.reason
    _run_probes(ctx, facts)
    try:
        proxy = parts.proxy_settings()
    except CollectorUnavailable:
        proxy = None
    proxy = proxy or proxy_from_environment(dict(os.environ))
    if proxy is not None:
        facts.proxy.CopyFrom(proxy)
    try:
        machine = parts.machine_proxy()
        facts.machine_proxy_known = True
        if machine is not None:
            facts.machine_proxy.CopyFrom(machine)
    except CollectorUnavailable:
        pass  # the OS has none: network.proxy does not conclude
    return facts
