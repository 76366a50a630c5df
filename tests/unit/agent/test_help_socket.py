"""The help socket's pure rules: what a description may be, and where the socket is."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from sonde.agent.help_socket import (
    LINUX_SYSTEM_STATE_DIR,
    MAX_DESCRIPTION_CHARS,
    DescriptionRefused,
    checked_description,
    help_socket_path,
)


def test_control_characters_are_dropped_and_lines_kept() -> None:
    text = "  the printer\x1b[31m\x00 jams\r\n\tpage 2\x7f\u200b  "
    assert checked_description(text) == "the printer[31m jams\n\tpage 2"


def test_the_limit_is_counted_after_cleaning() -> None:
    assert len(checked_description("x" * MAX_DESCRIPTION_CHARS + "\x00" * 10)) == 4000
    with pytest.raises(DescriptionRefused, match="4001 characters; at most 4000"):
        checked_description("x" * (MAX_DESCRIPTION_CHARS + 1))


@pytest.mark.parametrize("text", ["", "   ", "\x00\x1b\x07", "\n\t\n"])
def test_nothing_to_say_is_refused(text: str) -> None:
    with pytest.raises(DescriptionRefused, match="describe the problem"):
        checked_description(text)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux paths")
def test_the_system_agent_listens_outside_its_0700_state_folder() -> None:
    assert help_socket_path(LINUX_SYSTEM_STATE_DIR) == Path("/run/sonde-agent/help.sock")
    own = Path("/home/alice/.local/state/sonde-agent")
    assert help_socket_path(own) == Path("/home/alice/.local/state/sonde-agent.help.sock")
