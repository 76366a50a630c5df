"""`sonde-agent collect`: JSON shape, text layout, and hostile OS text printed inert."""

from __future__ import annotations

import io
import json
from pathlib import Path

from sonde.agent.checks import evaluate
from sonde.agent.collect_cmd import inert, render_text, run_collect
from sonde.agent.collectors.runner import CollectContext
from sonde.agent.collectors.windows.document import windows_facts
from sonde.v1 import diagnostics_pb2

RECORDED_WINDOWS = Path(__file__).resolve().parents[2] / "fixtures" / "windows"
HOSTILE = "PC-042\x1b[2J\x1b]0;pwned\x07\nFAKE  OK  all good\u202e\x9b31m"


def test_json_is_one_object_with_snapshot_findings_and_worst_severity() -> None:
    out = io.StringIO()
    assert run_collect(CollectContext(), as_json=True, out=out) == 0
    document = json.loads(out.getvalue())
    assert set(document) == {"snapshot", "findings", "worst_severity"}
    assert document["worst_severity"] in ("ok", "warning", "critical")
    assert "collected_at" in document["snapshot"]
    assert {c["name"] for c in document["snapshot"]["collectors"]} >= {"system", "memory"}
    assert all("check" in f and "summary" in f for f in document["findings"])


def test_text_groups_facts_and_lists_findings_worst_first_without_colour_off_a_tty() -> None:
    out = io.StringIO()
    assert run_collect(CollectContext(), as_json=False, out=out) == 0
    text = out.getvalue()
    assert "\x1b" not in text
    for title in ("System", "CPU", "Memory", "Disks", "Findings (worst: "):
        assert f"\n{title}" in text
    tags = [line.split()[0] for line in text.split("\nFindings")[1].splitlines()[1:]]
    order = {"CRITICAL": 0, "WARNING": 1, "OK": 2}
    ranked = [order[t] for t in tags if t in order]
    assert ranked == sorted(ranked)


def test_hostile_host_and_process_names_are_printed_inert() -> None:
    snapshot = diagnostics_pb2.Snapshot()
    snapshot.system.hostname = HOSTILE
    snapshot.processes.total = 1
    snapshot.processes.top_by_cpu.add(pid=7, name=HOSTILE, cpu_percent=50)
    snapshot.services.manager = "systemd"
    snapshot.services.failed.add(name="evil\r\nunit", state="failed", display_name=HOSTILE)
    text = render_text(snapshot, evaluate(snapshot), colour=True)
    body = text.replace("\x1b[0m", "").replace("\x1b[1m", "").replace("\x1b[2m", "")
    for code in ("\x1b[32m", "\x1b[33m", "\x1b[1;31m"):
        body = body.replace(code, "")
    assert "\x1b" not in body
    assert "\x07" not in body
    assert "\u202e" not in body
    assert "\x9b" not in body
    assert "\r" not in body
    assert "PC-042\\x1b[2J" in body
    # One line per fact: the embedded newline did not start a fake line.
    assert "\nFAKE  OK" not in body


def test_inert_escapes_controls_and_keeps_ordinary_text() -> None:
    assert inert("Intel® Core™ i5 — bürö") == "Intel® Core™ i5 — bürö"
    assert inert("a\tb\nc\x00") == "a\\tb\\nc\\x00"


def test_a_windows_document_s_facts_are_shown_by_area_and_inert() -> None:
    raw = (RECORDED_WINDOWS / "print_jobs_stuck.json").read_text(encoding="utf-8")
    raw = raw.replace("Q4 budget.xlsx", "Q4\\u001b[2J\\u202ebudget.xlsx")
    facts = windows_facts(raw)
    snapshot = diagnostics_pb2.Snapshot()
    facts.into(snapshot)
    text = render_text(snapshot, evaluate(snapshot), colour=False)
    for title in ("Windows Update", "Antivirus", "BitLocker", "Event log", "Printing"):
        assert f"\n{title}" in text
    for title in ("Time sync", "Wi-Fi", "Disk health"):
        assert f"\n{title}" in text
    assert "Machine proxy" not in text  # WinHTTP goes direct on this machine
    assert "Q4\\x1b[2J\\u202ebudget.xlsx" in text
    assert "\x1b" not in text
    assert "\n  WARNING  print.stuck_jobs: 3 print jobs are stuck" in text
