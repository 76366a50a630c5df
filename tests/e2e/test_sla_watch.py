"""The SLA watch inside a real `sonde-server run` (every second here, `--sla-interval 1`), with a
real SMTP server: a ticket whose resolve clock turns at risk tells its assignee by mail, once,
and an unanswered ticket of a contract whose policy escalates goes to the L2 queue by itself,
saying why. The policies' at-risk share is set low (5 % of a minute or two) to see it now."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.deployment import Deployment, wait_for
from tests.support.smtp_sink import SmtpSink, running_smtp_sink


@pytest.fixture
def watched(tmp_path: Path) -> Iterator[tuple[Deployment, SmtpSink]]:
    with running_smtp_sink(tmp_path / "smtp") as sink:
        sonde = Deployment(tmp_path)
        sonde.init()
        sonde.start_server(
            "--sla-interval", "1",
            "--smtp", f"smtp+starttls://127.0.0.1:{sink.port}", "--smtp-ca", str(sink.ca_file),
            "--smtp-from", "helpdesk@example.org",
        )  # fmt: skip
        try:
            yield sonde, sink
        finally:
            sonde.stop()


def kinds(sonde: Deployment, number: int) -> list[str]:
    timeline: list[dict[str, Any]] = sonde.sonde_json("ticket", "show", str(number))["timeline"]
    return [event["kind"].removeprefix("TICKET_EVENT_KIND_") for event in timeline]


def test_the_watch_tells_the_assignee_and_escalates_by_policy(
    watched: tuple[Deployment, SmtpSink], tmp_path: Path
) -> None:
    sonde, sink = watched
    sonde.add_user("bob", "l1")
    sonde.sonde_json("users", "email", "bob", "bob@helpdesk.example")
    always = tmp_path / "always.toml"
    always.write_text('time_zone = "UTC"\n[hours]\n"mon-sun" = "00:00-24:00"\n')
    sonde.sonde_json("sla", "calendar", "set", "always", "--file", str(always))
    for name, contract, on_risk in (("any-p2", "", "notify"), ("acme-p2", "acme", "escalate")):
        sonde.sonde_json(
            "sla", "policy", "set", name, "--priority", "p2", "--contract", contract,
            "--response", "1m", "--resolve", "2m", "--at-risk", "0.05", "--on-risk", on_risk,
            "--calendar", "always",
        )  # fmt: skip

    told = sonde.sonde_json("ticket", "open", "--title", "VPN drops", "--priority", "p2")["ticket"]
    sonde.sonde_json("ticket", "assign", str(told["id"]), "bob")  # answered: the resolve clock
    escalated = sonde.sonde_json(
        "ticket", "open", "--title", "ERP down", "--priority", "p2", "--contract", "acme"
    )["ticket"]

    mails = sink.wait_for(2, timeout=30)
    subjects = sorted(mail.message()["Subject"] for mail in mails)
    assert subjects == [
        f"[Sonde #{told['id']}] Assigned to you: VPN drops",
        f"[Sonde #{told['id']}] SLA at risk: VPN drops",
    ]
    assert {mail.recipients for mail in mails} == {("bob@helpdesk.example",)}
    assert kinds(sonde, told["id"]).count("SLA_AT_RISK") == 1

    def at_l2() -> dict[str, Any] | None:
        ticket: dict[str, Any] = sonde.sonde_json("ticket", "show", str(escalated["id"]))["ticket"]
        return ticket if ticket["level"] == "TICKET_LEVEL_L2" else None

    moved = wait_for("the escalation by policy", at_l2, timeout=30)
    assert moved["status"] == "TICKET_STATUS_NEW"
    timeline = sonde.sonde_json("ticket", "show", str(escalated["id"]))["timeline"]
    risks = [e for e in timeline if e["kind"] == "TICKET_EVENT_KIND_SLA_AT_RISK"]
    (response,) = [e for e in risks if "the response clock is at risk" in e["body"]]
    assert response["actor"] == "sla-watch"
    assert "escalated" in response["body"]
    audit = sonde.sonde("audit", "--json")
    assert "sla.at_risk" in audit.stdout
