"""A real `sonde-agent run` on Linux is sent a signed order for a `user_session` script: it
refuses it as `user-session`, saying that only Windows starts a script in the user's session,
the script never runs (it would create a sentinel file), and the next ordinary order runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from sonde.v1 import agent_pb2
from tests.integration.agent.fake_server import (
    FakeServer,
    StartAgent,
    eventually,
)
from tests.integration.agent.run_orders import (
    OrderMaker,
    enrolled_with_keys,
    run_message,
    signed_entry,
)
from tests.support.catalog_bundles import manifest_text


@pytest.fixture
async def keyed_state(
    fake_server: FakeServer, agent_command: list[str], tmp_path: Path
) -> tuple[Path, OrderMaker]:
    state = tmp_path / "state"
    return state, await enrolled_with_keys(fake_server, agent_command, state)


async def test_a_linux_agent_refuses_a_user_session_script_and_runs_the_next(
    fake_server: FakeServer,
    keyed_state: tuple[Path, OrderMaker],
    start_agent: StartAgent,
    tmp_path: Path,
) -> None:
    state, maker = keyed_state
    agent = await start_agent("run", "--state", str(state))
    await eventually(lambda: len(fake_server.agents.hellos) >= 1, 10.0, f"a Hello\n{agent.log()}")
    sentinel = tmp_path / "ran-as-root"
    script = f'#!/bin/bash\ntouch "{sentinel}"\n'.encode()
    user = manifest_text("clear-app-cache", parameters="user_session = true\n").encode()
    ordinary = manifest_text("say-hello").encode()
    refused_order = maker.order(signed_entry(maker.catalog_key, user, script))
    ran_order = maker.order(signed_entry(maker.catalog_key, ordinary, b"#!/bin/bash\necho hi\n"))
    for order in (refused_order, ran_order):
        fake_server.agents.to_agent.put_nowait(run_message(maker.sign(order)))

    def result(command_id: str) -> agent_pb2.Result | None:
        found = [r for r in fake_server.agents.results if r.command_id == command_id]
        return found[0] if found else None

    await eventually(
        lambda: result(ran_order.command_id) is not None, 20.0, f"both results\n{agent.log()}"
    )
    refused = result(refused_order.command_id)
    assert refused is not None
    assert refused.failure.kind == agent_pb2.FAILURE_KIND_REFUSED
    assert refused.failure.refusal == "user-session"
    assert refused.failure.reason == (
        "clear-app-cache runs in the logged-on user's session, which Sonde starts only on "
        "Windows; this agent runs on linux"
    )
    ran = result(ran_order.command_id)
    assert ran is not None
    assert ran.script_run.stdout == b"hi\n"
    assert not ran.script_run.HasField("session")
    assert not sentinel.exists()
