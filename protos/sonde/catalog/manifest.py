"""A catalog script's manifest (TOML beside the script): what it is, who may run it, and the
parameters it takes, with the schema both the server and the agent check values against.

Parsing refuses anything it does not know, so that a typo in a manifest ("requried") is an
error and not a silently optional parameter. Parameter values travel as text and are checked
here into their types; a script receives them as data (environment variables on POSIX, a
parameter file on Windows: the agent's runner), never spliced into its source.

Every script also takes `dry_run` (a bool, false unless asked): it says what it would do and
changes nothing. It is not declared in the manifest and no parameter may take its name.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

MAX_MANIFEST_BYTES = 64 * 1024
MAX_SCRIPT_BYTES = 256 * 1024
MAX_VALUE_CHARS = 4096
MAX_PARAMETERS = 32
MAX_TIMEOUT_S = 6 * 3600
DRY_RUN = "dry_run"

SCRIPT_ID = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*")
PARAMETER_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")
VERSION = re.compile(r"(0|[1-9][0-9]{0,5})\.(0|[1-9][0-9]{0,5})\.(0|[1-9][0-9]{0,5})")
CHECK_ID = re.compile(r"[a-z][a-z0-9_]*(?:\.[a-z0-9_]+)+")


class ManifestError(ValueError):
    """The manifest, or a value given for one of its parameters, is refused: says why."""


class Platform(Enum):
    WINDOWS = "windows"
    LINUX = "linux"
    MACOS = "macos"


class Interpreter(Enum):
    POWERSHELL = "powershell"
    BASH = "bash"
    SH = "sh"
    PYTHON = "python"

    @property
    def suffix(self) -> str:
        return {"powershell": ".ps1", "bash": ".sh", "sh": ".sh", "python": ".py"}[self.value]


class Risk(Enum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"

    @property
    def rank(self) -> int:
        return {"low": 1, "medium": 2, "high": 3}[self.value]


class ParameterType(Enum):
    STRING = "string"
    INT = "int"
    BOOL = "bool"
    ENUM = "enum"


ParameterValue = str | int | bool


@dataclass(frozen=True)
class Parameter:
    name: str
    type: ParameterType
    description: str
    required: bool = False
    default: ParameterValue | None = None
    pattern: str | None = None  # string: the whole value must match
    choices: tuple[str, ...] = ()  # enum
    minimum: int | None = None  # int
    maximum: int | None = None  # int
    secret: bool = False  # masked on the ticket, in the audit and in listings

    def check(self, text: str) -> ParameterValue:
        """`text` as this parameter's value; ManifestError saying what is wrong with it."""
        if "\0" in text:
            raise ManifestError(f"parameter {self.name}: a NUL character is not allowed")
        if len(text) > MAX_VALUE_CHARS:
            raise ManifestError(
                f"parameter {self.name}: {len(text)} characters, at most {MAX_VALUE_CHARS}"
            )
        shown = "the value given" if self.secret else repr(text)
        if self.type is ParameterType.BOOL:
            lowered = text.strip().lower()
            if lowered in ("true", "yes", "1"):
                return True
            if lowered in ("false", "no", "0"):
                return False
            raise ManifestError(f"parameter {self.name}: {shown} is not true or false")
        if self.type is ParameterType.INT:
            if not re.fullmatch(r"-?[0-9]{1,18}", text.strip()):
                raise ManifestError(f"parameter {self.name}: {shown} is not a whole number")
            number = int(text)
            if self.minimum is not None and number < self.minimum:
                raise ManifestError(f"parameter {self.name}: {number} is below {self.minimum}")
            if self.maximum is not None and number > self.maximum:
                raise ManifestError(f"parameter {self.name}: {number} is above {self.maximum}")
            return number
        if self.type is ParameterType.ENUM:
            if text not in self.choices:
                raise ManifestError(
                    f"parameter {self.name}: {shown} is not one of {', '.join(self.choices)}"
                )
            return text
        if self.pattern is not None and not re.fullmatch(self.pattern, text):
            raise ManifestError(
                f"parameter {self.name}: {shown} does not match its pattern {self.pattern}"
            )
        return text


@dataclass(frozen=True)
class Manifest:
    id: str
    version: str
    title: str
    description: str
    platforms: tuple[Platform, ...]
    interpreter: Interpreter
    risk: Risk
    timeout_s: int
    needs_admin: bool
    disruptive: bool
    reboot_required: bool
    idempotent: bool
    fixes: tuple[str, ...] = ()  # the finding checks it addresses ("disk.space")
    verify: tuple[str, ...] = ()  # the checks to collect again afterwards
    parameters: tuple[Parameter, ...] = ()
    self_service: bool = False  # the workstation's user may run it (sonde-agent fix)
    user_session: bool = False  # runs in the logged-on user's session (Windows)

    @property
    def version_key(self) -> tuple[int, int, int]:
        major, minor, patch = (int(part) for part in self.version.split("."))
        return major, minor, patch

    def parameter(self, name: str) -> Parameter | None:
        return next((p for p in self.parameters if p.name == name), None)

    def check_values(
        self, given: Mapping[str, str], *, dry_run: bool = False
    ) -> dict[str, ParameterValue]:
        """Every parameter's value (given, or its default), checked against the schema,
        plus dry_run; ManifestError naming the first that is refused and why."""
        unknown = sorted(set(given) - {p.name for p in self.parameters})
        if unknown:
            known = ", ".join(p.name for p in self.parameters) or "none"
            raise ManifestError(
                f"{self.id} has no parameter {', '.join(unknown)} (its parameters: {known})"
            )
        values: dict[str, ParameterValue] = {}
        for parameter in self.parameters:
            if parameter.name in given:
                values[parameter.name] = parameter.check(given[parameter.name])
            elif parameter.default is not None:
                values[parameter.name] = parameter.default
            elif parameter.required:
                raise ManifestError(f"{self.id} needs the parameter {parameter.name}")
        values[DRY_RUN] = dry_run
        return values

    def masked(self, values: Mapping[str, ParameterValue]) -> dict[str, str]:
        """The values as a person may see them: secrets as '***'."""
        shown: dict[str, str] = {}
        for name, value in values.items():
            parameter = self.parameter(name)
            if parameter is not None and parameter.secret:
                shown[name] = "***"
            elif isinstance(value, bool):  # as typed: --param include_caches=false
                shown[name] = "true" if value else "false"
            else:
                shown[name] = str(value)
        return shown


_MANIFEST_KEYS = {
    "id", "version", "title", "description", "platforms", "interpreter", "risk", "timeout_s",
    "needs_admin", "disruptive", "reboot_required", "idempotent", "fixes", "verify",
    "parameters", "self_service", "user_session",
}  # fmt: skip
_REQUIRED_KEYS = _MANIFEST_KEYS - {"fixes", "verify", "parameters", "self_service", "user_session"}
_PARAMETER_KEYS = {
    "name", "type", "description", "required", "default", "pattern", "choices", "minimum",
    "maximum", "secret",
}  # fmt: skip


def parse_manifest(data: bytes) -> Manifest:
    """The manifest in `data` (UTF-8 TOML); ManifestError saying what is wrong, first thing
    first."""
    if len(data) > MAX_MANIFEST_BYTES:
        raise ManifestError(f"a manifest is at most {MAX_MANIFEST_BYTES} bytes, not {len(data)}")
    try:
        table = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise ManifestError(f"not a TOML manifest: {error}") from None
    _known_keys(table, _MANIFEST_KEYS, "the manifest")
    missing = sorted(_REQUIRED_KEYS - set(table))
    if missing:
        raise ManifestError(f"the manifest lacks {', '.join(missing)}")
    script_id = _text(table, "id", pattern=SCRIPT_ID, longest=64)
    parameters = tuple(_parameter(item, n) for n, item in enumerate(_list(table, "parameters")))
    names = [p.name for p in parameters]
    if len(names) != len(set(names)):
        raise ManifestError(f"{script_id}: a parameter name is given twice")
    if len(parameters) > MAX_PARAMETERS:
        raise ManifestError(f"{script_id}: at most {MAX_PARAMETERS} parameters")
    timeout = table["timeout_s"]
    if (
        not isinstance(timeout, int)
        or isinstance(timeout, bool)
        or not 1 <= timeout <= MAX_TIMEOUT_S
    ):
        raise ManifestError(f"{script_id}: timeout_s must be 1 to {MAX_TIMEOUT_S} seconds")
    platforms = tuple(_enum(Platform, p, "platforms") for p in _list(table, "platforms"))
    if not platforms:
        raise ManifestError(f"{script_id}: platforms must name at least one platform")
    return Manifest(
        id=script_id,
        version=_text(table, "version", pattern=VERSION, longest=20),
        title=_text(table, "title", longest=120),
        description=_text(table, "description", longest=4000),
        platforms=platforms,
        interpreter=_enum(Interpreter, table["interpreter"], "interpreter"),
        risk=_enum(Risk, table["risk"], "risk"),
        timeout_s=timeout,
        needs_admin=_bool(table, "needs_admin"),
        disruptive=_bool(table, "disruptive"),
        reboot_required=_bool(table, "reboot_required"),
        idempotent=_bool(table, "idempotent"),
        fixes=tuple(_check_id(c, "fixes") for c in _list(table, "fixes")),
        verify=tuple(_check_id(c, "verify", collector_ok=True) for c in _list(table, "verify")),
        parameters=parameters,
        self_service=_bool(table, "self_service", default=False),
        user_session=_bool(table, "user_session", default=False),
    )


def _parameter(item: Any, index: int) -> Parameter:
    where = f"parameters[{index}]"
    if not isinstance(item, dict):
        raise ManifestError(f"{where} must be a table")
    _known_keys(item, _PARAMETER_KEYS, where)
    for key in ("name", "type", "description"):
        if key not in item:
            raise ManifestError(f"{where} lacks {key}")
    name = _text(item, "name", pattern=PARAMETER_NAME, longest=40)
    if name == DRY_RUN:
        raise ManifestError(f"{where}: {DRY_RUN} is every script's own parameter")
    kind = _enum(ParameterType, item["type"], f"{where}.type")
    choices = tuple(str(c) for c in _list(item, "choices"))
    if (kind is ParameterType.ENUM) != bool(choices):
        raise ManifestError(f"parameter {name}: choices go with type enum, and enum needs them")
    pattern = item.get("pattern")
    if pattern is not None:
        if kind is not ParameterType.STRING or not isinstance(pattern, str):
            raise ManifestError(f"parameter {name}: a pattern goes with type string")
        try:
            re.compile(pattern)
        except re.error as error:
            raise ManifestError(
                f"parameter {name}: its pattern does not compile: {error}"
            ) from None
    elif kind is ParameterType.STRING:
        raise ManifestError(f"parameter {name}: a string parameter needs a pattern")
    bounds = {key: item.get(key) for key in ("minimum", "maximum")}
    for key, bound in bounds.items():
        if bound is not None and (kind is not ParameterType.INT or not isinstance(bound, int)):
            raise ManifestError(f"parameter {name}: {key} goes with type int, as a whole number")
    parameter = Parameter(
        name=name,
        type=kind,
        description=_text(item, "description", longest=1000),
        required=_bool(item, "required", default=False),
        pattern=pattern,
        choices=choices,
        minimum=bounds["minimum"],
        maximum=bounds["maximum"],
        secret=_bool(item, "secret", default=False),
    )
    default = item.get("default")
    if default is None:
        return parameter
    if parameter.required:
        raise ManifestError(f"parameter {name}: a required parameter has no default")
    checked = parameter.check(str(default).lower() if isinstance(default, bool) else str(default))
    return Parameter(**{**parameter.__dict__, "default": checked})


def _known_keys(table: dict[str, Any], known: set[str], where: str) -> None:
    unknown = sorted(set(table) - known)
    if unknown:
        raise ManifestError(f"{where}: unknown key {', '.join(unknown)}")


def _text(
    table: dict[str, Any], key: str, *, pattern: re.Pattern[str] | None = None, longest: int
) -> str:
    value = table.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ManifestError(f"{key} must be a non-empty string")
    if len(value) > longest:
        raise ManifestError(f"{key} is at most {longest} characters")
    if pattern is not None and not pattern.fullmatch(value):
        raise ManifestError(f"{key} {value!r} is not of the form {pattern.pattern}")
    return value


def _bool(table: dict[str, Any], key: str, *, default: bool | None = None) -> bool:
    value = table.get(key, default)
    if not isinstance(value, bool):
        raise ManifestError(f"{key} must be true or false")
    return value


def _list(table: dict[str, Any], key: str) -> list[Any]:
    value = table.get(key, [])
    if not isinstance(value, list):
        raise ManifestError(f"{key} must be a list")
    return value


def _enum(kind: type[Any], value: Any, key: str) -> Any:
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(member.value for member in kind)
        raise ManifestError(f"{key}: {value!r} is not one of {allowed}") from None


def _check_id(value: Any, key: str, *, collector_ok: bool = False) -> str:
    if isinstance(value, str) and (
        CHECK_ID.fullmatch(value) or (collector_ok and SCRIPT_ID.fullmatch(value))
    ):
        return value
    raise ManifestError(f"{key}: {value!r} is not a check id like disk.space")


__all__ = [
    "DRY_RUN",
    "Interpreter",
    "Manifest",
    "ManifestError",
    "Parameter",
    "ParameterType",
    "ParameterValue",
    "Platform",
    "Risk",
    "parse_manifest",
]
