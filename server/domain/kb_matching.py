"""Which procedures of the knowledge base fit a ticket, and `sonde kb search`. See docs/kb.md.

Ranking, strictest first: the number of the ticket's finding ids a procedure answers, then the
number of distinct words of the ticket's text found in its title and symptoms, then how close
its category is (the same, or one inside the other); ties go by procedure id, so the same
inputs always give the same order. A procedure is suggested only for a finding or a word:
a category alone says too little. Measured success is shown, never ranked on: a procedure used
twice would otherwise jump over one used forty times on the strength of two tickets.

Words are compared normalised: case folded, accents dropped, punctuation as spaces, French and
English stop words left out, a trailing plural 's' dropped ("printers" finds "printer").
"""

from __future__ import annotations

import enum
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sonde.server.domain.kb_procedure import Procedure
from sonde.server.errors import InvalidArgument

# Below this many uses a success share is shown with its counts and marked a small sample.
SMALL_SAMPLE = 10
DEFAULT_SUGGESTIONS = 5

_ENGLISH_STOP_WORDS = (
    "a an and are as at be but by can cannot could do does doesn don didn for from has have "
    "he her his how i if in into is isn it its just me my no not of on or our she so that the "
    "their them then there they this to too up us was wasn we were what when where which who "
    "why will with won would you your any all again always still get got keep keeps anymore"
)
_FRENCH_STOP_WORDS = (
    "au aux avec ce ces cette dans de des du elle en est et eu il ils je la le les leur lui ma "
    "mais me mes mon ne ni nos notre nous on ou par pas plus pour qu que qui sa se ses son sont "
    "sur ta te tes toi ton tu un une vos votre vous plus rien toujours encore marche veut "
    "etre ete ca deja tres fait faire c d j l m n s t y"
)
STOP_WORDS = frozenset(_ENGLISH_STOP_WORDS.split()) | frozenset(_FRENCH_STOP_WORDS.split())


def _without_accents(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(char for char in decomposed if not unicodedata.combining(char))


def _stem(word: str) -> str:
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


def words(text: str) -> frozenset[str]:
    """The words of `text` that matching compares, normalised as the module docstring says."""
    folded = _without_accents(text.casefold())
    spaced = "".join(char if char.isalnum() else " " for char in folded)
    return frozenset(
        _stem(word)
        for word in spaced.split()
        if word not in STOP_WORDS and not (len(word) == 1 and word.isalpha())
    )


@dataclass(frozen=True)
class ProcedureOutcomes:
    """From the closed loop: tickets the procedure was used on, and how many of those were
    resolved with the verification passing."""

    used: int
    resolved_verified: int

    def __post_init__(self) -> None:
        if self.used < 0 or self.resolved_verified < 0:
            raise InvalidArgument("procedure outcomes are counts; a count is not negative")
        if self.resolved_verified > self.used:
            raise InvalidArgument(
                f"{self.resolved_verified} resolved out of {self.used} uses: a procedure "
                "cannot resolve more tickets than it was used on"
            )


@dataclass(frozen=True)
class MeasuredSuccess:
    used: int
    resolved_verified: int

    @property
    def share(self) -> float | None:
        """Resolved with verification over used; None before any use."""
        return self.resolved_verified / self.used if self.used else None

    @property
    def small_sample(self) -> bool:
        return self.used < SMALL_SAMPLE

    def wording(self) -> str:
        """'3 of 4 resolved, verified (small sample)', '31 of 40 resolved, verified (78 %)'."""
        if not self.used:
            return "not used on a ticket yet"
        counts = f"{self.resolved_verified} of {self.used} resolved, verified"
        if self.small_sample:
            return f"{counts} (small sample)"
        return f"{counts} ({round(100 * self.resolved_verified / self.used)} %)"


def measured_success(procedure_id: str, stats: Mapping[str, ProcedureOutcomes]) -> MeasuredSuccess:
    outcomes = stats.get(procedure_id, ProcedureOutcomes(used=0, resolved_verified=0))
    return MeasuredSuccess(used=outcomes.used, resolved_verified=outcomes.resolved_verified)


class CategoryMatch(enum.IntEnum):
    NONE = 0
    RELATED = 1  # one category inside the other: printing and printing/spooler
    SAME = 2


def category_match(ticket_category: str | None, procedure_category: str) -> CategoryMatch:
    if not ticket_category:
        return CategoryMatch.NONE
    if ticket_category == procedure_category:
        return CategoryMatch.SAME
    if procedure_category.startswith(ticket_category + "/") or ticket_category.startswith(
        procedure_category + "/"
    ):
        return CategoryMatch.RELATED
    return CategoryMatch.NONE


@dataclass(frozen=True)
class Suggestion:
    """A procedure offered for a ticket, with why it matched and how it has fared."""

    procedure: Procedure
    matched_finding_ids: tuple[str, ...]
    matched_words: tuple[str, ...]
    category: CategoryMatch
    success: MeasuredSuccess

    def why(self) -> str:
        reasons = []
        if self.matched_finding_ids:
            reasons.append("answers " + ", ".join(self.matched_finding_ids))
        if self.matched_words:
            reasons.append("symptom words " + ", ".join(self.matched_words))
        if self.category is CategoryMatch.SAME:
            reasons.append("same category")
        elif self.category is CategoryMatch.RELATED:
            reasons.append("related category")
        return "; ".join(reasons)


def _procedure_words(procedure: Procedure) -> frozenset[str]:
    found = words(procedure.title)
    for symptom in procedure.symptoms:
        found |= words(symptom)
    return found


def suggest(
    procedures: Iterable[Procedure],
    *,
    finding_ids: Iterable[str],
    text: str,
    category: str | None,
    stats: Mapping[str, ProcedureOutcomes],
    limit: int = DEFAULT_SUGGESTIONS,
) -> list[Suggestion]:
    """The procedures that fit a ticket with these findings (ids of findings the ticket's
    machines raised), this text (subject and description) and category, best first, at most
    `limit`."""
    if limit < 1:
        raise InvalidArgument(f"ask for at least one suggestion, not {limit}")
    wanted_findings = frozenset(finding_ids)
    ticket_words = words(text)
    found: list[Suggestion] = []
    for procedure in procedures:
        matched_findings = tuple(sorted(wanted_findings.intersection(procedure.finding_ids)))
        matched_words = tuple(sorted(ticket_words & _procedure_words(procedure)))
        if not matched_findings and not matched_words:
            continue
        found.append(
            Suggestion(
                procedure=procedure,
                matched_finding_ids=matched_findings,
                matched_words=matched_words,
                category=category_match(category, procedure.category),
                success=measured_success(procedure.id, stats),
            )
        )
    found.sort(
        key=lambda s: (
            -len(s.matched_finding_ids),
            -len(s.matched_words),
            -s.category,
            s.procedure.id,
        )
    )
    return found[:limit]


@dataclass(frozen=True)
class SearchHit:
    procedure: Procedure
    matched_words: tuple[str, ...]  # query words found anywhere in the procedure
    named: bool  # the query names the procedure's id, or one of its finding, check, script ids


def _searchable_words(procedure: Procedure) -> frozenset[str]:
    return (
        _procedure_words(procedure)
        | words(procedure.category)
        | frozenset().union(*(words(step) for step in procedure.steps))
    )


def _named_ids(procedure: Procedure) -> frozenset[str]:
    return frozenset(
        (procedure.id, *procedure.finding_ids, *procedure.check_ids, *procedure.script_ids)
    )


def search(procedures: Iterable[Procedure], query: str) -> list[SearchHit]:
    """`sonde kb search QUERY`: procedures the query names by an id (a procedure, finding,
    check or script id) first, then by how many query words they hold (title, symptoms,
    category and steps), ties by id. An empty query lists every procedure by category, id."""
    everything = list(procedures)
    if not query.strip():
        return [
            SearchHit(procedure=procedure, matched_words=(), named=False)
            for procedure in sorted(everything, key=lambda p: (p.category, p.id))
        ]
    tokens = frozenset(token.lower() for token in query.split())
    query_words = words(query)
    hits = []
    for procedure in everything:
        named = bool(tokens & _named_ids(procedure))
        matched = tuple(sorted(query_words & _searchable_words(procedure)))
        if named or matched:
            hits.append(SearchHit(procedure=procedure, matched_words=matched, named=named))
    hits.sort(key=lambda hit: (not hit.named, -len(hit.matched_words), hit.procedure.id))
    return hits
