"""network.proxy: the user's proxy (what the browser uses) against the machine's (WinHTTP,
what services, Windows Update and Defender use): the classic "the browser works, updates
don't" when only the user has one."""

from __future__ import annotations

from sonde.agent.checks.context import CheckContext
from sonde.agent.checks.wording import OK, WARNING, finding
from sonde.v1 import diagnostics_pb2


def _said(proxy: diagnostics_pb2.ProxySettings) -> str:
    if proxy.http_proxy or proxy.https_proxy:
        return proxy.https_proxy or proxy.http_proxy
    return f"the script {proxy.auto_config_url}" if proxy.auto_config_url else ""


def network_proxy(
    snapshot: diagnostics_pb2.Snapshot, ctx: CheckContext
) -> diagnostics_pb2.Finding | None:
    network = snapshot.network
    if not snapshot.HasField("network") or not network.machine_proxy_known:
        return None  # only where the OS has a machine-wide proxy to compare with
    user = _said(network.proxy) if network.HasField("proxy") else ""
    machine = _said(network.machine_proxy) if network.HasField("machine_proxy") else ""
    evidence = {
        "user proxy": f"{user} ({network.proxy.source})" if user else "none",
        "user bypass list": network.proxy.no_proxy or "none",
        "machine proxy (WinHTTP)": machine or "none: direct access",
        "machine bypass list": network.machine_proxy.no_proxy or "none",
    }
    if user and not machine:
        summary = (
            f"The user's browser goes through the proxy {user}, but Windows services go "
            "direct (WinHTTP has no proxy): where the network only lets the proxy out, "
            "Windows Update and Defender fail while browsing works."
        )
        return finding("network.proxy", WARNING, summary, evidence)
    if not user and not machine:
        return finding("network.proxy", OK, "No proxy is set: connections go direct.", evidence)
    summary = f"A proxy is set for Windows services ({machine or 'none'})"
    summary += f" and for the user ({user})." if user else "."
    return finding("network.proxy", OK, summary, evidence)
