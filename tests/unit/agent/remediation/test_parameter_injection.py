"""Parameters reach a bash or sh script as data, byte for byte, and are never run as code.

Property-based: each example is a batch of 31 hostile values (quotes, ;, |, $(), backticks,
newlines, %VAR%, globs, unicode, and commands that would create a canary file if any value
were spliced into source or a command line), run in one real script that writes each
"$SONDE_PARAM_Vn" to a file with printf '%s'. 2 x 60 examples x 31 values: 3,720 values,
besides every fixed attack in its own slot.
"""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sonde.agent.remediation import RunLimits, ScriptCannotRun, run
from sonde.catalog.manifest import ManifestError, ParameterValue
from tests.unit.agent.remediation.manifests import manifest, string_parameter

BATCH = 31  # with out_dir: 32, a manifest's most
EXAMPLES = 60
CANARY = Path(os.environ.get("TMPDIR", "/tmp")) / f"sonde-injection-canary-{os.getpid()}"

PARAMETERS = string_parameter("out_dir", "/[A-Za-z0-9/_.-]+", required=True) + "".join(
    string_parameter(f"v{n}") for n in range(BATCH)
)
SCRIPT = b'cd "$SONDE_PARAM_OUT_DIR" || exit 9\n' + b"".join(
    f"printf '%s' \"$SONDE_PARAM_V{n}\" > {n}\n".encode() for n in range(BATCH)
)

ATTACKS = [
    f"$(touch {CANARY})",
    f"`touch {CANARY}`",
    f"; touch {CANARY}",
    f"| touch {CANARY}",
    f"&& touch {CANARY}",
    f"\ntouch {CANARY}\n",
    f"'; touch {CANARY}; '",
    f'"; touch {CANARY}; "',
    f"${{IFS}}touch${{IFS}}{CANARY}",
    f"%COMSPEC% /c echo > {CANARY}",
    f"& touch {CANARY} &",
    f"$(echo dG91Y2gK | base64 -d) {CANARY}",
    f">{CANARY}",
    "* ? [a-z] ** ~ ~root {a,b}",
    "%PATH% %SONDE_PARAM_V0% $HOME ${HOME} $SONDE_PARAM_V1",
    "-n",
    "-e \\x41\\n",
    "--",
    "",
    " leading and trailing spaces ",
    "\t\r\n\x1b[31m\x7f",
    "ünïcødé ✓ 日本語 😀 \u202e \u200b",
    "\\",
    "\\n\\0\\x00",
    "'\"`$;|&<>(){}[]!#*?~=%^",
]

hostile_text = st.text(
    alphabet=st.one_of(
        st.sampled_from(list("'\"`$;|&<>(){}[]!#*?~=%^\\\n\r\t -_/.")),
        st.characters(codec="utf-8", exclude_characters="\0"),
    ),
    max_size=40,
)
value = st.one_of(st.sampled_from(ATTACKS), hostile_text, st.builds("".join, st.lists(
    st.sampled_from(ATTACKS), min_size=2, max_size=4
)))  # fmt: skip
batch = st.lists(value, min_size=BATCH, max_size=BATCH)

# Each example starts a real script: no per-example deadline on 2 loaded cores.
SLOW_OK = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def _run_batch(interpreter: str, values: list[str], out_dir: Path) -> None:
    entry = manifest(f"injection-{interpreter}", interpreter=interpreter, parameters=PARAMETERS)
    given_values = {f"v{n}": text for n, text in enumerate(values)}
    checked = entry.check_values({"out_dir": str(out_dir), **given_values})
    outcome = asyncio.run(run(entry, SCRIPT, checked, limits=RunLimits(timeout_s=60)))
    assert outcome.exit_code == 0, outcome.stderr
    for n, text in enumerate(values):
        assert (out_dir / str(n)).read_bytes() == text.encode("utf-8"), f"value {n}: {text!r}"
        (out_dir / str(n)).unlink()
    assert not CANARY.exists(), f"a value ran as code: {CANARY} appeared"


@pytest.mark.slow
@pytest.mark.parametrize("interpreter", ["bash", "sh"])
@SLOW_OK
@given(values=batch)
def test_values_arrive_byte_for_byte_and_never_run(
    interpreter: str, values: list[str], tmp_path: Path
) -> None:
    _run_batch(interpreter, values, tmp_path)


def test_every_attack_arrives_whole(tmp_path: Path) -> None:
    """The fixed attacks, each in its own slot, whatever hypothesis draws."""
    values = (ATTACKS * 2)[:BATCH]
    for interpreter in ("bash", "sh"):
        _run_batch(interpreter, values, tmp_path)


NUL_ENTRY = manifest("nul-refused", parameters=string_parameter("text"))


@settings(max_examples=1000, deadline=None)
@given(before=st.text(max_size=20), after=st.text(max_size=20))
def test_nul_is_refused_before_anything_runs(before: str, after: str) -> None:
    with pytest.raises(ManifestError, match=r"parameter text: a NUL character is not allowed"):
        NUL_ENTRY.check_values({"text": before + "\0" + after})


def test_the_runner_refuses_a_nul_that_skipped_the_schema(tmp_path: Path) -> None:
    canary = tmp_path / "ran"
    script = f"touch {canary}\n".encode()
    values: dict[str, ParameterValue] = {"text": "a\0b", "dry_run": False}
    with pytest.raises(ScriptCannotRun, match="NUL"):
        asyncio.run(run(NUL_ENTRY, script, values))
    assert not canary.exists()


SCHEMA = manifest(
    "schema-refusals",
    parameters=string_parameter("service_name", "[A-Za-z0-9_.-]{1,64}", required=True)
    + """
[[parameters]]
name = "days"
type = "int"
minimum = 1
maximum = 90
description = "how many days"

[[parameters]]
name = "scope"
type = "enum"
choices = ["user", "machine"]
description = "whose caches"

[[parameters]]
name = "force"
type = "bool"
description = "even if in use"
""",
)


@settings(max_examples=2000, deadline=None)
@given(text=st.one_of(st.text(min_size=1, max_size=30), st.sampled_from(ATTACKS)))
def test_a_value_outside_the_pattern_is_refused_and_named(text: str) -> None:
    if re.fullmatch("[A-Za-z0-9_.-]{1,64}", text):
        assert SCHEMA.check_values({"service_name": text})["service_name"] == text
        return
    refusal = "a NUL character" if "\0" in text else "does not match its pattern"
    with pytest.raises(ManifestError, match=f"(?s)parameter service_name: .*{refusal}"):
        SCHEMA.check_values({"service_name": text})


@pytest.mark.parametrize(
    ("given_values", "refusal"),
    [
        ({}, "needs the parameter service_name"),
        ({"service_name": "Spooler", "days": "0"}, "parameter days: 0 is below 1"),
        ({"service_name": "Spooler", "days": "91"}, "parameter days: 91 is above 90"),
        ({"service_name": "Spooler", "days": "7; rm -rf /"}, "is not a whole number"),
        ({"service_name": "Spooler", "scope": "$(id)"}, "is not one of user, machine"),
        ({"service_name": "Spooler", "force": "maybe"}, "is not true or false"),
        ({"service_name": "Spooler", "command": "x"}, "has no parameter command"),
        ({"service_name": "a" * 5000}, "at most 4096"),
    ],
)
def test_schema_violations_are_refused_with_the_reason(
    given_values: dict[str, str], refusal: str
) -> None:
    with pytest.raises(ManifestError, match=refusal):
        SCHEMA.check_values(given_values)


@pytest.mark.parametrize(
    ("values", "refusal"),
    [
        ({"service_name": "Spooler"}, "lack dry_run"),
        ({"service_name": "Spooler; id", "dry_run": False}, "does not match"),
        ({"service_name": "Spooler", "days": 500, "dry_run": False}, "is above 90"),
        ({"service_name": "Spooler", "other": "x", "dry_run": False}, "has no parameter other"),
        ({"service_name": "Spooler", "days": "7", "dry_run": False}, "not the ones"),
    ],
)
def test_the_runner_refuses_values_its_manifest_would_not_give(
    values: dict[str, str | int | bool], refusal: str, tmp_path: Path
) -> None:
    canary = tmp_path / "ran"
    with pytest.raises(ScriptCannotRun, match=refusal):
        asyncio.run(run(SCHEMA, f"touch {canary}\n".encode(), values))
    assert not canary.exists()
