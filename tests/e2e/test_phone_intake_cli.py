"""Taking a phone call through the real CLI against a real server and a real agent: the caller
found by the start of their name, their usual machine suggested and linked with `--agent
usual`, an ambiguous start refused naming the candidates, a new caller kept as typed."""

from __future__ import annotations

from tests.e2e.conftest import OnlineAgent
from tests.support.deployment import Deployment


def test_a_returning_caller_is_found_by_prefix_with_their_usual_machine(
    shared_sonde: Deployment, shared_agent: OnlineAgent
) -> None:
    first = shared_sonde.sonde_json(
        "ticket", "open", "--title", "Outlook freezes", "--channel", "phone",
        "--requester", "Marie Dupont <marie@example.org>", "--agent", shared_agent.agent_id,
    )["ticket"]  # fmt: skip
    shared_sonde.sonde_json(
        "ticket", "open", "--title", "badge reader", "--channel", "phone",
        "--requester", "Marc Petit", "--new-requester",
    )  # fmt: skip

    found = shared_sonde.sonde_json("requester", "find", "dupont")["requesters"]
    assert [known["requester"] for known in found] == ["Marie Dupont <marie@example.org>"]
    assert found[0]["usual_agent_id"] == shared_agent.agent_id
    assert found[0]["machines"][0]["tickets"] == 1

    # She calls again: "mari" is enough, and her machine is offered.
    again = shared_sonde.sonde(
        "ticket", "open", "--title", "Outlook again", "--channel", "phone",
        "--requester", "mari",
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    said = " ".join(again.stdout.split())
    assert "requester: Marie Dupont <marie@example.org> (1 past ticket(s))" in said
    assert "their usual machine:" in said
    assert f"--agent {shared_agent.agent_id}" in said
    linked = shared_sonde.sonde_json(
        "ticket", "open", "--title", "printer", "--requester", "marie@",
        "--agent", "usual",
    )["ticket"]  # fmt: skip
    assert linked["requester"] == first["requester"]
    assert linked["agent_id"] == shared_agent.agent_id

    ambiguous = shared_sonde.sonde("ticket", "open", "--title", "x", "--requester", "mar")
    assert ambiguous.returncode == 1
    words = " ".join(ambiguous.stderr.split())
    assert "could be 2 people who called before" in words
    assert "Marc Petit" in words
    assert "--new-requester" in words
    kept = shared_sonde.sonde_json("ticket", "open", "--title", "y", "--requester", "Zoé Martin")
    assert kept["ticket"]["requester"] == "Zoé Martin"  # no one called so before: as typed
    nothing = shared_sonde.sonde(
        "ticket", "open", "--title", "z", "--requester", "Zoé", "--agent", "usual"
    )
    assert nothing.returncode == 1
    assert "has no machine on past tickets" in nothing.stderr
