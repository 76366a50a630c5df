"""Catalog manifests for the runner's tests, written as the catalog writes them (TOML)."""

from __future__ import annotations

from sonde.catalog.manifest import Manifest, parse_manifest

ANY_TEXT = "(?s).*"  # a string parameter that takes anything the schema lets through


def manifest(
    script_id: str = "runner-test",
    *,
    interpreter: str = "bash",
    platforms: tuple[str, ...] = ("linux",),
    timeout_s: int = 60,
    parameters: str = "",
) -> Manifest:
    """A low-risk manifest; `parameters` is TOML ([[parameters]] tables)."""
    listed = ", ".join(f'"{platform}"' for platform in platforms)
    text = f"""
id = "{script_id}"
version = "1.0.0"
title = "A script the runner's tests run"
description = "Exercises the agent's script runner."
platforms = [{listed}]
interpreter = "{interpreter}"
risk = "low"
timeout_s = {timeout_s}
needs_admin = false
disruptive = false
reboot_required = false
idempotent = true
{parameters}
"""
    return parse_manifest(text.encode())


def string_parameter(name: str, pattern: str = ANY_TEXT, *, required: bool = False) -> str:
    return f"""
[[parameters]]
name = "{name}"
type = "string"
pattern = '''{pattern}'''
required = {"true" if required else "false"}
description = "a text"
"""
