"""The helpdesk's handling through the real CLI against a real server: the admin's category
tree, an L1 call opened with its nature, the L1 and L2 queues, take, escalate, L2's take
confirming the category, hand-back to the L1 who escalated, resolve with its outcome and time,
and a close refused until the record is complete."""

from __future__ import annotations

from pathlib import Path

from tests.support.deployment import Deployment, run


def test_a_call_from_intake_through_both_queues_to_a_complete_close(
    shared_sonde: Deployment,
) -> None:
    ann = shared_sonde.add_user("ann", "l1")
    bob = shared_sonde.add_user("bob", "l2")
    for path, title in [("network", "Network"), ("network/vpn", "VPN"), ("printing", "Print")]:
        shared_sonde.sonde_json("category", "add", path, "--title", title)
    refused = shared_sonde.sonde("category", "add", "office", "--title", "Office", token=ann)
    assert refused.returncode == 1
    assert "categories.manage" in refused.stderr

    opened = shared_sonde.sonde_json(
        "ticket", "open", "--title", "VPN drops every 10 minutes",
        "--channel", "phone", "--requester", "Marie Dupont", "--priority", "p2",
        "--kind", "incident", "--category", "network", token=ann,
    )["ticket"]  # fmt: skip
    number = str(opened["id"])
    assert (opened["kind"], opened["category"]) == ("TICKET_KIND_INCIDENT", "network")

    l1 = shared_sonde.sonde_json("queue", "--level", "l1", token=ann)["tickets"]
    assert [entry["ticket"]["id"] for entry in l1] == [opened["id"]]
    assert l1[0]["sla"] == "SLA_STATE_OK"
    shown = shared_sonde.sonde("queue", token=ann)
    assert shown.returncode == 0, shown.stderr
    assert "VPN drops" in shown.stdout
    assert "ok" in shown.stdout

    taken = shared_sonde.sonde_json("ticket", "take", number, token=ann)["ticket"]
    assert (taken["assignee"], taken["status"]) == ("ann", "TICKET_STATUS_IN_PROGRESS")
    again = shared_sonde.sonde("ticket", "take", number, token=bob)
    assert again.returncode == 1
    assert f"ann has ticket {number}" in again.stderr
    shared_sonde.sonde_json("ticket", "escalate", number, "--reason", "VPN gateway", token=ann)
    assert shared_sonde.sonde_json("queue", "--level", "l1", token=ann)["tickets"] == []

    confirmed = shared_sonde.sonde_json(
        "ticket", "take", number, "--category", "network/vpn", token=bob
    )["ticket"]
    assert (confirmed["category"], confirmed["category_confirmed_by"]) == ("network/vpn", "bob")
    mine = shared_sonde.sonde_json("queue", "--mine", token=bob)["tickets"]
    assert [entry["ticket"]["id"] for entry in mine] == [opened["id"]]

    back = shared_sonde.sonde_json(
        "ticket", "hand-back", number, "--note", "a proxy setting: L1's", token=bob
    )["ticket"]
    assert (back["level"], back["assignee"]) == ("TICKET_LEVEL_L1", "ann")
    logged = shared_sonde.sonde_json("ticket", "time", number, "25m", "--on", "remote session",
                     token=ann)["ticket"]  # fmt: skip
    assert logged["time_spent_s"] == 1500
    no_outcome = shared_sonde.sonde(
        "ticket", "resolve", number, "--resolution", "proxy off", token=ann
    )
    assert no_outcome.returncode == 2  # a usage error: --outcome and --time-spent are required
    assert "--outcome" in no_outcome.stderr
    shared_sonde.sonde_json(
        "ticket", "resolve", number, "--resolution", "removed a stale proxy",
        "--outcome", "fixed", "--time-spent", "10m", token=ann,
    )  # fmt: skip

    incomplete = shared_sonde.sonde("ticket", "close", number, token=ann)
    assert incomplete.returncode == 1
    lacks = " ".join(incomplete.stderr.split())
    assert "its record lacks: the machine, for an incident" in lacks
    assert f"sonde ticket set {number} --agent NAME" in lacks
    # Found to be the user's home router, not a machine of ours: a service request now.
    shared_sonde.sonde_json("ticket", "set", number, "--kind", "request", token=ann)
    closed = shared_sonde.sonde_json("ticket", "close", number, token=ann)["ticket"]
    assert (closed["status"], closed["outcome"], closed["time_spent_s"]) == (
        "TICKET_STATUS_CLOSED",
        "TICKET_OUTCOME_FIXED",
        2100,
    )
    view = shared_sonde.sonde("ticket", "show", number, token=ann)
    assert view.returncode == 0
    for words in ("service request, network/vpn", "outcome", "time spent", "35m"):
        assert words in view.stdout, view.stdout

    # The interventions table: the ticket, who finished it, how long, how it ended.
    report = shared_sonde.sonde_json("report", "interventions", "--from", "1d", token=ann)
    (row,) = [r for r in report["interventions"] if r["ticket_id"] == opened["id"]]
    assert (row["technician"], row["category"], row["time_spent_s"]) == ("ann", "network/vpn", 2100)
    assert row["outcome"] == "TICKET_OUTCOME_FIXED"
    assert row["on_time"] is True
    assert {f["name"] for f in report["by_technician"]} >= {"ann"}
    table = shared_sonde.sonde("report", "interventions", "--from", "1d", "--format", "csv")
    assert table.returncode == 0, table.stderr
    header, *lines = table.stdout.splitlines()
    assert header.startswith("ticket,finished_at,technician,machine,category,kind,outcome")
    assert any(line.startswith(f"{number},") and ",ann,," in line for line in lines), lines


PRINT_PROCEDURE = """\
+++
id = "print-queue-stuck"
title = "Documents stuck in the print queue"
category = "printing"
findings = ["print.stuck_jobs"]
checks = ["print.stuck_jobs"]
scripts = ["restart-print-spooler"]
version = 1
updated_at = 2026-12-01T09:00:00+00:00
+++

# Documents stuck in the print queue

## Symptoms

- my printer doesn't print
- documents stuck in the queue

## Steps

1. Ask which printer and which document.
2. Restart the spooler with the catalog script, on the ticket.
"""


def test_procedures_kept_in_git_go_in_and_out_and_fit_a_ticket(
    shared_sonde: Deployment, tmp_path: Path
) -> None:
    checkout = tmp_path / "kb"
    checkout.mkdir()
    (checkout / "print-queue-stuck.md").write_text(PRINT_PROCEDURE)
    (checkout / "vpn-drops.md").write_text(
        PRINT_PROCEDURE.replace("print-queue-stuck", "vpn-drops")
        .replace("Documents stuck in the print queue", "The VPN drops")
        .replace('category = "printing"', 'category = "network"')
        .replace('findings = ["print.stuck_jobs"]', "findings = []")
        .replace("- my printer doesn't print\n- documents stuck in the queue", "- vpn drops")
        .replace("Ask which printer and which document.", "Ask when it drops.")
        .replace("Restart the spooler with the catalog script, on the ticket.", "Read its log.")
        .replace('scripts = ["restart-print-spooler"]', "scripts = []")
        .replace('checks = ["print.stuck_jobs"]', "checks = []")
    )
    imported = shared_sonde.sonde("kb", "import", str(checkout))
    assert imported.returncode == 0, imported.stderr
    assert "2 files: 2 saved, 0 unchanged" in imported.stderr + imported.stdout
    again = shared_sonde.sonde("kb", "import", str(checkout))
    assert "2 files: 0 saved, 2 unchanged" in again.stderr + again.stdout

    hits = shared_sonde.sonde_json("kb", "search", "printer")["procedures"]
    assert [hit["procedure"]["id"] for hit in hits] == ["print-queue-stuck"]
    shown = shared_sonde.sonde("kb", "show", "print-queue-stuck")
    assert shown.stdout.startswith('+++\nid = "print-queue-stuck"')

    # Edited through $EDITOR (here a sed), saved as the next version.
    edited = run(
        "sonde", "kb", "edit", "print-queue-stuck",
        env={**shared_sonde.cli_env(), "EDITOR": "sed -i 's/Ask which/Ask the caller which/'"},
    )  # fmt: skip
    assert edited.returncode == 0, edited.stderr
    assert "version 2" in edited.stderr + edited.stdout
    out = tmp_path / "exported"
    exported = shared_sonde.sonde("kb", "export", str(out))
    assert exported.returncode == 0, exported.stderr
    written = (out / "print-queue-stuck.md").read_text()
    assert "Ask the caller which printer" in written
    assert "version = 2" in written
    # The checkout is now stale: importing it would undo the edit, and is refused.
    stale = shared_sonde.sonde("kb", "add", str(checkout / "print-queue-stuck.md"))
    assert stale.returncode == 1
    assert "is at version 2 and this file is of version 1" in " ".join(stale.stderr.split())

    ticket = shared_sonde.sonde_json(
        "ticket", "open", "--title", "my printer doesn't print anything"
    )["ticket"]
    suggested = shared_sonde.sonde_json("kb", "suggest", str(ticket["id"]))["suggestions"]
    assert [s["procedure"]["id"] for s in suggested] == ["print-queue-stuck"]
    assert suggested[0]["why"].startswith("symptom words")
    assert suggested[0]["success"] == "not used on a ticket yet"
