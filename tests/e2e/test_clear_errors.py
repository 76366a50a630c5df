"""Bad input through the real programs: one line saying what was refused and why, never a
traceback, a hang, a reconnect loop or gRPC core's log lines; the documented exit code."""

from __future__ import annotations

import json
import secrets
import socket
import subprocess
from pathlib import Path

import pytest

from sonde.v1 import console_pb2
from tests.e2e.conftest import bring_online
from tests.support.deployment import Deployment, program, run

HUGE = "99999999999999999999999"
GRPC_CORE_LINE = ("add_port.cc", "ssl_transport_security", "Check failure", "E1", "F1")


def refused(done: subprocess.CompletedProcess[str], code: int, *words: str) -> str:
    """The refusal's text, after checking its exit code, its words and that it is clean."""
    said = done.stdout + done.stderr
    assert done.returncode == code, said
    assert "Traceback" not in said, said
    for marker in GRPC_CORE_LINE:
        assert marker not in said, said
    for word in words:
        assert word in said, said
    return said


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# -- sonde: numbers refused at parse time, naming the argument ------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ["ticket", "show", HUGE],
        ["diag", "PC-042", "--ticket", HUGE],
        ["ticket", "open", "--title", "printer jam", "--snapshot", HUGE],
        ["commands", "--ticket", HUGE],
        ["audit", "--before", HUGE],
    ],
)
def test_an_id_past_64_bits_is_refused_naming_the_argument(
    shared_sonde: Deployment, command: list[str]
) -> None:
    done = run("sonde", *command, env=shared_sonde.cli_env())
    refused(done, 2, "too large", "9223372036854775807", HUGE)


@pytest.mark.parametrize(
    "command",
    [
        ["ticket", "list", "--limit", HUGE],
        ["ticket", "list", "--limit", "0"],
        ["ticket", "list", "--limit", "-1"],
        ["commands", "--limit", "0"],
        ["commands", "--limit", "-5"],
    ],
)
def test_a_limit_out_of_range_is_refused(shared_sonde: Deployment, command: list[str]) -> None:
    done = run("sonde", *command, env=shared_sonde.cli_env())
    refused(done, 2, "--limit", "from 1 to 1000")


def test_a_limit_out_of_range_is_one_json_error_with_json(shared_sonde: Deployment) -> None:
    done = run("sonde", "--json", "ticket", "list", "--limit", HUGE, env=shared_sonde.cli_env())
    refused(done, 2)
    assert "--limit" in json.loads(done.stdout)["error"]["message"]


# -- sonde ticket list past its page ---------------------------------------------------------


def test_ticket_list_says_how_many_more_and_how_to_page(shared_sonde: Deployment) -> None:
    with shared_sonde.console() as console:
        for n in range(3):
            console.OpenTicket(
                console_pb2.OpenTicketRequest(
                    title=f"paging {n}", priority=console_pb2.TICKET_PRIORITY_P4
                ),
                timeout=10,
            )
    env = shared_sonde.cli_env()
    everything = json.loads(
        run("sonde", "--json", "ticket", "list", "--limit", "1000", env=env).stdout
    )
    total = len(everything["tickets"])
    assert total >= 3
    assert everything["more"] == 0

    first = run("sonde", "ticket", "list", "--level", "l1", "--limit", "2", env=env)
    hint = f"{total - 2} more: sonde ticket list --level l1 --limit 2 --offset 2"
    assert first.returncode == 0, first.stderr
    assert hint in first.stdout, first.stdout

    page = json.loads(
        run("sonde", "--json", "ticket", "list", "--limit", "2", "--offset", "2", env=env).stdout
    )
    assert [t["id"] for t in page["tickets"]] == [t["id"] for t in everything["tickets"][2:4]]
    assert page["more"] == max(total - 4, 0)
    last = run("sonde", "ticket", "list", "--limit", "2", "--offset", str(total - 1), env=env)
    assert last.returncode == 0, last.stderr
    assert "more:" not in last.stdout


# -- output piped into a reader that leaves (`| head`) ---------------------------------------


def closed_stdout(command: list[str], env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run with stdout a pipe whose reader has gone: every write meets a broken pipe."""
    child = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env
    )
    assert child.stdout is not None
    assert child.stderr is not None
    child.stdout.close()
    try:
        code = child.wait(timeout=120)
    finally:
        child.kill()
    return code, child.stderr.read().decode(errors="replace")


@pytest.mark.parametrize("json_mode", [True, False])
def test_sonde_piped_into_head_exits_quietly(shared_sonde: Deployment, json_mode: bool) -> None:
    command = [*program("sonde"), "ticket", "list", *(["--json"] if json_mode else [])]
    code, stderr = closed_stdout(command, shared_sonde.cli_env())
    assert (code, stderr) == (141, "")


def test_sonde_server_and_sonde_agent_piped_into_head_exit_quietly(
    shared_sonde: Deployment,
) -> None:
    verify = [*program("sonde-server"), "audit", "verify", "--data", str(shared_sonde.data)]
    code, stderr = closed_stdout([*verify, "--json"])
    assert (code, stderr) == (141, "")
    code, stderr = closed_stdout([*program("sonde-agent"), "collect", "--json"])
    assert (code, stderr) == (141, "")


# -- sonde-server: the database, the listen port, the data folder ----------------------------


def init_args(data: Path, *extra: str) -> list[str]:
    return [
        "init",
        "--data",
        str(data),
        "--listen",
        "127.0.0.1:0",
        "--agent-listen",
        "127.0.0.1:0",
        *extra,
    ]


def test_db_that_is_not_a_url_is_refused_before_anything_is_made(tmp_path: Path) -> None:
    done = run("sonde-server", *init_args(tmp_path / "server", "--db", "notaurl"))
    refused(done, 2, "--db", "not a database URL", "postgresql://")
    assert not (tmp_path / "server").exists()


def test_postgresql_refusing_the_connection_is_one_line(tmp_path: Path) -> None:
    port = closed_port()
    url = f"postgresql://sonde:hunter2@127.0.0.1:{port}/test"
    done = run("sonde-server", *init_args(tmp_path / "server", "--db", url))
    said = refused(done, 1, f"PostgreSQL at 127.0.0.1:{port}", "connection refused")
    assert "hunter2" not in said
    assert not (tmp_path / "server" / "pki").exists()  # a retry once it runs finds no keys


@pytest.mark.postgres
def test_postgresql_without_such_a_role_is_one_line(tmp_path: Path) -> None:
    url = "postgresql://no_such_sonde_role@127.0.0.1:5432/test"
    done = run("sonde-server", *init_args(tmp_path / "server", "--db", url))
    refused(done, 1, "no_such_sonde_role", "does not exist", "createuser no_such_sonde_role")


def test_run_on_a_database_that_refuses_is_one_line(sonde: Deployment) -> None:
    sonde.stop()
    port = closed_port()
    args = ["run", "--data", str(sonde.data), "--db", f"postgresql://sonde@127.0.0.1:{port}/x"]
    refused(run("sonde-server", *args), 1, "connection refused", f"127.0.0.1:{port}")


def test_a_port_held_by_another_program_is_one_line(sonde: Deployment) -> None:
    sonde.stop()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        held = f"127.0.0.1:{holder.getsockname()[1]}"
        done = run("sonde-server", "run", "--data", str(sonde.data), "--listen", held)
    refused(done, 4, f"cannot listen on {held}", "address already in use")
    assert "Failed to add port" not in done.stderr


def test_init_into_a_folder_it_cannot_create_says_how_to_make_it(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the data folder's parent should be")
    data = blocker / "sonde-server"
    done = run("sonde-server", *init_args(data))
    refused(
        done,
        1,
        f"cannot create the data folder {data}",
        f"install -d -m 700 -o USER -g USER {data}",
    )


# -- sonde-agent: the state folder and its key -----------------------------------------------


def test_state_that_is_a_file_is_refused(tmp_path: Path) -> None:
    state = tmp_path / "agent.state"
    state.write_text("not a folder")
    refused(run("sonde-agent", "run", "--state", str(state)), 3, str(state), "not a folder")
    refused(run("sonde-agent", "collect", "--state", str(state)), 2, str(state), "is a file")


def test_a_state_folder_that_does_not_exist_is_one_plain_line(tmp_path: Path) -> None:
    missing = tmp_path / "never-enrolled"
    said = refused(run("sonde-agent", "run", "--state", str(missing)), 3, str(missing))
    assert said.splitlines() == [
        f"sonde-agent: this agent is not enrolled: the state folder {missing} does not exist "
        "(run `sonde-agent enroll TOKEN` first)"
    ]


@pytest.mark.parametrize(
    "damage",
    [b"", b"garbage\n", b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"],
    ids=["empty", "garbage", "truncated"],
)
def test_a_damaged_agent_key_exits_with_one_line(
    shared_sonde: Deployment, tmp_path: Path, damage: bytes
) -> None:
    state = tmp_path / "state"
    shared_sonde.enroll_agent(state)
    (state / "agent.key").write_bytes(damage)
    done = run("sonde-agent", "run", "--state", str(state), timeout=60)
    said = refused(done, 5, f"{state / 'agent.key'} is damaged", "sonde-agent enroll TOKEN")
    assert said.count("\n") == 1, said  # one line, then the exit: no reconnect


def test_another_agents_key_exits_naming_both(shared_sonde: Deployment, tmp_path: Path) -> None:
    mine, theirs = tmp_path / "mine", tmp_path / "theirs"
    my_id = shared_sonde.enroll_agent(mine)
    their_id = shared_sonde.enroll_agent(theirs)
    (mine / "agent.key").write_bytes((theirs / "agent.key").read_bytes())
    done = run("sonde-agent", "run", "--state", str(mine), timeout=60)
    refused(done, 5, "not this agent's key", my_id, their_id)


def test_a_sound_agent_still_connects(shared_sonde: Deployment, tmp_path: Path) -> None:
    online = bring_online(shared_sonde, tmp_path / "state")
    assert online.process.alive()


# -- messages name commands, not RPCs --------------------------------------------------------


def test_a_refusal_names_the_command_not_the_rpc(shared_sonde: Deployment) -> None:
    token = shared_sonde.add_user(f"l1-{secrets.token_hex(3)}", "l1")
    done = run("sonde", "audit", env=shared_sonde.cli_env(token))
    said = refused(done, 1, "`sonde audit` needs the audit.read permission")
    assert "ListAudit" not in said


# -- sonde token create: what the server would refuse is refused before it is sent ------------


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [
        ("--uses", "1001", "expected 1 to 1000"),
        ("--uses", "0", "expected 1 to 1000"),
        ("--ttl", "31d", "expected between 1m and 30d"),
        ("--ttl", "30s", "expected between 1m and 30d"),
    ],
)
def test_token_create_refuses_what_the_server_would_refuse_naming_the_option(
    shared_sonde: Deployment, option: str, value: str, expected: str
) -> None:
    done = run("sonde", "token", "create", option, value, env=shared_sonde.cli_env())
    refused(done, 2, f"argument {option}", value, expected)


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [
        ("--uses", "5000", "expected 1 to 1000"),
        ("--uses", "0", "expected 1 to 1000"),
        ("--ttl", "60d", "expected between 1m and 30d"),
        ("--ttl", "5s", "expected between 1m and 30d"),
        ("--ttl", "0", "expected between 1m and 30d"),
    ],
)
def test_the_servers_own_token_create_refuses_the_same_at_parse_time(
    shared_sonde: Deployment, option: str, value: str, expected: str
) -> None:
    done = run("sonde-server", "token", "create", "--data", str(shared_sonde.data), option, value)
    refused(done, 2, f"argument {option}", value, expected)


def test_token_create_at_the_bounds_is_taken_by_the_server(shared_sonde: Deployment) -> None:
    done = run(
        "sonde", "--json", "token", "create", "--uses", "1000", "--ttl", "30d",
        env=shared_sonde.cli_env(),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["enrollment"].startswith("sonde-enroll-1.")


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [
        ("--timeout", "0", "expected 1 to 600 seconds"),
        ("--timeout", "-1", "expected 1 to 600 seconds"),
        ("--timeout", HUGE, "expected 1 to 600 seconds"),
        ("--expires", "31d", "expected between 1s and 30d"),
    ],
)
def test_diag_refuses_a_timeout_or_expiry_out_of_range_at_parse_time(
    shared_sonde: Deployment, option: str, value: str, expected: str
) -> None:
    done = run("sonde", "diag", "PC-042", option, value, env=shared_sonde.cli_env())
    refused(done, 2, f"argument {option}", value, expected)
