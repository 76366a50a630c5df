"""Catalog manifests: what is taken, what is refused and why, and parameter values checked
against the schema (the server and the agent both check with this)."""

from __future__ import annotations

import pytest

from sonde.catalog.manifest import (
    DRY_RUN,
    Interpreter,
    ManifestError,
    Risk,
    parse_manifest,
)

GOOD = """
id = "restart-service"
version = "1.2.0"
title = "Restart a service from the allow-list"
description = "Stops and starts one service."
platforms = ["windows"]
interpreter = "powershell"
risk = "medium"
timeout_s = 120
needs_admin = true
disruptive = true
reboot_required = false
idempotent = true
fixes = ["services.failed"]
verify = ["services.failed"]

[[parameters]]
name = "service"
type = "enum"
choices = ["Spooler", "Dnscache", "W32Time"]
description = "the service"
required = true

[[parameters]]
name = "wait_s"
type = "int"
minimum = 1
maximum = 300
default = 30
description = "how long to wait for it"

[[parameters]]
name = "note"
type = "string"
pattern = "[ -~]{0,80}"
description = "a note for the event log"
secret = true
"""


def test_a_good_manifest_is_read_whole() -> None:
    manifest = parse_manifest(GOOD.encode())
    assert (manifest.id, manifest.version_key, manifest.risk) == (
        "restart-service",
        (1, 2, 0),
        Risk.MEDIUM,
    )
    assert manifest.interpreter is Interpreter.POWERSHELL
    assert [p.name for p in manifest.parameters] == ["service", "wait_s", "note"]
    assert manifest.check_values({"service": "Spooler"}) == {
        "service": "Spooler",
        "wait_s": 30,
        DRY_RUN: False,
    }
    values = manifest.check_values(
        {"service": "W32Time", "note": "hi", "wait_s": "5"}, dry_run=True
    )
    assert values == {"service": "W32Time", "wait_s": 5, "note": "hi", DRY_RUN: True}
    assert manifest.masked(values)["note"] == "***"


@pytest.mark.parametrize(
    ("given", "refusal"),
    [
        ({}, "needs the parameter service"),
        ({"service": "sshd"}, "'sshd' is not one of Spooler, Dnscache, W32Time"),
        ({"service": "Spooler", "wait_s": "0"}, "0 is below 1"),
        ({"service": "Spooler", "wait_s": "301"}, "301 is above 300"),
        ({"service": "Spooler", "wait_s": "3; rm -rf /"}, "is not a whole number"),
        ({"service": "Spooler", "note": "a\0b"}, "a NUL character is not allowed"),
        ({"service": "Spooler", "note": "é" * 3}, "the value given does not match its pattern"),
        ({"service": "Spooler", "colour": "red"}, "has no parameter colour"),
    ],
)
def test_values_outside_the_schema_are_refused_saying_why(
    given: dict[str, str], refusal: str
) -> None:
    with pytest.raises(ManifestError, match=refusal.replace("(", r"\(")):
        parse_manifest(GOOD.encode()).check_values(given)


def _with(old: str, new: str) -> bytes:
    assert old in GOOD
    return GOOD.replace(old, new, 1).encode()


@pytest.mark.parametrize(
    ("data", "refusal"),
    [
        (_with('risk = "medium"', 'risk = "extreme"'), "risk: 'extreme' is not one of low"),
        (_with("needs_admin = true", "needs_admni = true"), "unknown key needs_admni"),
        (_with('id = "restart-service"', 'id = "Restart Service"'), "id 'Restart Service'"),
        (_with('version = "1.2.0"', 'version = "1.2"'), "version '1.2'"),
        (_with("timeout_s = 120", "timeout_s = 0"), "timeout_s must be 1 to"),
        (_with('platforms = ["windows"]', "platforms = []"), "at least one platform"),
        (_with('pattern = "[ -~]{0,80}"\n', ""), "a string parameter needs a pattern"),
        (_with('pattern = "[ -~]{0,80}"', 'pattern = "(["'), "does not compile"),
        (_with('name = "wait_s"', 'name = "dry_run"'), "every script's own parameter"),
        (_with('name = "wait_s"', 'name = "service"'), "a parameter name is given twice"),
        (_with('fixes = ["services.failed"]', 'fixes = ["no spaces"]'), "not a check id"),
        (_with("default = 30", "default = 900"), "900 is above 300"),
        (b"id = [", "not a TOML manifest"),
        (b"\xff\xfe", "not a TOML manifest"),
        (b"x" * 70_000, "at most 65536 bytes"),
    ],
)
def test_a_bad_manifest_is_refused_saying_what_is_wrong(data: bytes, refusal: str) -> None:
    with pytest.raises(ManifestError, match=refusal.replace("(", r"\(").replace("[", r"\[")):
        parse_manifest(data)
