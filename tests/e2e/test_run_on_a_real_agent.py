"""A run from the CLI to a real agent and back, with the real programs: the server signs the
order with pki/dispatch.key, the agent (which pinned dispatch.pub and catalog.pub at
enrollment) verifies and runs it, and `sonde run --wait` prints how it ended; the agent's own
policy.toml refuses the next one, and the CLI shows that refusal with its reason."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from tests.support.catalog_bundles import signed_bundle, source
from tests.support.deployment import Deployment, run


def cli(deployment: Deployment, *args: str) -> subprocess.CompletedProcess[str]:
    return run("sonde", *args, env=deployment.cli_env(), timeout=120)


def as_json(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(done.stdout)
    return value


def test_a_run_reaches_a_real_agent_and_its_policy_can_refuse_the_next(
    sonde: Deployment, tmp_path: Path
) -> None:
    deployment = sonde
    key = serialization.load_pem_private_key(
        (deployment.data / "pki" / "catalog.key").read_bytes(), password=None
    )
    assert isinstance(key, ed25519.Ed25519PrivateKey)
    bundle = tmp_path / "catalog.bundle"
    bundle.write_bytes(signed_bundle(key, source("say-hello"), source("say-bye")))
    assert cli(deployment, "catalog", "publish", str(bundle)).returncode == 0
    state = tmp_path / "agent" / "state"
    agent_id = deployment.enroll_agent(state)
    assert (state / "dispatch.pub").read_bytes() == (
        deployment.data / "pki" / "dispatch.pub"
    ).read_bytes()
    deployment.start_agent(state)

    done = cli(deployment, "run", agent_id, "say-hello", "--wait", "--json")
    assert done.returncode == 0, f"{done.stdout}{done.stderr}"
    ended = as_json(done)["run"]
    assert ended["command"]["state"] == "COMMAND_STATE_SUCCEEDED", ended
    # --wait --json carries the output whole, even when it followed it live.
    assert base64.b64decode(ended["stdout"]) == b"say-hello ran\n", ended
    shown = cli(deployment, "runs", "show", ended["command"]["id"], "--json")
    assert shown.returncode == 0, shown.stderr
    stored = as_json(shown)["run"]
    assert base64.b64decode(stored["stdout"]) == b"say-hello ran\n"

    policy = state / "policy.toml"
    policy.write_text('deny = ["say-bye"]\n')
    os.chmod(policy, stat.S_IRUSR | stat.S_IWUSR)
    done = cli(deployment, "run", agent_id, "say-bye", "--wait", "--json")
    assert done.returncode == 1, f"{done.stdout}{done.stderr}"
    ended = as_json(done)["run"]
    assert ended["command"]["state"] == "COMMAND_STATE_REFUSED", ended
    assert "this workstation's policy denies say-bye" in json.dumps(ended)
