"""Network probes against real sockets on 127.0.0.1."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from sonde.agent.collectors import network, probes
from sonde.agent.collectors.runner import CollectContext, collect_snapshot


@pytest.fixture
def listener() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        yield server.getsockname()[1]


@pytest.fixture
def closed_port() -> int:
    # Bound and never listened on: connects to it are refused.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        return int(holder.getsockname()[1])


async def test_connect_latency_to_a_real_listener_and_a_refused_port(
    listener: int, closed_port: int
) -> None:
    ctx = CollectContext(
        server_address=f"127.0.0.1:{listener}", target_address=f"127.0.0.1:{closed_port}"
    )
    snapshot = await collect_snapshot(ctx, only=["network"])
    server, target = snapshot.network.probes
    assert (server.purpose, server.host, server.port, server.ok) == (
        "server", "127.0.0.1", listener, True,
    )  # fmt: skip
    # Measured, and within the probe's own limit (a loopback connect can round to 0 ms).
    assert 0 <= server.duration_ms <= probes.PROBE_TIMEOUT_S * 1000
    assert (target.purpose, target.ok) == ("target", False)
    assert "refused" in target.error.lower()


def test_resolution_of_configured_names_and_the_server_host(listener: int) -> None:
    ctx = CollectContext(
        server_address=f"localhost:{listener}", resolve_names=("localhost", "no-such-host.invalid")
    )
    assert network.names_to_resolve(ctx) == ["localhost", "no-such-host.invalid"]
    resolved = probes.resolve("localhost")
    assert resolved.ok
    assert resolved.duration_ms >= 0
    assert any(a in ("127.0.0.1", "::1") for a in resolved.addresses)
    failed = probes.resolve("no-such-host.invalid")
    assert not failed.ok
    assert failed.error


def test_an_ip_literal_server_is_not_resolved() -> None:
    assert network.names_to_resolve(CollectContext(server_address="[::1]:443")) == []


@pytest.mark.parametrize(
    ("address", "error"),
    [
        ("server.example.com", "is not host:port"),
        ("server.example.com:https", "is not host:port"),
        ("server.example.com:70000", "port 70000 is outside 1-65535"),
    ],
)
def test_a_bad_address_is_refused_with_the_reason(address: str, error: str) -> None:
    probe = probes.connect("server", address)
    assert not probe.ok
    assert probe.error.startswith("refused to probe:")
    assert error in probe.error


def test_split_host_port_accepts_ipv6_brackets() -> None:
    assert probes.split_host_port("[::1]:8443") == ("::1", 8443)
    assert probes.split_host_port("sonde.corp:443") == ("sonde.corp", 443)


def test_proxy_from_environment() -> None:
    proxy = network.proxy_from_environment(
        {"HTTPS_PROXY": "http://proxy:3128", "no_proxy": "localhost,.corp"}
    )
    assert proxy is not None
    assert (proxy.https_proxy, proxy.no_proxy, proxy.source) == (
        "http://proxy:3128", "localhost,.corp", "environment",
    )  # fmt: skip
    assert network.proxy_from_environment({}) is None
