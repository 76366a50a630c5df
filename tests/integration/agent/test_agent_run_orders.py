"""`sonde-agent run` and run orders, against a stand-in server with real TLS from the same CA
speaking our protos: a rogue server's orders never run (each script would leave a sentinel
file) and each refusal comes back with its code and reason; a good order runs once with its
output streamed while it runs; kill -9 mid-run is reported interrupted and never run again;
the workstation's policy.toml refuses what it denies, and a damaged one refuses everything."""

from __future__ import annotations

import datetime
import os
import signal
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from sonde.v1 import agent_pb2, remediation_pb2
from tests.integration.agent.fake_server import (
    AgentProcess,
    FakeServer,
    StartAgent,
    eventually,
    run_agent_command,
)
from tests.integration.agent.run_orders import (
    OrderMaker,
    agent_id_of,
    enrolled_with_keys,
    own_script,
    raw,
    real_script,
    run_message,
)

NAME_PARAMETER = """
[[parameters]]
name = "name"
type = "string"
pattern = "^[a-z]{1,20}$"
required = true
description = "Who to greet."
"""


@pytest.fixture
async def keyed_state(
    fake_server: FakeServer, agent_command: list[str], tmp_path: Path
) -> tuple[Path, OrderMaker]:
    """A state folder enrolled with a server that sends the test's catalog and dispatch keys."""
    state = tmp_path / "state"
    return state, await enrolled_with_keys(fake_server, agent_command, state)


async def online(fake_server: FakeServer, start_agent: StartAgent, state: Path) -> AgentProcess:
    agent = await start_agent("run", "--state", str(state))
    await eventually(lambda: len(fake_server.agents.hellos) >= 1, 10.0, f"a Hello\n{agent.log()}")
    return agent


def result_for(fake_server: FakeServer, command_id: str) -> list[agent_pb2.Result]:
    return [r for r in fake_server.agents.results if r.command_id == command_id]


async def one_result(
    fake_server: FakeServer, agent: AgentProcess, command_id: str, timeout: float = 20.0
) -> agent_pb2.Result:
    await eventually(
        lambda: bool(result_for(fake_server, command_id)),
        timeout,
        f"a result for {command_id}\n{agent.log()}",
    )
    return result_for(fake_server, command_id)[0]


def assert_refused(result: agent_pb2.Result, code: str, *phrases: str) -> None:
    assert result.WhichOneof("outcome") == "failure", result
    assert result.failure.kind == agent_pb2.FAILURE_KIND_REFUSED, result
    assert result.failure.refusal == code, result
    for phrase in phrases:
        assert phrase in result.failure.reason, result.failure.reason


def empty_outbox(state: Path) -> bool:
    return not list((state / "outbox").glob("*.result"))


async def test_the_rogue_servers_orders_never_run_and_each_refusal_says_why(
    fake_server: FakeServer,
    keyed_state: tuple[Path, OrderMaker],
    start_agent: StartAgent,
    tmp_path: Path,
) -> None:
    state, maker = keyed_state
    agent = await online(fake_server, start_agent, state)

    def touching(name: str, **options: str) -> tuple[remediation_pb2.CatalogEntry, Path]:
        sentinel = tmp_path / f"sentinel-{name}"
        return own_script(maker.catalog_key, f"touch-{name}", f'touch "{sentinel}"', **options), (
            sentinel
        )

    cases: list[tuple[str, remediation_pb2.SignedRunScript, Path, str, str]] = []

    entry, sentinel = touching("unsigned")
    order = maker.order(entry)
    unsigned = remediation_pb2.SignedRunScript(order=order.SerializeToString())
    cases.append((order.command_id, unsigned, sentinel, "unsigned", "not signed"))

    entry, sentinel = touching("other-key")
    order = maker.order(entry)
    other_key = maker.sign(order, ed25519.Ed25519PrivateKey.generate())
    cases.append((order.command_id, other_key, sentinel, "bad-signature", "another dispatch key"))

    entry, sentinel = touching("forged")
    order = maker.order(entry)
    forged = maker.sign(order, ed25519.Ed25519PrivateKey.generate())
    forged.dispatch_key_id = maker.sign(order).dispatch_key_id  # claims the pinned key
    cases.append((order.command_id, forged, sentinel, "bad-signature", "does not verify"))

    entry, sentinel = touching("tampered", parameters=NAME_PARAMETER)
    order = maker.order(entry, parameters={"name": "bob"})
    tampered = maker.sign(order)
    changed = remediation_pb2.RunScriptOrder.FromString(tampered.order)
    changed.parameters["name"] = "bob; touch /tmp/owned"
    tampered.order = changed.SerializeToString()  # after signing, as a taken-over relay would
    cases.append((order.command_id, tampered, sentinel, "bad-signature", "does not verify"))

    entry, sentinel = touching("bad-parameter", parameters=NAME_PARAMETER)
    # Signed by the real dispatch key (a taken-over server): the manifest still refuses it.
    order = maker.order(entry, parameters={"name": "$(touch /tmp/owned)"})
    cases.append((order.command_id, maker.sign(order), sentinel, "parameters", "name"))

    entry, sentinel = touching("other-agent")
    order = maker.order(entry, agent_id="7ry2otheragentotheragentot")
    cases.append((order.command_id, maker.sign(order), sentinel, "other-agent", "not this one"))

    entry, sentinel = touching("expired")
    order = maker.order(entry, expires_in=datetime.timedelta(seconds=-5))
    cases.append((order.command_id, maker.sign(order), sentinel, "expired", "expired at"))

    sentinel = tmp_path / "sentinel-own-catalog"
    rogue_entry = own_script(
        ed25519.Ed25519PrivateKey.generate(), "touch-own-catalog", f'touch "{sentinel}"'
    )
    order = maker.order(rogue_entry)  # the server's own "catalog": not the pinned key's
    cases.append((order.command_id, maker.sign(order), sentinel, "catalog-signature", ""))

    for _, signed, _, _, _ in cases:
        fake_server.agents.to_agent.put_nowait(run_message(signed))
    for command_id, _, sentinel, code, phrase in cases:
        result = await one_result(fake_server, agent, command_id)
        assert_refused(result, code, phrase)
        assert not sentinel.exists(), f"{code}: the script ran"

    # Replayed: the same valid order twice. It runs once; the second copy is refused.
    ran = tmp_path / "replay-runs"
    entry = own_script(maker.catalog_key, "count-runs", f'echo run >> "{ran}"')
    valid = maker.sign(maker.order(entry))
    command_id = remediation_pb2.RunScriptOrder.FromString(valid.order).command_id
    fake_server.agents.to_agent.put_nowait(run_message(valid))
    first = await one_result(fake_server, agent, command_id)
    assert first.WhichOneof("outcome") == "script_run", first
    await eventually(lambda: empty_outbox(state), 10.0, "the ack to empty the outbox")
    fake_server.agents.to_agent.put_nowait(run_message(valid))
    await eventually(lambda: len(result_for(fake_server, command_id)) == 2, 20.0, agent.log())
    assert_refused(result_for(fake_server, command_id)[1], "replayed", "already ran here")
    assert ran.read_text() == "run\n"
    assert not (Path("/tmp/owned")).exists()
    assert agent.process.returncode is None
    assert "Traceback" not in agent.log()


async def test_a_good_order_runs_once_streaming_its_output_and_the_ack_empties_the_outbox(
    fake_server: FakeServer,
    keyed_state: tuple[Path, OrderMaker],
    start_agent: StartAgent,
    tmp_path: Path,
) -> None:
    state, maker = keyed_state
    agent = await online(fake_server, start_agent, state)
    gate = tmp_path / "gate"
    body = (
        'echo "hello $SONDE_PARAM_NAME (dry run $SONDE_DRY_RUN)"\n'
        f'for _ in $(seq 600); do [ -e "{gate}" ] && break; sleep 0.05; done\n'
        'echo "bye" >&2\nexit 2'
    )
    entry = own_script(maker.catalog_key, "greet", body, parameters=NAME_PARAMETER)
    order = maker.order(entry, parameters={"name": "bob"})
    fake_server.agents.to_agent.put_nowait(run_message(maker.sign(order)))

    agents = fake_server.agents
    await eventually(
        lambda: any(b"hello bob" in o.data for o in agents.script_outputs), 20.0, agent.log()
    )
    # The first line arrived while the script still waits for the gate: no result yet.
    assert result_for(fake_server, order.command_id) == []
    assert agents.results_before_output[0] == 0
    gate.touch()
    result = await one_result(fake_server, agent, order.command_id)
    assert result.WhichOneof("outcome") == "script_run", result
    run = result.script_run
    assert (run.script_id, run.script_version, run.dry_run) == ("greet", "1.0.0", False)
    assert run.exit_code == 2
    assert not run.timed_out
    assert not run.cancelled
    assert run.stdout == b"hello bob (dry run 0)\n"
    assert run.stderr == b"bye\n"
    assert (run.stdout_bytes, run.stderr_bytes) == (len(run.stdout), len(run.stderr))
    streamed = {
        stream: b"".join(o.data for o in agents.script_outputs if o.stream == stream)
        for stream in (agent_pb2.SCRIPT_STREAM_STDOUT, agent_pb2.SCRIPT_STREAM_STDERR)
    }
    assert streamed[agent_pb2.SCRIPT_STREAM_STDOUT] == run.stdout
    assert streamed[agent_pb2.SCRIPT_STREAM_STDERR] == run.stderr
    assert all(o.command_id == order.command_id for o in agents.script_outputs)
    await eventually(lambda: empty_outbox(state), 10.0, "the ack to empty the outbox")
    assert len(result_for(fake_server, order.command_id)) == 1
    assert not list(state.glob("sonde-run-*")), "the run's private folder is left"


async def test_a_real_catalog_script_runs_its_dry_run(
    fake_server: FakeServer, keyed_state: tuple[Path, OrderMaker], start_agent: StartAgent
) -> None:
    state, maker = keyed_state
    agent = await online(fake_server, start_agent, state)
    order = maker.order(real_script(maker.catalog_key, "flush-dns-cache-linux"), dry_run=True)
    fake_server.agents.to_agent.put_nowait(run_message(maker.sign(order)))
    result = await one_result(fake_server, agent, order.command_id, timeout=60)
    assert result.WhichOneof("outcome") == "script_run", result
    run = result.script_run
    assert run.script_id == "flush-dns-cache-linux"
    assert run.dry_run
    # 0: says what it would flush; 3: this machine has no DNS cache to flush.
    assert run.exit_code in (0, 3), run
    assert run.stdout or run.stderr


async def test_a_cancel_stops_a_running_script(
    fake_server: FakeServer,
    keyed_state: tuple[Path, OrderMaker],
    start_agent: StartAgent,
    tmp_path: Path,
) -> None:
    state, maker = keyed_state
    agent = await online(fake_server, start_agent, state)
    started = tmp_path / "started"
    entry = own_script(maker.catalog_key, "wait-long", f'touch "{started}"\nsleep 120')
    order = maker.order(entry)
    fake_server.agents.to_agent.put_nowait(run_message(maker.sign(order)))
    await eventually(started.exists, 20.0, f"the script to start\n{agent.log()}")
    cancel = agent_pb2.ServerMessage()
    cancel.cancel.command_id = order.command_id
    fake_server.agents.to_agent.put_nowait(cancel)
    result = await one_result(fake_server, agent, order.command_id)
    assert result.WhichOneof("outcome") == "script_run", result
    assert result.script_run.cancelled
    assert result.script_run.exit_code == -1


async def test_scripts_run_one_at_a_time_and_a_waiting_one_cancelled_never_starts(
    fake_server: FakeServer,
    keyed_state: tuple[Path, OrderMaker],
    start_agent: StartAgent,
    tmp_path: Path,
) -> None:
    state, maker = keyed_state
    agent = await online(fake_server, start_agent, state)
    started, stop, second = tmp_path / "started", tmp_path / "stop", tmp_path / "second"
    body = (
        f'touch "{started}"\nfor _ in $(seq 1200); do [ -e "{stop}" ] && exit 0; sleep 0.05; done'
    )
    first = maker.order(own_script(maker.catalog_key, "first-fix", body))
    waiting = maker.order(own_script(maker.catalog_key, "second-fix", f'touch "{second}"'))
    third = maker.order(own_script(maker.catalog_key, "third-fix", f'touch "{second}-3"'))
    for order in (first, waiting, third):
        fake_server.agents.to_agent.put_nowait(run_message(maker.sign(order)))
    await eventually(started.exists, 20.0, f"the first script to start\n{agent.log()}")
    cancel = agent_pb2.ServerMessage()
    cancel.cancel.command_id = waiting.command_id
    fake_server.agents.to_agent.put_nowait(cancel)
    await eventually(
        lambda: f"cancelling the run of command {waiting.command_id}" in agent.log(),
        20.0,
        f"the cancel to arrive\n{agent.log()}",
    )
    stop.touch()
    ended = await one_result(fake_server, agent, first.command_id)
    assert ended.script_run.exit_code == 0, ended
    cancelled = await one_result(fake_server, agent, waiting.command_id)
    assert cancelled.WhichOneof("outcome") == "failure", cancelled
    assert cancelled.failure.kind == agent_pb2.FAILURE_KIND_CANCELLED
    assert cancelled.failure.reason == "cancelled by the server before it started"
    last = await one_result(fake_server, agent, third.command_id)
    assert last.script_run.exit_code == 0, last
    assert not second.exists()
    assert Path(f"{second}-3").exists()


async def test_kill_9_mid_run_is_reported_interrupted_and_never_run_again(
    fake_server: FakeServer,
    keyed_state: tuple[Path, OrderMaker],
    start_agent: StartAgent,
    tmp_path: Path,
) -> None:
    state, maker = keyed_state
    agent = await online(fake_server, start_agent, state)
    starts, stop = tmp_path / "starts", tmp_path / "stop"
    body = (
        f'echo "$$" >> "{starts}"\n'
        f'for _ in $(seq 1200); do [ -e "{stop}" ] && exit 0; sleep 0.05; done'
    )
    entry = own_script(maker.catalog_key, "long-fix", body)
    signed = maker.sign(maker.order(entry))
    command_id = remediation_pb2.RunScriptOrder.FromString(signed.order).command_id
    fake_server.agents.to_agent.put_nowait(run_message(signed))
    await eventually(starts.exists, 20.0, f"the script to start\n{agent.log()}")
    try:
        await agent.stop(signal.SIGKILL)
        assert result_for(fake_server, command_id) == []
        fake_server.agents.to_agent.put_nowait(None)  # the old session's stream ends

        again = await start_agent("run", "--state", str(state))
        result = await one_result(fake_server, again, command_id)
        assert result.WhichOneof("outcome") == "failure", result
        assert result.failure.kind == agent_pb2.FAILURE_KIND_FAILED
        assert result.failure.reason == (
            "interrupted: the agent stopped during the run; not run again"
        )
        await eventually(lambda: empty_outbox(state), 10.0, "the ack to empty the outbox")
        # The server sends it again (it never heard): refused, not run.
        fake_server.agents.to_agent.put_nowait(run_message(signed))
        await eventually(lambda: len(result_for(fake_server, command_id)) == 2, 20.0, again.log())
        assert_refused(result_for(fake_server, command_id)[1], "replayed")
        assert len(starts.read_text().split()) == 1
        assert not list(state.glob("sonde-run-*")), "the dead run's folder is left"
        assert "Traceback" not in again.log()
    finally:
        stop.touch()  # the first run's script, should it outlive its run process


async def test_the_workstation_policy_refuses_what_it_denies_and_a_damaged_one_everything(
    fake_server: FakeServer,
    keyed_state: tuple[Path, OrderMaker],
    start_agent: StartAgent,
    tmp_path: Path,
) -> None:
    state, maker = keyed_state
    policy = state / "policy.toml"
    policy.write_text('deny = ["touch-denied"]\n')
    os.chmod(policy, stat.S_IRUSR | stat.S_IWUSR)
    agent = await online(fake_server, start_agent, state)

    denied_sentinel = tmp_path / "denied"
    entry = own_script(maker.catalog_key, "touch-denied", f'touch "{denied_sentinel}"')
    order = maker.order(entry)
    fake_server.agents.to_agent.put_nowait(run_message(maker.sign(order)))
    result = await one_result(fake_server, agent, order.command_id)
    assert_refused(result, "policy", "this workstation's policy denies touch-denied")

    medium_sentinel = tmp_path / "medium"
    policy.write_text('max_risk = "low"\n')  # read at each order: no restart needed
    entry = own_script(
        maker.catalog_key, "touch-medium", f'touch "{medium_sentinel}"', risk="medium"
    )
    order = maker.order(entry)
    fake_server.agents.to_agent.put_nowait(run_message(maker.sign(order)))
    result = await one_result(fake_server, agent, order.command_id)
    assert_refused(result, "policy", "medium risk", "low risk at most")

    allowed_sentinel = tmp_path / "allowed"
    policy.write_text("max_risk = \n")
    entry = own_script(maker.catalog_key, "touch-allowed", f'touch "{allowed_sentinel}"')
    order = maker.order(entry)
    fake_server.agents.to_agent.put_nowait(run_message(maker.sign(order)))
    result = await one_result(fake_server, agent, order.command_id)
    assert_refused(result, "policy", str(policy), "does not parse", "every run is refused")

    for sentinel in (denied_sentinel, medium_sentinel, allowed_sentinel):
        assert not sentinel.exists()


async def test_without_pinned_keys_run_orders_are_refused_and_diagnostics_still_run(
    fake_server: FakeServer, enrolled_state: Path, start_agent: StartAgent, tmp_path: Path
) -> None:
    """Enrolled with a server that sent no keys: nothing to check an order with."""
    assert not (enrolled_state / "dispatch.pub").exists()
    maker = OrderMaker(agent_id=agent_id_of(enrolled_state))
    agent = await online(fake_server, start_agent, enrolled_state)
    sentinel = tmp_path / "sentinel"
    order = maker.order(own_script(maker.catalog_key, "touch-it", f'touch "{sentinel}"'))
    fake_server.agents.to_agent.put_nowait(run_message(maker.sign(order)))
    result = await one_result(fake_server, agent, order.command_id)
    assert_refused(
        result, "no-pinned-key", "no dispatch and catalog key", "sonde-agent enroll --force"
    )
    assert not sentinel.exists()

    collect = agent_pb2.ServerMessage()
    collect.collect.command_id = "diag-1"
    collect.collect.collectors.append("system")
    collect.collect.expires_at.FromDatetime(
        datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=1)
    )
    fake_server.agents.to_agent.put_nowait(collect)
    snapshot = await one_result(fake_server, agent, "diag-1")
    assert snapshot.WhichOneof("outcome") == "snapshot", snapshot


async def test_enroll_pins_the_dispatch_key_owner_only_and_refuses_another_without_force(
    fake_server: FakeServer,
    keyed_state: tuple[Path, OrderMaker],
    agent_command: list[str],
) -> None:
    state, _ = keyed_state
    pinned = state / "dispatch.pub"
    assert stat.S_IMODE(pinned.stat().st_mode) == 0o600
    before = pinned.read_bytes()
    fake_server.enrollment.uses_left = 2
    fake_server.enrollment.dispatch_public_key = raw(ed25519.Ed25519PrivateKey.generate())
    token = fake_server.enrollment_string()
    code, _, err = await run_agent_command(agent_command, "enroll", token, "--state", str(state))
    assert code != 0
    assert pinned.read_bytes() == before
    code, _, err = await run_agent_command(
        agent_command, "enroll", token, "--state", str(state), "--force"
    )
    assert code == 0, err
    assert pinned.read_bytes() != before
