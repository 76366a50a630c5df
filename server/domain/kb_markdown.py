"""Procedures as Markdown files, so a team keeps its knowledge base in git. See docs/kb.md.

A file is a TOML front matter block between two `+++` lines, then `# Title`, a `## Symptoms`
bullet list and a `## Steps` numbered list:

    +++
    id = "print-queue-stuck"
    title = "Documents stuck in the print queue"
    category = "printing/spooler"
    findings = ["print.stuck_jobs"]
    checks = ["print.stuck_jobs", "services.failed"]
    scripts = ["restart-print-spooler"]
    version = 2
    updated_at = 2026-12-02T09:30:00+00:00
    +++

    # Documents stuck in the print queue

    ## Symptoms

    - my printer doesn't print

    ## Steps

    1. Ask which printer and which document.
    2. Restart the spooler; a line of a step
       that goes on is indented like the step's text.

Why TOML: tomllib is in the standard library, its strings, lists, integers and datetimes are
exactly the fields a procedure has, its errors carry a line, and catalog manifests (scripts/)
are TOML already, so a technician meets one syntax. A home-made `key: value` form would need
its own quoting rules for lists and for a title with a colon.

Rules: the heading must repeat the front matter's title (a mismatch is refused rather than one
silently winning). A step's further lines are indented by the width of its marker ("1. " is 3,
"10. " is 4), so a line starting with '#' or '+++' inside a step stays text; blank lines inside
a step are kept. Inline Markdown is kept as written. CRLF line ends are read as LF; files are
written with LF, UTF-8, ending in one newline. Every refusal names the file and the line.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sonde.server.domain.kb_procedure import Procedure
from sonde.server.errors import InvalidArgument

FENCE = "+++"
SYMPTOMS_HEADING = "## Symptoms"
STEPS_HEADING = "## Steps"
MAX_FILE_BYTES = 256 * 1024

_FRONT_MATTER_KEYS = (
    "id",
    "title",
    "category",
    "findings",
    "checks",
    "scripts",
    "version",
    "updated_at",
)
_STEP_MARKER = re.compile(r"(\d{1,3})\. (.*)")
_BULLET = re.compile(r"[-*] (.*)")
_TOML_LINE = re.compile(r"\(at line (\d+), column (\d+)\)")


class ProcedureFileError(InvalidArgument):
    """A procedure file that cannot be read: says which file, which line, and what is wrong."""

    def __init__(self, source_name: str, line: int | None, problem: str) -> None:
        where = f"{source_name}, line {line}" if line is not None else source_name
        super().__init__(f"{where}: {problem}")
        self.source_name = source_name
        self.line = line
        self.problem = problem


class KbImportError(InvalidArgument):
    """A folder import refused whole: every bad file is listed, not only the first."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = tuple(problems)
        listed = "\n".join(f"  {problem}" for problem in self.problems)
        super().__init__(
            f"{len(self.problems)} problem(s) in the knowledge base folder, nothing imported:\n"
            f"{listed}"
        )


def _toml_string(text: str) -> str:
    # A JSON string is a valid TOML basic string: same escapes, unicode left as it is.
    return json.dumps(text, ensure_ascii=False)


def _toml_list(values: tuple[str, ...]) -> str:
    return "[" + ", ".join(_toml_string(value) for value in values) + "]"


def _step_lines(number: int, step: str) -> list[str]:
    marker = f"{number}. "
    first, *rest = step.split("\n")
    indent = " " * len(marker)
    return [marker + first] + [indent + line if line else "" for line in rest]


def to_markdown(procedure: Procedure) -> str:
    """The procedure as the Markdown file described above; the same procedure, the same text."""
    lines = [
        FENCE,
        f"id = {_toml_string(procedure.id)}",
        f"title = {_toml_string(procedure.title)}",
        f"category = {_toml_string(procedure.category)}",
        f"findings = {_toml_list(procedure.finding_ids)}",
        f"checks = {_toml_list(procedure.check_ids)}",
        f"scripts = {_toml_list(procedure.script_ids)}",
        f"version = {procedure.version}",
        f"updated_at = {procedure.updated_at.astimezone(UTC).isoformat()}",
        FENCE,
        "",
        f"# {procedure.title}",
        "",
        SYMPTOMS_HEADING,
        "",
    ]
    lines += [f"- {symptom}" for symptom in procedure.symptoms]
    if procedure.symptoms:
        lines.append("")
    lines += [STEPS_HEADING, ""]
    for number, step in enumerate(procedure.steps, start=1):
        lines += _step_lines(number, step)
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class _FrontMatter:
    fields: dict[str, object]
    body_start: int  # index of the first line after the closing fence


def _front_matter(lines: list[str], source_name: str) -> _FrontMatter:
    if not lines or lines[0] != FENCE:
        raise ProcedureFileError(
            source_name, 1, f"a procedure file begins with a {FENCE} line opening its front matter"
        )
    try:
        closing = lines.index(FENCE, 1)
    except ValueError:
        raise ProcedureFileError(
            source_name, 1, f"the front matter opened here is never closed by a {FENCE} line"
        ) from None
    try:
        fields = tomllib.loads("\n".join(lines[1:closing]))
    except tomllib.TOMLDecodeError as error:
        message = str(error)
        found = _TOML_LINE.search(message)
        line = int(found.group(1)) + 1 if found else 1
        problem = _TOML_LINE.sub("", message).strip()
        raise ProcedureFileError(
            source_name, line, f"the front matter is not valid TOML: {problem}"
        ) from None
    unknown = sorted(set(fields) - set(_FRONT_MATTER_KEYS))
    if unknown:
        raise ProcedureFileError(
            source_name,
            _key_line(lines, closing, unknown[0]),
            f"unknown front matter key {unknown[0]!r}; the keys are "
            + ", ".join(_FRONT_MATTER_KEYS),
        )
    missing = [key for key in _FRONT_MATTER_KEYS if key not in fields]
    if missing:
        raise ProcedureFileError(source_name, 1, f"the front matter lacks {', '.join(missing)}")
    return _FrontMatter(fields=fields, body_start=closing + 1)


def _key_line(lines: list[str], closing: int, key: str) -> int:
    for index in range(1, closing):
        if re.match(rf"\s*{re.escape(key)}\s*=", lines[index]):
            return index + 1
    return 1


class _Fields:
    """The front matter's values, each taken with the type its key must have."""

    def __init__(
        self, fields: dict[str, object], lines: list[str], closing: int, source_name: str
    ) -> None:
        self._fields = fields
        self._lines = lines
        self._closing = closing
        self._source = source_name

    def _refuse(self, key: str, problem: str) -> ProcedureFileError:
        return ProcedureFileError(
            self._source, _key_line(self._lines, self._closing, key), f"{key} {problem}"
        )

    def text(self, key: str) -> str:
        value = self._fields[key]
        if not isinstance(value, str):
            raise self._refuse(key, "must be a quoted string")
        return value

    def texts(self, key: str) -> tuple[str, ...]:
        value = self._fields[key]
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise self._refuse(key, 'must be a list of quoted strings, like ["a", "b"]')
        return tuple(str(item) for item in value)

    def whole(self, key: str) -> int:
        value = self._fields[key]
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._refuse(key, "must be a whole number")
        return value

    def time(self, key: str) -> datetime:
        value = self._fields[key]
        if not isinstance(value, datetime) or value.tzinfo is None:
            raise self._refuse(
                key, "must be a time with its offset, like 2026-12-02T09:30:00+00:00"
            )
        return value


@dataclass
class _Body:
    heading_line: int
    title: str
    symptoms: list[str]
    steps: list[str]


class _BodyReader:
    """The part after the front matter, read line by line with its line numbers."""

    def __init__(self, lines: list[str], start: int, source_name: str) -> None:
        self._lines = lines
        self._at = start
        self._source = source_name

    def _refuse(self, index: int, problem: str) -> ProcedureFileError:
        return ProcedureFileError(self._source, index + 1, problem)

    def _skip_blank(self) -> None:
        while self._at < len(self._lines) and not self._lines[self._at].strip():
            self._at += 1

    def _expect(self, wanted: str, what: str) -> int:
        self._skip_blank()
        if self._at >= len(self._lines):
            raise self._refuse(len(self._lines) - 1, f"the file ends before {what}")
        if self._lines[self._at].rstrip() != wanted:
            raise self._refuse(
                self._at, f"expected {what} here, found {self._lines[self._at][:60]!r}"
            )
        self._at += 1
        return self._at - 1

    def read(self) -> _Body:
        self._skip_blank()
        if self._at >= len(self._lines) or not self._lines[self._at].startswith("# "):
            where = min(self._at, len(self._lines) - 1)
            raise self._refuse(
                where, "expected the title heading ('# Title') after the front matter"
            )
        heading_line = self._at
        title = self._lines[self._at][2:].strip()
        self._at += 1
        self._expect(SYMPTOMS_HEADING, f"the {SYMPTOMS_HEADING!r} heading")
        symptoms = self._symptoms()
        self._expect(STEPS_HEADING, f"the {STEPS_HEADING!r} heading")
        steps = self._steps()
        return _Body(heading_line=heading_line, title=title, symptoms=symptoms, steps=steps)

    def _symptoms(self) -> list[str]:
        symptoms: list[str] = []
        while True:
            self._skip_blank()
            if self._at >= len(self._lines) or self._lines[self._at].startswith("#"):
                return symptoms
            bullet = _BULLET.fullmatch(self._lines[self._at].rstrip())
            if bullet is None:
                raise self._refuse(
                    self._at,
                    "under Symptoms each line is a bullet ('- my printer doesn't print'), "
                    f"found {self._lines[self._at][:60]!r}",
                )
            symptoms.append(bullet.group(1).strip())
            self._at += 1

    def _steps(self) -> list[str]:
        steps: list[str] = []
        self._skip_blank()
        while self._at < len(self._lines):
            line = self._lines[self._at]
            marker = _STEP_MARKER.fullmatch(line)
            if marker is None:
                if line.startswith("#"):
                    raise self._refuse(
                        self._at,
                        f"{line[:60]!r}: the Steps section is the file's last; put notes "
                        "inside a step",
                    )
                raise self._refuse(
                    self._at,
                    f"a step begins with its number ('{len(steps) + 1}. '), found {line[:60]!r}",
                )
            if int(marker.group(1)) != len(steps) + 1:
                raise self._refuse(
                    self._at,
                    f"step {marker.group(1)} comes where step {len(steps) + 1} is expected; "
                    "number the steps 1, 2, 3 in order",
                )
            indent = len(marker.group(1)) + 2
            self._at += 1
            steps.append("\n".join([marker.group(2).rstrip(), *self._continuation(indent)]))
            self._skip_blank()
        return steps

    def _continuation(self, indent: int) -> list[str]:
        """The further lines of a step: indented ones, with the blank lines between them."""
        taken: list[str] = []
        pending_blank = 0
        while self._at < len(self._lines):
            line = self._lines[self._at]
            if not line.strip():
                pending_blank += 1
                self._at += 1
                continue
            if not line.startswith(" "):
                self._at -= pending_blank  # the blank lines end the step, not belong to it
                return taken
            if not line.startswith(" " * indent):
                raise self._refuse(
                    self._at,
                    f"a step's further lines are indented by {indent} spaces, like its text; "
                    f"this one by {len(line) - len(line.lstrip(' '))}",
                )
            taken += [""] * pending_blank + [line[indent:].rstrip()]
            pending_blank = 0
            self._at += 1
        return taken


def _lines_of(text: str, source_name: str) -> list[str]:
    text = text.removeprefix("\ufeff").replace("\r\n", "\n")
    if "\r" in text:
        line = text[: text.index("\r")].count("\n") + 1
        raise ProcedureFileError(
            source_name,
            line,
            "a lone carriage return (CR); save the file with LF or CRLF line ends",
        )
    return text.split("\n")


def from_markdown(text: str, *, source_name: str) -> Procedure:
    """The procedure a Markdown file describes, or ProcedureFileError naming the file, the
    line and what is wrong. `source_name` is what the refusal calls the file."""
    lines = _lines_of(text, source_name)
    front = _front_matter(lines, source_name)
    fields = _Fields(front.fields, lines, front.body_start - 1, source_name)
    title = fields.text("title")
    body = _BodyReader(lines, front.body_start, source_name).read()
    if body.title != title:
        raise ProcedureFileError(
            source_name,
            body.heading_line + 1,
            f"the heading {body.title[:60]!r} differs from the front matter's title "
            f"{title[:60]!r}; make them the same",
        )
    try:
        return Procedure(
            id=fields.text("id"),
            title=title,
            category=fields.text("category"),
            symptoms=tuple(body.symptoms),
            finding_ids=fields.texts("findings"),
            steps=tuple(body.steps),
            check_ids=fields.texts("checks"),
            script_ids=fields.texts("scripts"),
            version=fields.whole("version"),
            updated_at=fields.time("updated_at"),
        )
    except ProcedureFileError:
        raise
    except InvalidArgument as error:
        raise ProcedureFileError(source_name, None, str(error)) from None


def file_name(procedure: Procedure) -> str:
    return f"{procedure.id}.md"


def export_folder(procedures: Iterable[Procedure], folder: Path) -> list[Path]:
    """Writes one `<id>.md` per procedure into `folder` (created if missing), in id order, and
    returns the paths written. Refuses two procedures with one id before writing anything.
    Files already in the folder that name no exported procedure are left alone."""
    by_id: dict[str, Procedure] = {}
    for procedure in procedures:
        if procedure.id in by_id:
            raise InvalidArgument(f"two procedures have the id {procedure.id}: nothing exported")
        by_id[procedure.id] = procedure
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for procedure_id in sorted(by_id):
        path = folder / file_name(by_id[procedure_id])
        path.write_bytes(to_markdown(by_id[procedure_id]).encode("utf-8"))
        written.append(path)
    return written


def _read_one(path: Path, name: str) -> Procedure:
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise ProcedureFileError(
            name, None, f"{size:,} bytes; a procedure file is at most {MAX_FILE_BYTES:,}"
        )
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise ProcedureFileError(name, None, f"not UTF-8 text ({error.reason})") from None
    procedure = from_markdown(text, source_name=name)
    if path.name != file_name(procedure):
        raise ProcedureFileError(
            name,
            None,
            f"holds procedure {procedure.id}, so it must be named {file_name(procedure)}",
        )
    return procedure


def import_folder(folder: Path) -> tuple[Procedure, ...]:
    """Every procedure in the `*.md` files under `folder` (sub-folders included), in id order.

    All or nothing: when any file is bad, or two files hold one id, KbImportError lists every
    problem found, each naming its file (relative to `folder`) and, when known, the line."""
    if not folder.is_dir():
        raise InvalidArgument(f"{folder} is not a folder")
    problems: list[str] = []
    found: dict[str, tuple[str, Procedure]] = {}
    for path in sorted(folder.rglob("*.md")):
        name = path.relative_to(folder).as_posix()
        try:
            procedure = _read_one(path, name)
        except InvalidArgument as error:
            problems.append(str(error))
            continue
        if procedure.id in found:
            problems.append(
                f"{name}: procedure {procedure.id} is also in {found[procedure.id][0]}; "
                "an id names one procedure"
            )
            continue
        found[procedure.id] = (name, procedure)
    if problems:
        raise KbImportError(problems)
    return tuple(found[procedure_id][1] for procedure_id in sorted(found))
