"""What a hostile or unsuitable host says in preflight becomes the check that failed and why;
bad hosts files, options and wheelhouses are refused naming what is wrong. Pure functions over
recorded preflight output: the live path runs against real sshd hosts (tests/integration/deploy).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sonde.server.console.deploy import hosts_from_file
from sonde.server.console.errors import CliError
from sonde.server.domain.deployment_store import DeployOptions, HostPlan
from sonde.server.domain.deployments import check_options, check_plans
from sonde.server.errors import InvalidArgument
from sonde.server.remote.linux_preflight import PreflightFailed, _values, check_linux_host
from sonde.server.remote.shell import RemoteTarget, Transport
from sonde.server.remote.wheelhouse import Wheelhouse, WheelhouseError, load_wheelhouse
from sonde.v1 import deploy_pb2

GOOD = {
    "uid": "0",
    "sudo": "no",
    "os": "Linux",
    "arch": "x86_64",
    "python": "3.11",
    "venv": "yes",
    "free_kib": str(10 * 1024 * 1024),
    "systemctl": "yes",
    "installed": "",
    "enrolled": "no",
}


@pytest.fixture
def wheelhouse(tmp_path: Path) -> Wheelhouse:
    for name in (
        "sonde_helpdesk-0.2.0-py3-none-any.whl",
        "pip-26.3-py3-none-any.whl",
        "grpcio-1.85.3-cp311-cp311-manylinux2014_x86_64.manylinux_2_17_x86_64.whl",
        "cryptography-50.0.2-cp311-abi3-manylinux_2_34_x86_64.whl",
    ):
        (tmp_path / name).write_bytes(name.encode())
    return load_wheelhouse(tmp_path)


def _check(wheelhouse: Wheelhouse, **changes: str) -> PreflightFailed | None:
    try:
        check_linux_host(GOOD | changes, wheelhouse, label="ssh://root@pc:22", min_free_bytes=2**27)
    except PreflightFailed as failed:
        return failed
    return None


def test_the_wheelhouse_says_its_version_pythons_and_architectures(wheelhouse: Wheelhouse) -> None:
    assert wheelhouse.agent_version == "0.2.0"
    assert wheelhouse.pip_wheel == "pip-26.3-py3-none-any.whl"
    assert wheelhouse.python_tags == {"cp311"}
    assert wheelhouse.architectures == {"x86_64"}
    assert _check(wheelhouse) is None


@pytest.mark.parametrize(
    ("changes", "check", "said"),
    [
        ({"uid": "1000", "sudo": "no"}, "admin", "sudo -n"),
        ({"uid": ""}, "login", "no user id"),
        ({"os": "Darwin"}, "os", "runs Darwin, not Linux"),
        ({"arch": "aarch64"}, "architecture", "wheels for x86_64"),
        ({"python": ""}, "python", "no python3"),
        ({"python": "3.8"}, "python", "python3 3.8; the agent needs 3.11"),
        ({"python": "3.12"}, "python", "binary wheels are for cp311"),
        ({"python": "3.11; rm -rf /"}, "python", "no python3"),
        ({"venv": "no"}, "python", "python3-venv"),
        ({"free_kib": "1024"}, "free space", "has 1 MiB free"),
        ({"free_kib": "lots"}, "free space", "an unknown amount"),
        ({"systemctl": "no"}, "systemd", "no systemctl"),
    ],
)
def test_a_failed_check_is_named_with_why(
    wheelhouse: Wheelhouse, changes: dict[str, str], check: str, said: str
) -> None:
    failed = _check(wheelhouse, **changes)
    assert failed is not None
    assert failed.check == check
    assert said in failed.message
    assert "ssh://root@pc:22" in failed.message  # the target as named, not as it says it is


def test_a_login_with_sudo_passes_and_runs_commands_through_it(wheelhouse: Wheelhouse) -> None:
    host = check_linux_host(
        GOOD | {"uid": "1000", "sudo": "yes", "installed": "0.1.0", "enrolled": "yes"},
        wheelhouse,
        label="x",
        min_free_bytes=0,
    )
    assert host.as_admin == ["sudo", "-n", "--"]
    assert (host.installed_version, host.enrolled) == ("0.1.0", True)


def test_preflight_output_keeps_the_first_value_and_bounds_each() -> None:
    found = _values("uid=0\nuid=1000\nos=" + "L" * 500 + "\nnot a line\n=x\n")
    assert found["uid"] == "0"  # a later line cannot take a value back
    assert len(found["os"]) == 64


def test_a_wheelhouse_without_the_agent_or_pip_is_refused(tmp_path: Path) -> None:
    with pytest.raises(WheelhouseError, match="exactly one sonde_helpdesk wheel"):
        load_wheelhouse(tmp_path)
    (tmp_path / "sonde_helpdesk-0.1.0-py3-none-any.whl").write_bytes(b"x")
    with pytest.raises(WheelhouseError, match="pip download --no-deps"):
        load_wheelhouse(tmp_path)
    (tmp_path / "not-a-wheel.whl").write_bytes(b"x")
    with pytest.raises(WheelhouseError, match="not a wheel's file name"):
        load_wheelhouse(tmp_path)
    with pytest.raises(WheelhouseError, match="is not a folder"):
        load_wheelhouse(tmp_path / "missing")


def test_paths_and_limits_are_checked() -> None:
    check_options(DeployOptions())
    for bad, said in [
        ({"prefix": "opt/sonde"}, "absolute path"),
        ({"state_dir": "/var/../etc"}, "must not contain '..'"),
        ({"unit_dir": "/etc/systemd\nsystem"}, "absolute path"),
        ({"parallel": 0}, "parallel must be from 1 to 64"),
        ({"host_timeout_s": 1.0}, "per host"),
        ({"online_timeout_s": 0.0}, "come online"),
    ]:
        with pytest.raises(InvalidArgument, match=said):
            check_options(DeployOptions(**bad))  # type: ignore[arg-type]


def test_a_host_named_twice_or_no_host_is_refused() -> None:
    plan = HostPlan(RemoteTarget(Transport.SSH, "root", "pc-1", 22))
    with pytest.raises(InvalidArgument, match="named twice"):
        check_plans([plan, HostPlan(RemoteTarget(Transport.SSH, "admin", "pc-1", 22))])
    with pytest.raises(InvalidArgument, match="at least one host"):
        check_plans([])


def test_a_hosts_file_names_the_line_it_refuses(tmp_path: Path) -> None:
    good = tmp_path / "good.txt"
    good.write_text("# lab\n\nssh root@pc-1  # first\nwinrm admin@pc-2:5985 credential=lab-winrm\n")
    hosts = hosts_from_file(good, "fleet")
    assert [(h.transport, h.address, h.credential) for h in hosts] == [
        (deploy_pb2.DEPLOY_TRANSPORT_SSH, "root@pc-1", "fleet"),
        (deploy_pb2.DEPLOY_TRANSPORT_WINRM, "admin@pc-2:5985", "lab-winrm"),
    ]
    for text, said in [
        ("ssh root@pc-1\ntelnet root@pc-2\n", "line 2: expected `ssh USER@HOST"),
        ("ssh root@pc-1 password=hunter2\n", "line 1: 'password=hunter2' is not credential"),
        ("# nothing\n", "names no host"),
    ]:
        bad = tmp_path / "bad.txt"
        bad.write_text(text)
        with pytest.raises(CliError, match=said):
            hosts_from_file(bad, "")
