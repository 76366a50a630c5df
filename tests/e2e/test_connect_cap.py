"""Agents connecting at once beyond the server's cap are told to come back, never left hanging.

A real server started with `--max-connecting 1`: one hand-driven agent opens its session and
does not say Hello yet; a second one is answered at once with RESOURCE_EXHAUSTED and the
retry hint agents honour (`sonde-retry-after-ms`). Once the first has its Welcome, the second
gets in.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from sonde.v1 import agent_pb2, agent_pb2_grpc
from sonde.wire_limits import RETRY_AFTER_MS_KEY
from tests.e2e.test_security import enroll_in_process, open_session
from tests.support.deployment import Deployment

pytestmark = pytest.mark.slow


@pytest.fixture
def capped(tmp_path: Path) -> Iterator[Deployment]:
    sonde = Deployment(tmp_path, heartbeat_interval_s=1)
    sonde.init()
    sonde.start_server("--max-connecting", "1")
    try:
        yield sonde
    finally:
        sonde.stop()


def test_an_agent_over_the_cap_is_refused_at_once_with_a_retry_hint(capped: Deployment) -> None:
    _, slow = enroll_in_process(capped, capped.enrollment())
    _, other = enroll_in_process(capped, capped.enrollment())
    hello_now = threading.Event()
    welcomed = threading.Event()

    def slow_messages() -> Iterator[agent_pb2.AgentMessage]:
        hello_now.wait(10)
        yield agent_pb2.AgentMessage(hello=agent_pb2.Hello(hostname="slow", platform="linux"))

    def slow_session() -> None:
        options = [("grpc.ssl_target_name_override", "localhost")]
        with grpc.secure_channel(capped.agent_address, slow, options=options) as channel:
            stub = agent_pb2_grpc.AgentServiceStub(channel)
            for reply in stub.Session(slow_messages(), timeout=15):
                if reply.HasField("welcome"):
                    welcomed.set()
                    return

    holder = threading.Thread(target=slow_session)
    holder.start()
    try:
        time.sleep(0.5)  # the slow agent's stream is open and has said nothing yet
        hello = agent_pb2.AgentMessage(hello=agent_pb2.Hello(hostname="other", platform="linux"))
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as refused:
            open_session(capped.agent_address, other, [hello])
        assert time.monotonic() - started < 2.0  # answered, not left to time out
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        error = refused.value
        assert isinstance(error, grpc.Call)
        hints = [str(v) for k, v in error.trailing_metadata() or () if k == RETRY_AFTER_MS_KEY]
        assert len(hints) == 1
        assert 1000 <= int(hints[0]) <= 60_000
        assert "retry in" in (refused.value.details() or "")
    finally:
        hello_now.set()
        holder.join(20)
    assert welcomed.is_set()
    replies = open_session(capped.agent_address, other, [hello])
    assert replies[0].HasField("welcome")
