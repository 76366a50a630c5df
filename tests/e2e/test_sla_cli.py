"""SLA through the real CLI against a real server: the admin's business calendar (TOML) and a
contract's policy, a ticket of that contract taking its due times in business hours, a new
priority recounting them, a new version of the policy leaving the old tickets their own, the
refusals (who may, what a target is, a broken calendar), and the compliance report as JSON and
as spreadsheet-safe CSV."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from tests.support.deployment import Deployment

PARIS = ZoneInfo("Europe/Paris")


def instant(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def test_a_contract_policy_on_business_hours_from_the_cli(
    shared_sonde: Deployment, tmp_path: Path
) -> None:
    ann = shared_sonde.add_user("ann", "l1")
    bob = shared_sonde.add_user("bob", "l2")
    # Every hour of every day is working time, but for two holidays: today and tomorrow in
    # Paris (the ones around the ticket's opening, whatever day the test runs).
    today = datetime.now(UTC).astimezone(PARIS).date()
    holidays = [today - timedelta(days=1), today, today + timedelta(days=1)]
    calendar = tmp_path / "paris.toml"
    calendar.write_text(
        'time_zone = "Europe/Paris"\n'
        "holidays = [" + ", ".join(day.isoformat() for day in holidays) + "]\n"
        "[hours]\n"
        '"mon-sun" = "00:00-24:00"\n'
    )
    set_calendar = shared_sonde.sonde_json(
        "sla", "calendar", "set", "paris", "--file", str(calendar)
    )
    assert set_calendar["calendar"]["time_zone"] == "Europe/Paris"
    assert len(set_calendar["calendar"]["holidays"]) == 3
    listed = shared_sonde.sonde_json("sla", "calendar", "list", token=ann)["calendars"]
    assert [entry["name"] for entry in listed] == ["paris"]

    policy = shared_sonde.sonde_json(
        "sla", "policy", "set", "acme-p2", "--priority", "p2",
        "--contract", "acme", "--response", "4h", "--resolve", "16h",
        "--calendar", "paris", "--on-risk", "escalate",
    )["policy"]  # fmt: skip
    assert (policy["response_within_s"], policy["resolve_within_s"]) == (4 * 3600, 16 * 3600)
    assert policy["on_risk"] == "SLA_ON_RISK_ESCALATE"

    shared_sonde.sonde_json("category", "add", "office", "--title", "Office")
    opened = shared_sonde.sonde_json(
        "ticket", "open", "--title", "Outlook freezes", "--channel", "phone",
        "--requester", "Marie Dupont", "--priority", "p2", "--contract", "acme",
        "--category", "office", token=ann,
    )["ticket"]  # fmt: skip
    assert (opened["contract"], opened["sla_policy_id"]) == ("acme", policy["id"])
    assert opened["category"] == "office"
    opened_day = instant(opened["created_at"]).astimezone(PARIS).date()
    first_working = datetime.combine(max(holidays) + timedelta(days=1), datetime.min.time(), PARIS)
    assert opened_day in holidays
    assert instant(opened["response_due_at"]) == first_working + timedelta(hours=4)
    assert instant(opened["resolve_due_at"]) == first_working + timedelta(hours=16)
    assert instant(opened["response_risk_at"]) == first_working + timedelta(hours=3)
    shown = shared_sonde.sonde("ticket", "show", str(opened["id"]), token=ann)
    assert shown.returncode == 0, shown.stderr
    assert f"acme, SLA policy #{policy['id']} (business hours)" in shown.stdout

    # No policy for acme's p3 tickets and no default one: the wall-clock targets again.
    recounted = shared_sonde.sonde_json(
        "ticket", "set", str(opened["id"]), "--priority", "p3", token=ann
    )["ticket"]
    assert (recounted["priority"], recounted["sla_policy_id"]) == ("TICKET_PRIORITY_P3", 0)
    back = shared_sonde.sonde_json(
        "ticket", "set", str(opened["id"]), "--priority", "p2", token=ann
    )["ticket"]
    assert back["sla_policy_id"] == policy["id"]

    # A new version: new tickets take it, the open one keeps the version it was counted on.
    newer = shared_sonde.sonde_json(
        "sla", "policy", "set", "acme-p2", "--priority", "p2",
        "--contract", "acme", "--response", "2h", "--resolve", "8h", "--calendar", "paris",
    )["policy"]  # fmt: skip
    assert newer["id"] != policy["id"]
    live = shared_sonde.sonde_json("sla", "policy", "list", token=ann)["policies"]
    assert [entry["id"] for entry in live] == [newer["id"]]
    every = shared_sonde.sonde_json("sla", "policy", "list", "--all", token=ann)["policies"]
    assert {entry["id"] for entry in every} == {policy["id"], newer["id"]}
    kept = shared_sonde.sonde_json("ticket", "show", str(opened["id"]), token=ann)["ticket"]
    assert kept["sla_policy_id"] == policy["id"]

    other = shared_sonde.sonde_json(
        "ticket", "open", "--title", "=HYPERLINK(\"http://evil\",\"x\")",
        "--priority", "p4", token=ann,
    )["ticket"]  # fmt: skip
    assert other["sla_policy_id"] == 0
    shared_sonde.sonde_json(
        "ticket", "resolve", str(other["id"]), "--resolution", "=cmd|' /C calc'!A0",
        "--outcome", "fixed", "--time-spent", "5m", token=ann,
    )  # fmt: skip

    mailed = shared_sonde.sonde_json("users", "email", "bob", "bob@helpdesk.example")["user"]
    assert mailed["email"] == "bob@helpdesk.example"

    report = shared_sonde.sonde_json("sla", "report", "--from", "1d", token=bob)
    contracts = {entry["name"]: entry for entry in report["by_contract"]}
    assert set(contracts) == {"acme", "(default)"}
    assert contracts["acme"]["response"]["pending"] == 1
    assert contracts["(default)"]["resolve"]["met"] == 1
    # The acme ticket is in office, the other in no category ("-").
    categories = {entry["name"]: entry for entry in report["by_category"]}
    assert set(categories) == {"office", "-"}
    assert categories["office"]["response"]["pending"] == 1
    assert categories["-"]["resolve"]["met"] == 1
    assert categories["office"]["resolve"]["met"] == 0  # still open, not yet due
    assert report["breaches"] == []
    table = shared_sonde.sonde("sla", "report", "--from", "1d", token=bob)
    assert table.returncode == 0, table.stderr
    assert "By contract" in table.stdout
    assert "acme" in table.stdout
    assert "By category" in table.stdout
    assert "office" in table.stdout
    csv_report = shared_sonde.sonde("sla", "report", "--from", "1d", "--format", "csv", token=bob)
    header = csv_report.stdout.splitlines()[0]
    assert header.startswith("ticket,title,contract,priority,clock")
    assert header.endswith(",technician,policy,category")
    interventions = shared_sonde.sonde(
        "report", "interventions", "--from", "1d", "--format", "csv", token=bob
    )
    assert interventions.returncode == 0, interventions.stderr
    assert "'=cmd|' /C calc'!A0" in interventions.stdout
    assert ",=cmd" not in interventions.stdout

    retired = shared_sonde.sonde_json("sla", "policy", "retire", "acme-p2")["policy"]
    assert retired["id"] == newer["id"]
    assert "retired_at" in retired
    assert shared_sonde.sonde_json("sla", "policy", "list", token=ann)["policies"] == []


def test_sla_refusals_say_what_was_refused_and_why(
    shared_sonde: Deployment, tmp_path: Path
) -> None:
    carl = shared_sonde.add_user("carl", "l1")
    by_l1 = shared_sonde.sonde(
        "sla", "policy", "set", "x", "--priority", "p1", "--response", "1h",
        "--resolve", "4h", "--calendar", "paris", token=carl,
    )  # fmt: skip
    assert by_l1.returncode == 1
    assert "`sonde sla policy set` needs the sla.manage permission" in " ".join(
        by_l1.stderr.split()
    )
    report = shared_sonde.sonde("sla", "report", "--from", "1d", token=carl)
    assert report.returncode == 1
    assert "sla.read" in report.stderr

    in_days = shared_sonde.sonde(
        "sla", "policy", "set", "x", "--priority", "p1", "--response", "2d",
        "--resolve", "4d",
    )  # fmt: skip
    assert in_days.returncode == 2
    assert "say business hours" in in_days.stderr

    broken = tmp_path / "broken.toml"
    broken.write_text('time_zone = "Europe/Paris"\n[hours\n')
    unreadable = shared_sonde.sonde("sla", "calendar", "set", "lyon", "--file", str(broken))
    assert unreadable.returncode == 1
    assert "is not valid" in unreadable.stderr
    nowhere = tmp_path / "nowhere.toml"
    nowhere.write_text('time_zone = "Mars/Olympus"\n[hours]\n"mon-fri" = "09:00-17:00"\n')
    refused = shared_sonde.sonde("sla", "calendar", "set", "mars", "--file", str(nowhere))
    assert refused.returncode == 1
    assert "Mars/Olympus" in refused.stderr
    unknown = shared_sonde.sonde(
        "sla", "policy", "set", "x", "--priority", "p1", "--response", "1h",
        "--resolve", "4h", "--calendar", "atlantis",
    )  # fmt: skip
    assert unknown.returncode == 1
    assert "atlantis" in unknown.stderr
    calendars = shared_sonde.sonde_json("sla", "calendar", "list")["calendars"]
    assert "mars" not in {entry["name"] for entry in calendars}
