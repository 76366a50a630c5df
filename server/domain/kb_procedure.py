"""A resolution procedure of the knowledge base: what a caller says, which findings it answers,
and the steps, checks and catalog scripts that resolve it. See docs/kb.md.

Rules: a Procedure is checked whole when it is built and refuses rather than tidies (no
stripping, no lower-casing), so what a technician wrote is what is stored and what a Markdown
round trip gives back. Ids are slugs; finding and check ids are the agent's check ids
(`print.stuck_jobs`); script ids are catalog ids (`restart-print-spooler`). Lists hold no
duplicates. Storage and the CLI come later; this module knows no database.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from sonde.server.domain.text import checked_text
from sonde.server.domain.ticket_categories import checked_path
from sonde.server.errors import InvalidArgument

MAX_ID_CHARS = 64
MAX_TITLE_CHARS = 200
MAX_SYMPTOM_CHARS = 200
MAX_SYMPTOMS = 30
MAX_STEP_CHARS = 4000
MAX_STEPS = 50
MAX_FINDINGS = 20
MAX_CHECKS = 20
MAX_SCRIPTS = 10

_SLUG = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?")
# The agent's check ids, which are also its findings' ids: print.stuck_jobs, windows.defender.
_CHECK_ID = re.compile(r"[a-z][a-z0-9_]*(?:\.[a-z0-9_]+)+")
_CHECK_ID_MAX = 80


@dataclass(frozen=True)
class Procedure:
    id: str
    title: str
    category: str
    symptoms: tuple[str, ...]
    finding_ids: tuple[str, ...]
    steps: tuple[str, ...]
    check_ids: tuple[str, ...]
    script_ids: tuple[str, ...]
    version: int
    updated_at: datetime

    def __post_init__(self) -> None:
        check_procedure(self)


def _exact(what: str, text: str, *, max_chars: int, multiline: bool) -> None:
    if not isinstance(text, str):
        raise InvalidArgument(f"{what} must be text, got {type(text).__name__}")
    cleaned = checked_text(what, text, max_chars=max_chars, required=True, multiline=multiline)
    if cleaned != text:
        raise InvalidArgument(f"{what} {text[:40]!r} begins or ends with spaces; remove them")


def _checked_slug(what: str, value: str) -> None:
    if not isinstance(value, str) or not _SLUG.fullmatch(value):
        raise InvalidArgument(
            f"{what} {str(value)[:40]!r} is not an id: lower-case letters, digits and dashes, "
            f"at most {MAX_ID_CHARS}, like restart-print-spooler"
        )


def _checked_check_id(what: str, value: str) -> None:
    if not isinstance(value, str) or len(value) > _CHECK_ID_MAX or not _CHECK_ID.fullmatch(value):
        raise InvalidArgument(
            f"{what} {str(value)[:40]!r} is not a check id: dotted lower-case words, "
            "like print.stuck_jobs or windows.defender"
        )


def _checked_list(what: str, values: tuple[str, ...], *, max_count: int) -> None:
    if not isinstance(values, tuple):
        raise InvalidArgument(f"{what} must be a tuple, got {type(values).__name__}")
    if len(values) > max_count:
        raise InvalidArgument(f"{len(values)} {what}; at most {max_count}")
    seen: set[str] = set()
    for value in values:
        key = value.casefold() if isinstance(value, str) else value
        if key in seen:
            raise InvalidArgument(f"{what} lists {str(value)[:40]!r} twice")
        seen.add(key)


def _checked_step(number: int, step: str) -> None:
    what = f"step {number}"
    _exact(what, step, max_chars=MAX_STEP_CHARS, multiline=True)
    for line in step.split("\n"):
        if line != line.rstrip():
            raise InvalidArgument(
                f"{what} has a line ending in spaces ({line[:40]!r}); remove them, "
                "editors drop them and the file would no longer match"
            )


def check_procedure(procedure: Procedure) -> None:
    """Nothing when `procedure` is whole and well formed; InvalidArgument saying what is not."""
    _checked_slug("the procedure id", procedure.id)
    _exact("the title", procedure.title, max_chars=MAX_TITLE_CHARS, multiline=False)
    if not isinstance(procedure.category, str) or checked_path(procedure.category) != (
        procedure.category
    ):
        raise InvalidArgument(
            f"the category {procedure.category!r} must be written as a lower-case path "
            "without surrounding slashes, like printing/spooler"
        )
    _checked_list("symptoms", procedure.symptoms, max_count=MAX_SYMPTOMS)
    for symptom in procedure.symptoms:
        _exact("a symptom", symptom, max_chars=MAX_SYMPTOM_CHARS, multiline=False)
    _checked_list("finding ids", procedure.finding_ids, max_count=MAX_FINDINGS)
    for finding_id in procedure.finding_ids:
        _checked_check_id("the finding id", finding_id)
    if not procedure.symptoms and not procedure.finding_ids:
        raise InvalidArgument(
            f"procedure {procedure.id} names no symptom and no finding id: nothing could "
            "ever suggest it"
        )
    if not isinstance(procedure.steps, tuple) or not procedure.steps:
        raise InvalidArgument(f"procedure {procedure.id} has no step; write at least one")
    if len(procedure.steps) > MAX_STEPS:
        raise InvalidArgument(f"{len(procedure.steps)} steps; at most {MAX_STEPS}")
    for number, step in enumerate(procedure.steps, start=1):
        _checked_step(number, step)
    _checked_list("checks", procedure.check_ids, max_count=MAX_CHECKS)
    for check_id in procedure.check_ids:
        _checked_check_id("the check id", check_id)
    _checked_list("scripts", procedure.script_ids, max_count=MAX_SCRIPTS)
    for script_id in procedure.script_ids:
        _checked_slug("the script id", script_id)
    if (
        isinstance(procedure.version, bool)
        or not isinstance(procedure.version, int)
        or procedure.version < 1
    ):
        raise InvalidArgument(
            f"the version must be a whole number from 1, got {procedure.version!r}"
        )
    if not isinstance(procedure.updated_at, datetime) or procedure.updated_at.utcoffset() != (
        timedelta(0)
    ):
        raise InvalidArgument(
            f"updated_at must be a time in UTC, like 2026-12-02T09:30:00+00:00, "
            f"got {procedure.updated_at!r}"
        )
