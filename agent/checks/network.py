"""network.gateway, network.dns, network.server and network.target."""

from __future__ import annotations

from sonde.agent.checks.context import CheckContext
from sonde.agent.checks.fixes import fix_for
from sonde.agent.checks.wording import CRITICAL, OK, WARNING, finding
from sonde.v1 import diagnostics_pb2


def network_gateway(
    snapshot: diagnostics_pb2.Snapshot, ctx: CheckContext
) -> diagnostics_pb2.Finding | None:
    network = snapshot.network
    if not snapshot.HasField("network") or network.gateway_unavailable:
        return None
    if not network.default_gateway:
        return finding(
            "network.gateway",
            CRITICAL,
            "There is no default gateway: this computer cannot reach anything beyond its own "
            "network (cable, Wi-Fi or DHCP problem).",
            {
                "interfaces up": ", ".join(
                    i.name for i in network.interfaces if i.is_up and not i.is_loopback
                )
                or "none"
            },
        )
    via = network.default_interface or "an interface"
    return finding(
        "network.gateway",
        OK,
        f"The default gateway is {network.default_gateway} via {via}.",
        {"gateway": network.default_gateway, "interface": network.default_interface},
    )


def network_dns(
    snapshot: diagnostics_pb2.Snapshot, ctx: CheckContext
) -> diagnostics_pb2.Finding | None:
    network = snapshot.network
    if not snapshot.HasField("network"):
        return None
    servers = ", ".join(network.dns_servers) or "none"
    evidence: dict[str, object] = {"DNS servers": servers}
    resolutions = list(network.resolutions)
    for resolution in resolutions:
        evidence[resolution.name] = (
            f"{resolution.duration_ms:.0f} ms -> {', '.join(resolution.addresses)}"
            if resolution.ok
            else f"failed: {resolution.error}"
        )
    if not resolutions:
        if network.dns_unavailable:
            return None
        if not network.dns_servers:
            return finding(
                "network.dns",
                CRITICAL,
                "No DNS server is configured: names like the company's servers cannot be found.",
                evidence,
                fix_for("network.dns", snapshot),
            )
        return finding("network.dns", OK, f"DNS servers are configured: {servers}.", evidence)
    failed = [r for r in resolutions if not r.ok]
    if failed:
        names = ", ".join(r.name for r in failed)
        return finding(
            "network.dns",
            CRITICAL,
            f"Name resolution fails for {names} (DNS servers: {servers}).",
            evidence,
            fix_for("network.dns", snapshot),
        )
    slowest = max(resolutions, key=lambda r: r.duration_ms)
    if slowest.duration_ms >= ctx.thresholds.dns_slow_warning_ms:
        return finding(
            "network.dns",
            WARNING,
            f"Name resolution is slow: {slowest.name} took {slowest.duration_ms:.0f} ms "
            f"(DNS servers: {servers}).",
            evidence,
            fix_for("network.dns", snapshot),
        )
    return finding(
        "network.dns",
        OK,
        f"Names resolve quickly: the slowest, {slowest.name}, took {slowest.duration_ms:.0f} ms.",
        evidence,
    )


def _probe_finding(
    check: str, what: str, probe: diagnostics_pb2.ConnectProbe, ctx: CheckContext
) -> diagnostics_pb2.Finding:
    where = f"{probe.host}:{probe.port}" if probe.port else probe.host
    evidence = {"address": where, "connect time": f"{probe.duration_ms:.1f} ms"}
    if not probe.ok:
        evidence["error"] = probe.error
        return finding(check, CRITICAL, f"Cannot reach {what} at {where}: {probe.error}.", evidence)
    if probe.duration_ms >= ctx.thresholds.connect_slow_warning_ms:
        return finding(
            check,
            WARNING,
            f"{what[0].upper()}{what[1:]} at {where} is slow to answer: "
            f"{probe.duration_ms:.0f} ms to connect.",
            evidence,
        )
    return finding(
        check,
        OK,
        f"{what[0].upper()}{what[1:]} at {where} answers in {probe.duration_ms:.0f} ms.",
        evidence,
    )


def _probe(snapshot: diagnostics_pb2.Snapshot, purpose: str) -> diagnostics_pb2.ConnectProbe | None:
    if not snapshot.HasField("network"):
        return None
    return next((p for p in snapshot.network.probes if p.purpose == purpose), None)


def network_server(
    snapshot: diagnostics_pb2.Snapshot, ctx: CheckContext
) -> diagnostics_pb2.Finding | None:
    probe = _probe(snapshot, "server")
    return (
        None if probe is None else _probe_finding("network.server", "the Sonde server", probe, ctx)
    )


def network_target(
    snapshot: diagnostics_pb2.Snapshot, ctx: CheckContext
) -> diagnostics_pb2.Finding | None:
    probe = _probe(snapshot, "target")
    return (
        None
        if probe is None
        else _probe_finding("network.target", "the configured target", probe, ctx)
    )
