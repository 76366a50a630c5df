"""server.json's connection_limits, the per-address arithmetic, and the open-file limit."""

from __future__ import annotations

import resource
from pathlib import Path

import pytest

from sonde.server.api.address_caps import (
    Connection,
    _remote_address,
    listener_connections,
    over_cap,
)
from sonde.server.api.connection_limits import warn_if_over_file_limit
from sonde.server.file_limit import raise_open_file_limit
from sonde.server.settings import ConnectionLimits, ServerConfig


def test_named_limits_are_taken_and_the_rest_keep_their_defaults() -> None:
    limits = ServerConfig(
        connection_limits={"handshake_timeout_s": 2, "max_console_connections": 9}
    ).limits()
    assert limits.handshake_timeout_s == 2.0
    assert limits.max_console_connections == 9
    assert limits.idle_connection_timeout_s == ConnectionLimits().idle_connection_timeout_s


@pytest.mark.parametrize(
    ("given", "said"),
    [
        ({"handshake_timeout": 2}, "unknown handshake_timeout"),
        ({"max_console_connections": 1.5}, "must be a whole number, not 1.5"),
        ({"idle_connection_timeout_s": 0}, "must be more than 0 seconds"),
        ({"max_agent_connections": "many"}, "must be a number, not 'many'"),
        ({"max_agent_connections": True}, "must be a number"),
        ({"max_console_connections_per_address": -1}, "must be 0 (no cap) or more"),
        ({"web_head_timeout_s": 0}, "web_head_timeout_s must be more than 0 seconds"),
        ({"max_web_connections": 0}, "max_web_connections must be 1 or more"),
        ({"max_web_connections_per_address": -2}, "must be 0 (no cap) or more, not -2"),
    ],
)
def test_a_limit_run_cannot_use_is_refused_saying_which_and_why(
    given: dict[str, float], said: str
) -> None:
    with pytest.raises(ValueError, match="connection_limits: ") as refused:
        ServerConfig(connection_limits=given).limits()
    assert said in str(refused.value)


def test_remote_addresses_are_read_as_the_kernel_prints_them() -> None:
    assert _remote_address("0100007F:1F90") == "127.0.0.1"
    assert _remote_address("0000000000000000FFFF00000A01A8C0:D431") == "192.168.1.10"
    assert _remote_address("B80D0120000000000000000001000000:0050") == "2001:db8::/64"


QUEUES = "00000000:00000000 00:00000000 00000000"


def test_the_newest_connections_past_the_cap_are_the_ones_to_close(tmp_path: Path) -> None:
    table = tmp_path / "tcp"
    header = (
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt  uid ...\n"
    )
    rows = [
        # (local port 0x1F90 = 8080, remote, state, inode)
        ("0100007F:1F90", "0100007F:A000", "01", 101),
        ("0100007F:1F90", "0100007F:A001", "01", 103),
        ("0100007F:1F90", "0100007F:A002", "01", 102),
        ("0100007F:1F90", "0200007F:A003", "01", 104),  # another address
        ("0100007F:1F90", "0100007F:A004", "06", 105),  # TIME_WAIT: not a connection
        ("0100007F:1F91", "0100007F:A005", "01", 106),  # another listener
    ]
    table.write_text(
        header
        + "".join(
            f"   {n}: {local} {remote} {state} {QUEUES} 1000 0 {inode} 1\n"
            for n, (local, remote, state, inode) in enumerate(rows)
        )
    )
    found = list(listener_connections(8080, [table]))
    assert sorted(c.inode for c in found) == [101, 102, 103, 104]
    assert over_cap(found, 2) == {"127.0.0.1": [103]}
    assert over_cap([Connection("127.0.0.1", 1)], 1) == {}
    # Age is the scan that first saw a connection, not its inode (handed out per CPU).
    first_seen = {103: 1, 101: 2, 102: 2}
    assert over_cap(found, 2, first_seen) == {"127.0.0.1": [102]}


def test_the_soft_open_file_limit_is_raised_to_the_hard_one() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard < 64:
        pytest.skip(f"needs a finite hard limit of 64 or more, not {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, hard // 2), hard))
    try:
        assert raise_open_file_limit() == (hard, hard)
        assert resource.getrlimit(resource.RLIMIT_NOFILE) == (hard, hard)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_the_file_limit_warning_counts_the_web_forms_cap_when_it_is_served(
    caplog: pytest.LogCaptureFixture,
) -> None:
    limits = ConnectionLimits(
        max_agent_connections=1000, max_console_connections=500, max_web_connections=512
    )
    # 1000 + 500 + 256 other files fit in 2,000; with the form's 512 they do not.
    warn_if_over_file_limit(limits, 2000)
    assert caplog.records == []
    warn_if_over_file_limit(limits, 2000, web_form=True)
    (warning,) = caplog.records
    assert "(2000) is below the connection caps (1000 agent + 500 console + 512 web form" in (
        warning.getMessage()
    )
