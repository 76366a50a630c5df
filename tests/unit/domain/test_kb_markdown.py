from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sonde.server.domain.kb_markdown import (
    KbImportError,
    ProcedureFileError,
    export_folder,
    from_markdown,
    import_folder,
    to_markdown,
)
from sonde.server.domain.kb_procedure import Procedure
from sonde.server.errors import InvalidArgument

T0 = datetime(2026, 12, 2, 9, 30, tzinfo=UTC)

SPOOLER = Procedure(
    id="print-queue-stuck",
    title="Documents stuck in the print queue",
    category="printing/spooler",
    symptoms=("my printer doesn't print", "documents stuck in the queue"),
    finding_ids=("print.stuck_jobs",),
    steps=(
        "Ask which printer and which document; check `Get-Printer` output.",
        "Restart the spooler with the catalog script.\n"
        "If jobs come back stuck, clear the queue:\n\n"
        "    net stop spooler\n"
        "# not a heading: this line is text of step 2",
        "Print a test page and ask the caller to confirm.",
    ),
    check_ids=("print.stuck_jobs", "services.failed"),
    script_ids=("restart-print-spooler", "restart-cups"),
    version=2,
    updated_at=T0,
)

SPOOLER_FILE = """\
+++
id = "print-queue-stuck"
title = "Documents stuck in the print queue"
category = "printing/spooler"
findings = ["print.stuck_jobs"]
checks = ["print.stuck_jobs", "services.failed"]
scripts = ["restart-print-spooler", "restart-cups"]
version = 2
updated_at = 2026-12-02T09:30:00+00:00
+++

# Documents stuck in the print queue

## Symptoms

- my printer doesn't print
- documents stuck in the queue

## Steps

1. Ask which printer and which document; check `Get-Printer` output.
2. Restart the spooler with the catalog script.
   If jobs come back stuck, clear the queue:

       net stop spooler
   # not a heading: this line is text of step 2
3. Print a test page and ask the caller to confirm.
"""


def test_the_file_format_is_the_documented_one() -> None:
    assert to_markdown(SPOOLER) == SPOOLER_FILE
    assert from_markdown(SPOOLER_FILE, source_name="print-queue-stuck.md") == SPOOLER


def test_crlf_and_a_byte_order_mark_read_the_same() -> None:
    text = "\ufeff" + SPOOLER_FILE.replace("\n", "\r\n")
    assert from_markdown(text, source_name="x.md") == SPOOLER


def test_a_technicians_hand_edits_are_read() -> None:
    edited = SPOOLER_FILE.replace("- my printer", "*   my printer").replace(
        "## Steps\n\n1.", "## Steps   \n\n\n1."
    )
    assert from_markdown(edited, source_name="x.md").symptoms[0] == "my printer doesn't print"


def _refusal(text: str) -> ProcedureFileError:
    with pytest.raises(ProcedureFileError) as caught:
        from_markdown(text, source_name="kb/print-queue-stuck.md")
    assert str(caught.value).startswith("kb/print-queue-stuck.md")
    return caught.value


@pytest.mark.parametrize(
    ("edit", "line", "words"),
    [
        (lambda t: t.replace("+++\nid", "id", 1), 1, "begins with a +++"),
        (lambda t: t.replace("+++\n\n#", "\n#", 1), 1, "never closed"),
        (lambda t: t.replace("version = 2", 'version = "two"'), 8, "version must be a whole"),
        (lambda t: t.replace("version = 2", 'version = 2\nowner = "ana"'), 9, "unknown front"),
        (lambda t: t.replace('category = "printing/spooler"\n', ""), 1, "lacks category"),
        (lambda t: t.replace('findings = ["print.stuck_jobs"]', "findings = [1]"), 5, "list of"),
        (lambda t: t.replace('queue"\n', "queue\n", 1), 3, "not valid TOML"),
        (lambda t: t.replace("# Documents", "# Papers"), 12, "differs from the front"),
        (lambda t: t.replace("- documents", "documents"), 17, "each line is a bullet"),
        (lambda t: t.replace("## Steps", "## Fixes"), 19, "'## Steps' heading"),
        (lambda t: t.replace("3. Print", "4. Print"), 27, "comes where step 3"),
        (lambda t: t.replace("   If jobs", "  If jobs"), 23, "indented by 3 spaces"),
        (lambda t: t + "\n## Notes\n", 29, "last; put notes inside a step"),
        (lambda t: t.replace("version = 2", "version\r = 2"), 8, "lone carriage return"),
    ],
)
def test_refusals_name_the_file_the_line_and_the_problem(
    edit: object, line: int, words: str
) -> None:
    refusal = _refusal(edit(SPOOLER_FILE))  # type: ignore[operator]
    assert refusal.line == line, str(refusal)
    assert words in refusal.problem, str(refusal)


def test_a_bad_value_is_refused_with_the_procedures_own_words() -> None:
    refusal = _refusal(SPOOLER_FILE.replace('"restart-cups"', '"Restart CUPS"'))
    assert "not an id" in refusal.problem
    refusal = _refusal(SPOOLER_FILE.replace("scripts = [", 'scripts = ["restart-cups", '))
    assert "twice" in refusal.problem


def test_a_procedure_refuses_what_it_cannot_keep() -> None:
    with pytest.raises(InvalidArgument, match="begins or ends with spaces"):
        replace(SPOOLER, title=" Stuck ")
    with pytest.raises(InvalidArgument, match="not a check id"):
        replace(SPOOLER, finding_ids=("Spooler",))
    with pytest.raises(InvalidArgument, match="no step"):
        replace(SPOOLER, steps=())
    with pytest.raises(InvalidArgument, match="line ending in spaces"):
        replace(SPOOLER, steps=("first  \nsecond",))
    with pytest.raises(InvalidArgument, match=r"lists .My printer doesn't print. twice"):
        replace(SPOOLER, symptoms=(*SPOOLER.symptoms, "My printer doesn't print"))
    with pytest.raises(InvalidArgument, match="nothing could ever suggest it"):
        replace(SPOOLER, symptoms=(), finding_ids=())
    with pytest.raises(InvalidArgument, match="UTC"):
        replace(SPOOLER, updated_at=datetime(2026, 1, 1))
    with pytest.raises(InvalidArgument, match="lower-case path"):
        replace(SPOOLER, category="Printing")
    with pytest.raises(InvalidArgument, match="control character"):
        replace(SPOOLER, steps=("ring \x1b[31m",))


def test_a_time_with_another_offset_is_written_in_utc() -> None:
    paris = T0.astimezone(timezone(timedelta(hours=1)))
    with pytest.raises(InvalidArgument, match="UTC"):
        replace(SPOOLER, updated_at=paris)


# Text a technician could write, with what Markdown and our own format find awkward.
_AWKWARD = st.sampled_from(
    [
        "#",
        "##",
        "+++",
        "-",
        "*",
        "1.",
        "`",
        "**",
        "_",
        "[x](y)",
        "|",
        ">",
        "\\",
        '"',
        "'",
        "é",
        "漢字",
        "🙂",
        "=",
        "[",
        "]",
        "ß",
        "İ",
        "'''",
        "\\u00e9",
        "a\u00a0b",
        "a\u2028b",
        "e\u0301",
    ]
)
_WORD = st.one_of(
    _AWKWARD,
    st.text(st.characters(codec="utf-8", categories=["L", "N", "P", "S"]), min_size=1, max_size=8),
)


def _line(words: list[str]) -> str:
    return " ".join(words).strip()


_ONE_LINE = st.lists(_WORD, min_size=1, max_size=6).map(_line).filter(lambda s: 0 < len(s) <= 200)
_STEP_LINE = st.one_of(
    st.just(""),
    _ONE_LINE,
    st.tuples(_ONE_LINE, st.just("\t"), _ONE_LINE).map("".join),
    st.tuples(st.sampled_from(["  ", "    ", "\t"]), _ONE_LINE).map("".join),
    st.tuples(st.sampled_from(["+++", "## Steps", "# Title", "2. ", "- "]), _ONE_LINE).map("".join),
)


@st.composite
def _steps(draw: st.DrawFn) -> str:
    first = draw(_ONE_LINE)
    rest = draw(st.lists(_STEP_LINE, max_size=4))
    while rest and not rest[-1]:
        rest.pop()
    return "\n".join([first, *rest])


_SLUG = st.from_regex(r"[a-z0-9](?:[a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)
_CHECK = st.sampled_from(
    [
        "print.stuck_jobs",
        "services.failed",
        "disk.space",
        "network.dns",
        "windows.update",
        "windows.defender",
        "time.sync",
        "updates.reboot_pending",
    ]
)


def _unique(items: list[str]) -> tuple[str, ...]:
    seen: dict[str, str] = {}
    for item in items:
        seen.setdefault(item.casefold(), item)
    return tuple(seen.values())


procedures = st.builds(
    Procedure,
    id=_SLUG,
    title=_ONE_LINE,
    category=st.sampled_from(["printing", "printing/spooler", "network/vpn", "mail"]),
    symptoms=st.lists(_ONE_LINE, min_size=1, max_size=4).map(_unique),
    finding_ids=st.lists(_CHECK, max_size=3).map(_unique),
    steps=st.lists(_steps(), min_size=1, max_size=12).map(tuple),
    check_ids=st.lists(_CHECK, max_size=3).map(_unique),
    script_ids=st.lists(_SLUG, max_size=3).map(_unique),
    version=st.integers(min_value=1, max_value=10**6),
    updated_at=st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    ),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(procedures, st.booleans())
def test_round_trip_is_exact(procedure: Procedure, crlf: bool) -> None:
    text = to_markdown(procedure)
    if crlf:
        text = text.replace("\n", "\r\n")
    assert from_markdown(text, source_name="generated.md") == procedure
    assert to_markdown(from_markdown(text, source_name="generated.md")) == to_markdown(procedure)


def test_export_then_import_gives_the_procedures_back_in_id_order(tmp_path: Path) -> None:
    other = replace(SPOOLER, id="cups-restart", title="Restart CUPS")
    written = export_folder([SPOOLER, other], tmp_path / "kb")
    assert [path.name for path in written] == ["cups-restart.md", "print-queue-stuck.md"]
    assert (tmp_path / "kb" / "print-queue-stuck.md").read_bytes() == SPOOLER_FILE.encode()
    assert import_folder(tmp_path / "kb") == (other, SPOOLER)
    export_folder([other, SPOOLER], tmp_path / "again")
    for path in written:
        assert (tmp_path / "again" / path.name).read_bytes() == path.read_bytes()


def test_export_refuses_two_procedures_with_one_id(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="two procedures have the id print-queue-stuck"):
        export_folder([SPOOLER, replace(SPOOLER, version=3)], tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_import_reports_every_bad_file_and_imports_nothing(tmp_path: Path) -> None:
    (tmp_path / "printing").mkdir()
    (tmp_path / "print-queue-stuck.md").write_text(SPOOLER_FILE)
    (tmp_path / "printing" / "print-queue-stuck.md").write_text(SPOOLER_FILE)
    (tmp_path / "broken.md").write_text(SPOOLER_FILE.replace("## Steps", "## Fixes"))
    (tmp_path / "misnamed.md").write_text(SPOOLER_FILE)
    (tmp_path / "latin1.md").write_bytes("caf\xe9".encode("latin-1"))
    (tmp_path / "README.txt").write_text("not a procedure")
    with pytest.raises(KbImportError) as caught:
        import_folder(tmp_path)
    problems = caught.value.problems
    assert len(problems) == 4, problems
    assert problems[0].startswith("broken.md, line 19: expected the '## Steps' heading")
    assert problems[1].startswith("latin1.md: not UTF-8")
    assert problems[2].startswith("misnamed.md: holds procedure print-queue-stuck")
    assert problems[3].startswith(
        "printing/print-queue-stuck.md: procedure print-queue-stuck is also in print-queue-stuck.md"
    )


def test_import_of_an_empty_folder_is_empty_and_of_a_missing_one_refused(tmp_path: Path) -> None:
    assert import_folder(tmp_path) == ()
    with pytest.raises(InvalidArgument, match="is not a folder"):
        import_folder(tmp_path / "missing")
