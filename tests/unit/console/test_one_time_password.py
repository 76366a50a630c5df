"""`sonde diag --ask-password`: the password comes from SONDE_REMOTE_PASSWORD or a prompt,
never from the command line, and a secret given on the line is refused without being echoed."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from sonde.server.console.cli import main
from sonde.server.console.context import Context
from sonde.server.console.diag import PASSWORD_VARIABLE, one_time_password
from sonde.server.console.errors import CliError
from sonde.server.console.output import Output

SECRET = "hunter2-on-the-line"


@pytest.fixture(autouse=True)
def no_login(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SONDE_SERVER", "SONDE_TOKEN", "SONDE_CA", PASSWORD_VARIABLE):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def test_the_variable_gives_the_password_as_set() -> None:
    ctx = Context(Output(json_mode=True), env={PASSWORD_VARIABLE: " spaces kept "})
    assert one_time_password(ctx, "helpdesk@10.1.2.3") == " spaces kept "


def test_without_the_variable_or_a_terminal_it_says_what_to_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    ctx = Context(Output(json_mode=True), env={})
    with pytest.raises(
        CliError, match=f"no terminal to ask for the password on: set {PASSWORD_VARIABLE}"
    ):
        one_time_password(ctx, "helpdesk@10.1.2.3")


@pytest.mark.parametrize(
    "given", [["--password", SECRET], [f"--password={SECRET}"], ["--secret", SECRET], ["--key"]]
)
def test_a_secret_on_the_command_line_is_refused_without_its_value(
    given: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["diag", "pc-042", "--ssh", "helpdesk@10.1.2.3", *given])
    assert code == 2
    err = capsys.readouterr().err
    assert "a secret is never given on the command line" in err
    assert "--ask-password" in err
    assert SECRET not in err


@pytest.mark.parametrize(
    ("extra", "refusal"),
    [
        (["--ask-password"], "--ask-password and --shell-only go with --ssh"),
        (["--ssh", "u@h", "--ask-password", "--credential", "c"], "not both"),
    ],
)
def test_ask_password_goes_with_a_remote_login_and_without_a_stored_credential(
    extra: list[str], refusal: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["diag", "pc-042", *extra])
    assert code != 0
    assert refusal in capsys.readouterr().err
