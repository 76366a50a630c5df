"""Argument parsing, exit codes and the JSON shapes of `sonde`, without a server."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from sonde.server.console import arguments, diag, tickets, users
from sonde.server.console.cli import build_parser, main
from sonde.server.console.output import message_json
from sonde.v1 import console_pb2, diagnostics_pb2


@pytest.fixture(autouse=True)
def no_login(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No saved config and no SONDE_* variables, whatever the developer's machine has."""
    for name in ("SONDE_SERVER", "SONDE_TOKEN", "SONDE_CA"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path / "config" / "sonde" / "config.json"


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def test_json_is_accepted_before_or_after_the_command() -> None:
    assert parse("--json", "agents").json is True
    assert parse("agents", "--json").json is True
    assert parse("ticket", "show", "3", "--json").json is True
    assert parse("agents").json is False


def test_every_command_accepts_json() -> None:
    command_lines = [
        ["login", "h:1", "--token", "t", "--ca", "ca.crt"],
        ["logout"],
        ["whoami"],
        ["agents"],
        ["agents", "revoke", "PC-1"],
        ["agent", "show", "PC-1"],
        ["agent", "revoke", "PC-1"],
        ["diag", "PC-1"],
        ["ticket", "open", "--title", "t"],
        ["ticket", "list"],
        ["ticket", "show", "1"],
        ["ticket", "comment", "1", "hello"],
        ["ticket", "assign", "1"],
        ["ticket", "escalate", "1", "--reason", "r"],
        ["ticket", "resolve", "1", "--resolution", "r", "--outcome", "fixed", "--time-spent", "5"],
        ["ticket", "set", "1", "--category", "printing"],
        ["ticket", "take", "1"],
        ["ticket", "hand-back", "1", "--note", "n"],
        ["ticket", "time", "1", "15m"],
        ["queue", "--level", "l2"],
        ["category", "list"],
        ["ticket", "close", "1"],
        ["ticket", "reopen", "1", "--reason", "r"],
        ["user", "add", "bob", "--role", "l1"],
        ["user", "list"],
        ["token", "create"],
        ["demo", "--once"],
    ]
    for argv in command_lines:
        args = parse(*argv, "--json")
        assert args.json is True, argv
        assert callable(args.handler), argv


def test_agents_list_and_revoke_share_a_command() -> None:
    listed = parse("agents", "--online", "--all")
    assert (listed.online, listed.all, listed.agents_command) == (True, True, None)
    revoke = parse("agents", "revoke", "PC-1", "--reason", "stolen laptop")
    assert (revoke.agent, revoke.reason) == ("PC-1", "stolen laptop")
    assert revoke.handler is not listed.handler


def test_ticket_arguments_become_enum_values() -> None:
    opened = parse(
        "ticket", "open", "--title", "slow", "--channel", "web", "--priority", "P1",
        "--agent", "PC", "--snapshot", "5",
    )  # fmt: skip
    assert opened.channel == console_pb2.TICKET_CHANNEL_WEB_FORM
    assert opened.priority == console_pb2.TICKET_PRIORITY_P1
    assert opened.snapshot == 5
    listed = parse("ticket", "list", "--status", "new", "in-progress", "--status", "waiting")
    assert listed.status == [
        console_pb2.TICKET_STATUS_NEW,
        console_pb2.TICKET_STATUS_IN_PROGRESS,
        console_pb2.TICKET_STATUS_WAITING,
    ]
    assert parse("ticket", "list", "--level", "l2").level == console_pb2.TICKET_LEVEL_L2
    assert parse("ticket", "assign", "#12").id == 12
    assert parse("ticket", "assign", "12", "bob").user == "bob"
    assert parse("ticket", "comment", "3", "called", "back").text == ["called", "back"]


def test_ticket_number_and_choices_are_checked() -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="not a ticket number"):
        arguments.ticket_number("0")
    with pytest.raises(argparse.ArgumentTypeError, match="expected one of phone, email"):
        tickets.channel("fax")


def test_durations_and_uses() -> None:
    assert diag.diag_expiry("1h") == 3600
    assert diag.diag_expiry("90") == 90
    assert diag.diag_expiry("30m") == 1800
    assert diag.diag_expiry("2d") == 172800
    for bad in ("1y", "0", "-5m", "31d", "h"):
        with pytest.raises(argparse.ArgumentTypeError):
            diag.diag_expiry(bad)
    with pytest.raises(argparse.ArgumentTypeError):
        users.uses("0")
    assert users.role("ADMIN") == console_pb2.ROLE_ADMIN


def test_not_logged_in_is_exit_1_with_the_command_to_run(
    capsys: pytest.CaptureFixture[str], no_login: Path
) -> None:
    assert main(["agents"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "error (FAILED_PRECONDITION): not logged in" in captured.err
    assert "sonde login SERVER --token TOKEN --ca CA_FILE" in captured.err
    assert str(no_login) in captured.err


def test_errors_are_json_on_stdout_with_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ticket", "show", "4", "--json"]) == 1
    captured = capsys.readouterr()
    error = json.loads(captured.out)["error"]
    assert error["code"] == "FAILED_PRECONDITION"
    assert "sonde login" in error["message"]


def test_usage_errors_exit_2_and_are_json_with_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ticket", "list", "--status", "bogus"]) == 2
    assert "unknown status 'bogus'" in capsys.readouterr().err
    assert main(["ticket", "show", "x", "--json"]) == 2
    error = json.loads(capsys.readouterr().out)["error"]
    assert error == {"code": "INVALID_ARGUMENT", "message": error["message"]}
    assert "'x' is not a ticket number" in error["message"]
    assert main(["ticket", "list", "--mine", "--assignee", "bob"]) == 2
    assert "not allowed with argument" in capsys.readouterr().err
    assert main([]) == 2


def test_logout_without_config(capsys: pytest.CaptureFixture[str], no_login: Path) -> None:
    assert main(["logout", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "config": str(no_login),
        "removed": False,
        "token_revoked": False,
    }


def test_login_refuses_a_ca_that_is_not_pem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_login: Path
) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_text("not a certificate")
    assert main(["login", "127.0.0.1:8443", "--token", "t", "--ca", str(ca)]) == 1
    assert "holds no PEM certificate" in capsys.readouterr().err
    assert not no_login.exists()


def test_message_json_uses_proto_names_every_field_and_numbers() -> None:
    ticket = console_pb2.Ticket(id=17, title="PC is slow", status=console_pb2.TICKET_STATUS_NEW)
    data = message_json(ticket)
    assert data["id"] == 17
    assert data["status"] == "TICKET_STATUS_NEW"
    assert data["agent_id"] == ""
    assert "response_due_at" not in data  # unset messages are left out, not null
    ticket.created_at.FromSeconds(1_700_000_000)
    assert message_json(ticket)["created_at"] == "2023-11-14T22:13:20Z"
    finding = diagnostics_pb2.Finding(check="disk.space", severity=diagnostics_pb2.SEVERITY_OK)
    assert message_json(finding) == {
        "check": "disk.space",
        "severity": "SEVERITY_OK",
        "summary": "",
        "evidence": [],
        "fix_script_id": "",
    }
    listed = message_json(console_pb2.ListAgentsResponse())
    assert listed == {"agents": []}
