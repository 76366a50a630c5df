"""`sonde run`, `runs`, `approve` and `reject`: their arguments, refused before anything is sent."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from sonde.server.console.cli import UsageError, build_parser, main


@pytest.fixture(autouse=True)
def no_login(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SONDE_SERVER", "SONDE_TOKEN", "SONDE_CA"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def test_a_parameter_is_everything_after_the_first_equals_sign_as_typed() -> None:
    args = parse(
        "run", "PC-1", "restart-service-linux",
        "--param", "service_name=cups", "--param", "note= a=b; $(x) ",
        "--ticket", "17", "--expires", "2h", "--dry-run", "--wait",
    )  # fmt: skip
    assert args.param == [("service_name", "cups"), ("note", " a=b; $(x) ")]
    assert (args.ticket, args.expires, args.dry_run, args.wait) == (17, 7200, True, True)


@pytest.mark.parametrize("given", ["no-equals", "=value", " =value"])
def test_a_parameter_without_a_name_is_refused(given: str) -> None:
    with pytest.raises(UsageError, match="expected NAME=VALUE"):
        parse("run", "PC-1", "s", "--param", given)


def test_an_expiry_past_30_days_is_refused() -> None:
    with pytest.raises(UsageError, match="30d"):
        parse("run", "PC-1", "s", "--expires", "31d")


def test_reject_needs_a_reason() -> None:
    with pytest.raises(UsageError, match="--reason"):
        parse("reject", "3f9c2a1b")
    assert parse("reject", "3f9c2a1b", "--reason", "not now").reason == "not now"


def test_a_parameter_given_twice_is_refused_before_anything_is_sent(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["run", "PC-1", "s", "--param", "a=1", "--param", "a=2", "--json"])
    assert code == 1
    assert json.loads(capsys.readouterr().out)["error"]["message"] == "--param a is given twice"


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "PC-1", "s"],
        ["runs"],
        ["runs", "--state", "pending_approval", "--state", "rejected"],
        ["runs", "show", "3f9c2a1b", "--follow"],
        ["runs", "cancel", "3f9c2a1b"],
        ["approve", "3f9c2a1b"],
        ["reject", "3f9c2a1b", "--reason", "r"],
    ],
)
def test_every_run_command_accepts_json(argv: list[str]) -> None:
    assert parse(*argv, "--json").json is True
