from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sonde.agent.checks import CHECKS
from sonde.server.domain.kb_matching import (
    CategoryMatch,
    MeasuredSuccess,
    ProcedureOutcomes,
    search,
    suggest,
    words,
)
from sonde.server.domain.kb_procedure import Procedure
from sonde.server.errors import InvalidArgument

T0 = datetime(2026, 12, 2, 9, 30, tzinfo=UTC)


def _procedure(
    procedure_id: str,
    title: str,
    category: str,
    symptoms: tuple[str, ...] = (),
    findings: tuple[str, ...] = (),
    scripts: tuple[str, ...] = (),
    step: str = "Follow the checks.",
) -> Procedure:
    return Procedure(
        id=procedure_id,
        title=title,
        category=category,
        symptoms=symptoms,
        finding_ids=findings,
        steps=(step,),
        check_ids=findings,
        script_ids=scripts,
        version=1,
        updated_at=T0,
    )


SPOOLER = _procedure(
    "print-queue-stuck",
    "Documents stuck in the print queue",
    "printing/spooler",
    ("my printer doesn't print", "l'imprimante n'imprime plus"),
    ("print.stuck_jobs",),
    ("restart-print-spooler", "restart-cups"),
    step="Restart the spooler, then print a test page.",
)
DNS = _procedure(
    "dns-not-resolving",
    "Sites do not open: names do not resolve",
    "network/dns",
    ("websites don't load", "internet ne marche pas"),
    ("network.dns", "network.proxy"),
    ("flush-dns-cache-windows", "flush-dns-cache-linux"),
)
DISK = _procedure(
    "disk-full",
    "The disk is full",
    "storage/disk",
    ("no space left on the disk", "le disque est plein"),
    ("disk.space", "disk.inodes"),
    ("free-disk-space", "clear-temp-files-windows"),
)
PRINTER_DRIVER = _procedure(
    "printer-driver",
    "A printer prints garbage",
    "printing/drivers",
    ("the printer prints strange characters",),
)
ALL = (SPOOLER, DNS, DISK, PRINTER_DRIVER)
NO_STATS: dict[str, ProcedureOutcomes] = {}


def test_the_procedures_here_use_real_check_ids() -> None:
    known = {check_id for check_id, _ in CHECKS}
    for procedure in ALL:
        assert set(procedure.finding_ids) <= known


def test_a_finding_id_outranks_any_number_of_words() -> None:
    found = suggest(
        ALL,
        finding_ids=["disk.space"],
        text="my printer prints strange characters, the queue too",
        category="printing",
        stats=NO_STATS,
    )
    assert [s.procedure.id for s in found] == ["disk-full", "printer-driver", "print-queue-stuck"]
    assert found[0].matched_finding_ids == ("disk.space",)
    assert found[0].matched_words == ()
    assert found[1].matched_words == ("character", "print", "printer", "strange")
    assert found[1].category is CategoryMatch.RELATED
    assert found[0].why() == "answers disk.space"


def test_french_words_match_without_accents_or_stop_words() -> None:
    found = suggest(
        ALL, finding_ids=[], text="Le DISQUE est PLEIN !", category=None, stats=NO_STATS
    )
    assert [s.procedure.id for s in found] == ["disk-full"]
    assert found[0].matched_words == ("disque", "plein")
    assert words("L'imprimante n'imprime plus, ça ne marche pas") == {"imprimante", "imprime"}
    assert words("Écran bleu, éCRAN BLEU") == {"ecran", "bleu"}


def test_the_category_breaks_a_tie_of_words_then_the_id_does() -> None:
    twin = _procedure("a-printer-twin", "A printer prints garbage", "mail", ("printer",))
    found = suggest(
        (*ALL, twin), finding_ids=[], text="printer", category="printing/drivers", stats=NO_STATS
    )
    assert [(s.procedure.id, s.category) for s in found] == [
        ("printer-driver", CategoryMatch.SAME),
        ("a-printer-twin", CategoryMatch.NONE),
        ("print-queue-stuck", CategoryMatch.NONE),  # a sibling category is not a related one
    ]
    found = suggest(
        (*ALL, twin), finding_ids=[], text="printer", category="printing", stats=NO_STATS
    )
    assert [(s.procedure.id, s.category) for s in found] == [
        ("print-queue-stuck", CategoryMatch.RELATED),
        ("printer-driver", CategoryMatch.RELATED),
        ("a-printer-twin", CategoryMatch.NONE),
    ]


def test_a_category_alone_suggests_nothing() -> None:
    found = suggest(
        ALL, finding_ids=["cpu.saturation"], text="slow", category="printing", stats=NO_STATS
    )
    assert found == []


def test_measured_success_says_how_many_of_how_many() -> None:
    stats = {
        "print-queue-stuck": ProcedureOutcomes(used=4, resolved_verified=3),
        "dns-not-resolving": ProcedureOutcomes(used=40, resolved_verified=31),
    }
    found = suggest(
        ALL,
        finding_ids=["print.stuck_jobs", "network.dns"],
        text="",
        category=None,
        stats=stats,
    )
    by_id = {s.procedure.id: s.success for s in found}
    assert by_id["print-queue-stuck"].wording() == "3 of 4 resolved, verified (small sample)"
    assert by_id["print-queue-stuck"].share == 0.75
    assert by_id["print-queue-stuck"].small_sample
    assert by_id["dns-not-resolving"].wording() == "31 of 40 resolved, verified (78 %)"
    assert not by_id["dns-not-resolving"].small_sample
    assert MeasuredSuccess(used=0, resolved_verified=0).wording() == "not used on a ticket yet"
    assert MeasuredSuccess(used=0, resolved_verified=0).share is None
    # Success is shown, not ranked on: the ties go by id.
    assert [s.procedure.id for s in found] == ["dns-not-resolving", "print-queue-stuck"]


def test_outcomes_that_cannot_be_are_refused() -> None:
    with pytest.raises(InvalidArgument, match="more tickets than it was used on"):
        ProcedureOutcomes(used=2, resolved_verified=3)
    with pytest.raises(InvalidArgument, match="not negative"):
        ProcedureOutcomes(used=-1, resolved_verified=0)
    with pytest.raises(InvalidArgument, match="at least one"):
        suggest(ALL, finding_ids=[], text="x", category=None, stats=NO_STATS, limit=0)


def test_search_puts_a_named_id_first_then_words() -> None:
    hits = search(ALL, "restart-cups printer")
    assert [(hit.procedure.id, hit.named) for hit in hits] == [
        ("print-queue-stuck", True),
        ("printer-driver", False),
    ]
    assert [hit.procedure.id for hit in search(ALL, "network.dns")] == ["dns-not-resolving"]
    assert [hit.procedure.id for hit in search(ALL, "test page")] == ["print-queue-stuck"]
    assert [hit.procedure.id for hit in search(ALL, "  ")] == [
        "dns-not-resolving",
        "printer-driver",
        "print-queue-stuck",
        "disk-full",
    ]
    assert search(ALL, "bluetooth") == []


_REAL_CHECKS = [check_id for check_id, _ in CHECKS]
_WORDS = ["printer", "imprimante", "disque", "plein", "queue", "dns", "slow", "écran", "the"]


@st.composite
def _library(draw: st.DrawFn) -> list[Procedure]:
    count = draw(st.integers(min_value=0, max_value=8))
    procedures = []
    for index in range(count):
        symptoms = tuple(draw(st.sets(st.sampled_from(_WORDS), min_size=1, max_size=3)))
        procedures.append(
            _procedure(
                f"procedure-{index}",
                draw(st.sampled_from(_WORDS)),
                draw(st.sampled_from(["printing", "printing/spooler", "storage", "network/dns"])),
                symptoms,
                tuple(draw(st.sets(st.sampled_from(_REAL_CHECKS), max_size=3))),
            )
        )
    return procedures


_TICKETS = st.tuples(
    st.lists(st.sampled_from(_REAL_CHECKS), max_size=3),
    st.lists(st.sampled_from(_WORDS), max_size=4).map(" ".join),
    st.sampled_from([None, "printing", "storage/disk", "network/dns"]),
)


@settings(max_examples=150, deadline=None)
@given(_library(), _TICKETS, st.randoms(use_true_random=False))
def test_suggestions_are_ranked_and_do_not_depend_on_the_input_order(
    library: list[Procedure], ticket: tuple[list[str], str, str | None], shuffler: object
) -> None:
    finding_ids, text, category = ticket
    found = suggest(
        library, finding_ids=finding_ids, text=text, category=category, stats=NO_STATS, limit=50
    )
    shuffled = list(library)
    shuffler.shuffle(shuffled)  # type: ignore[attr-defined]
    again = suggest(
        shuffled, finding_ids=finding_ids, text=text, category=category, stats=NO_STATS, limit=50
    )
    assert again == found
    keys = [
        (-len(s.matched_finding_ids), -len(s.matched_words), -s.category, s.procedure.id)
        for s in found
    ]
    assert keys == sorted(keys)
    ticket_words = words(text)
    for suggestion in found:
        assert set(suggestion.matched_finding_ids) == set(finding_ids) & set(
            suggestion.procedure.finding_ids
        )
        assert set(suggestion.matched_words) <= ticket_words
        assert suggestion.matched_finding_ids or suggestion.matched_words
    suggested = {s.procedure.id for s in found}
    for procedure in library:
        if set(finding_ids) & set(procedure.finding_ids):
            assert procedure.id in suggested
    assert found[:2] == suggest(
        library, finding_ids=finding_ids, text=text, category=category, stats=NO_STATS, limit=2
    )


_PLAIN = str.maketrans("éèêÉÈÊàÀçÇ", "eeeeeeaacc")


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet="abdeilmnoprstuzABDEÉÈÊéèêàÀçÇ ,.;:'!?-", max_size=40))
def test_words_ignore_case_accents_and_punctuation(text: str) -> None:
    plain = "".join(c if c.isalpha() else " " for c in text.translate(_PLAIN).lower())
    assert words(text) == words(plain)
    assert all(word.isalpha() and word == word.lower() and word.isascii() for word in words(text))
