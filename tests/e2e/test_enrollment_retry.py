"""An enrollment whose reply is lost leaves nothing behind: a real sonde-agent enroll reaches a
real server through a proxy that cuts the connection before the reply arrives; the same
command again enrolls the same machine, without a second use of its one-use token, and the
fleet shows one machine, which then connects with the certificate the retry brought."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization

from sonde.agent.paths import PENDING_KEY_FILE
from sonde.enrollment_bundle import decode_bundle, encode_bundle
from sonde.identity import agent_id_from_public_key
from tests.support.deployment import Deployment, run
from tests.support.reply_dropper import reply_dropper


def _sonde_json(deployment: Deployment, *args: str) -> dict[str, Any]:
    done = run("sonde", *args, "--json", env=deployment.cli_env(), timeout=120)
    assert done.returncode == 0, f"sonde {' '.join(args)}: {done.stdout}{done.stderr}"
    value: dict[str, Any] = json.loads(done.stdout)
    return value


def _enroll(enrollment: str, state: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return run("sonde-agent", "enroll", enrollment, "--state", str(state), "--json", *extra)


def _pending_agent_id(state: Path) -> str:
    record = json.loads((state / PENDING_KEY_FILE).read_text())
    key = serialization.load_pem_private_key(record["private_key_pem"].encode(), password=None)
    return agent_id_from_public_key(key.public_key())


def test_a_lost_enrollment_reply_retried_enrolls_one_machine_with_one_use(
    sonde: Deployment, tmp_path: Path
) -> None:
    created = _sonde_json(sonde, "token", "create", "--uses", "1")
    bundle = decode_bundle(created["enrollment"])
    state = tmp_path / "agent"
    with reply_dropper(bundle.console_address) as dropper:
        bundle.console_address = dropper.address
        enrollment = encode_bundle(bundle)  # one string, used for both attempts

        lost = _enroll(enrollment, state)
        assert lost.returncode == 1, lost.stdout + lost.stderr
        assert dropper.replies_dropped == 1
        assert "Traceback" not in lost.stderr
        assert "run the same command again to finish it as the same machine" in lost.stderr
        agent_id = _pending_agent_id(state)
        # The server did enroll it, and spent the token's one use.
        assert sonde.agent_record(agent_id) is not None
        assert not (state / "agent.json").exists()

        retried = _enroll(enrollment, state)
        assert retried.returncode == 0, retried.stdout + retried.stderr
        assert dropper.replies_dropped == 1  # the retry's reply got through

    assert json.loads(retried.stdout)["agent_id"] == agent_id
    assert not (state / PENDING_KEY_FILE).exists()
    listed = _sonde_json(sonde, "agents")["agents"]
    assert [agent["id"] for agent in listed] == [agent_id]
    tokens = _sonde_json(sonde, "tokens", "--all")["tokens"]
    assert [(t["id"], t["uses_left"]) for t in tokens] == [(created["token_id"], 0)]
    audited = _sonde_json(sonde, "audit", "--action", "agent.enroll")["entries"]
    assert [
        (e["result"], e["agent_id"], json.loads(e["detail"]).get("retry")) for e in audited
    ] == [
        ("ok", agent_id, True),  # newest first
        ("ok", agent_id, None),
    ]

    # The used-up token enrolls no other key: the retry made no use.
    other = _enroll(created["enrollment"], tmp_path / "other")
    assert other.returncode == 1
    assert f"enrollment token {created['token_id']} has no uses left" in other.stderr

    # The certificate the retry brought is the one the machine connects with.
    sonde.start_agent(state)
    sonde.wait_online(agent_id, timeout=20)
