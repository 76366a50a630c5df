"""A machine without an agent in `sonde agents` and `sonde agent show`: its state is how the
server reaches it (never online or offline), the diag line to use, its reported name inert."""

from __future__ import annotations

import io

from rich.console import RenderableType

from sonde.server.console.output import Output
from sonde.server.console.render import agent_detail, agents_table
from sonde.v1 import console_pb2

NOW = 1_700_000_000.0


def rendered(*renderables: RenderableType, width: int = 80) -> str:
    buffer = io.StringIO()
    Output(json_mode=False, stdout=buffer, force_terminal=False, width=width).show(*renderables)
    return buffer.getvalue()


def _machine(hostname: str = "LPT-0417") -> console_pb2.Agent:
    machine = console_pb2.Agent(
        id="q" * 26,
        hostname=hostname,
        platform="windows",
        reached_by="winrm",
        reach_address="10.1.2.7:5986",
    )
    machine.last_seen_at.FromSeconds(int(NOW) - 120)
    return machine


def test_the_fleet_shows_how_a_machine_without_an_agent_is_reached() -> None:
    enrolled = console_pb2.Agent(id="a" * 26, hostname="PC-042", online=True)
    table = rendered(agents_table([_machine(), enrolled], now=NOW))
    assert "winrm 10.1.2.7:5986" in table
    assert "offline" not in table
    assert "online" in table  # the enrolled agent keeps its state


def test_agent_show_names_the_flag_and_the_address() -> None:
    shown = rendered(
        agent_detail(console_pb2.GetAgentResponse(agent=_machine()), now=NOW), width=120
    )
    assert "reached by     winrm 10.1.2.7:5986, without an agent" in shown
    assert "sonde diag LPT-0417 --winrm USER@10.1.2.7:5986" in shown
    assert "last reached" in shown
    assert "agent version  none" in shown


def test_a_hostile_reported_name_is_shown_inert() -> None:
    machine = _machine("evil\x1b[31m\nrm -rf")
    shown = rendered(agent_detail(console_pb2.GetAgentResponse(agent=machine), now=NOW), width=120)
    assert "\x1b" not in shown
    assert "evil\\x1b[31m" in shown
