"""`sonde catalog publish` and `sonde scripts`: the signed script catalog as a technician sees it.

sonde catalog publish BUNDLE      load a bundle signed by `sonde-catalog sign` (catalog.manage)
sonde scripts [--all] [--platform linux|windows|macos]   what you may run (--all: every risk)
sonde scripts show ID [--version X.Y.Z]                  its manifest, parameters and versions
sonde scripts stats [--script ID] [--finding CHECK]      which fixes work (script_stats.py)
sonde scripts propose|proposals|review|withdraw|export-approved   writing scripts (proposals.py)
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from rich.text import Text

from sonde.catalog.bundle import MAX_BUNDLE_BYTES
from sonde.server.console import proposals, script_stats
from sonde.server.console.context import Context
from sonde.server.console.errors import CliError
from sonde.server.console.layout import Column, Give, ListTable
from sonde.server.console.render import format_time, text
from sonde.v1 import console_pb2

PLATFORMS = ("linux", "windows", "macos")


def register(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    catalog = commands.add_parser(
        "catalog", parents=[common], help="publish a signed script catalog (admin)"
    )
    catalog_commands = catalog.add_subparsers(dest="catalog_command", metavar="{publish}")
    catalog_commands.required = True
    publish = catalog_commands.add_parser(
        "publish",
        parents=[common],
        help="load a bundle signed by `sonde-catalog sign`: all of it, or nothing (admin)",
    )
    publish.add_argument("bundle", type=Path, metavar="BUNDLE", help="the signed bundle file")
    publish.set_defaults(handler=run_publish)

    scripts = commands.add_parser(
        "scripts", parents=[common], help="the catalog scripts you may run, or one in full"
    )
    scripts.add_argument("--all", action="store_true", help="every risk, marked if not yours")
    scripts.add_argument("--platform", choices=PLATFORMS, default="", help="only this platform's")
    scripts.set_defaults(handler=run_list)
    scripts_commands = scripts.add_subparsers(
        dest="scripts_command",
        metavar="{show,stats,propose,proposals,review,withdraw,export-approved}",
    )
    show = scripts_commands.add_parser(
        "show", parents=[common], help="a script's manifest, parameters and versions"
    )
    show.add_argument("script", metavar="ID", help="the script id, like flush-dns")
    show.add_argument("--version", default="", metavar="X.Y.Z", help="this version (newest)")
    show.set_defaults(handler=run_show)
    proposals.register(scripts_commands, common)
    script_stats.register(scripts_commands, common)


def run_publish(args: argparse.Namespace, ctx: Context) -> int:
    path: Path = args.bundle
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_BUNDLE_BYTES + 1)
    except OSError as error:
        raise CliError(
            "INVALID_ARGUMENT", f"cannot read {path}: {error.strerror or error}"
        ) from None
    if len(data) > MAX_BUNDLE_BYTES:
        raise CliError(
            "INVALID_ARGUMENT", f"{path} is larger than a bundle may be ({MAX_BUNDLE_BYTES} bytes)"
        )
    client = ctx.client()
    response = client.call(
        client.stub.PublishCatalog, console_pb2.PublishCatalogRequest(bundle=data)
    )
    added = [s for s in response.scripts if s.added]
    unchanged = len(response.scripts) - len(added)
    lines = [
        Text(
            f"published {len(added)} of {len(response.scripts)} scripts, "
            f"signed by catalog key {response.key_id[:16]}"
        )
    ]
    if unchanged:
        lines.append(Text(f"{unchanged} unchanged: published before with the same bytes"))
    lines += [Text(f"  added {s.script_id} {s.version}") for s in added]
    ctx.out.result(response, Text("\n").join(lines))
    return 0


def run_list(args: argparse.Namespace, ctx: Context) -> int:
    client = ctx.client()
    request = console_pb2.ListScriptsRequest(platform=args.platform, all_risks=args.all)
    response = client.call(client.stub.ListScripts, request)
    ctx.out.result(response, scripts_table(response.scripts, marked=args.all))
    return 0


def scripts_table(scripts: Sequence[console_pb2.ListedScript], *, marked: bool) -> ListTable:
    table = ListTable(
        "Catalog scripts" + (", every risk" if marked else " you may run"),
        [
            Column("id"),
            Column("version"),
            Column("risk"),
            Column("platforms"),
            Column("title", Give.WRAP),
            Column("you may run", optional=not marked),
        ],
    )
    for listed in scripts:
        script = listed.script
        table.add_row(
            text(script.id),
            text(script.version),
            _risk(script.risk),
            text(",".join(script.platforms)),
            text(script.title),
            Text("yes") if listed.may_run else Text("no", style="yellow"),
        )
    return table


def _risk(risk: str) -> Text:
    return text(risk, style={"high": "bold red", "medium": "yellow"}.get(risk, ""))


def run_show(args: argparse.Namespace, ctx: Context) -> int:
    client = ctx.client()
    request = console_pb2.GetScriptRequest(script_id=args.script, version=args.version)
    response = client.call(client.stub.GetScript, request)
    ctx.out.result(response, *script_detail(response))
    return 0


def _flags(script: console_pb2.CatalogScript) -> str:
    flags = [
        ("needs admin", script.needs_admin),
        ("disruptive", script.disruptive),
        ("reboot required", script.reboot_required),
        ("idempotent", script.idempotent),
        ("self-service", script.self_service),
        ("in the user's session", script.user_session),
    ]
    return ", ".join(name for name, on in flags if on) or "none"


def _parameter(parameter: console_pb2.ScriptParameter) -> str:
    kind = parameter.type
    if parameter.choices:
        kind += " (" + "|".join(parameter.choices) + ")"
    if parameter.pattern:
        kind += f" matching {parameter.pattern}"
    if parameter.has_minimum or parameter.has_maximum:
        low = str(parameter.minimum) if parameter.has_minimum else ""
        high = str(parameter.maximum) if parameter.has_maximum else ""
        kind += f" {low}..{high}"
    facts = [kind]
    if parameter.required:
        facts.append("required")
    if parameter.has_default:
        facts.append(f"default {parameter.default}")
    if parameter.secret:
        facts.append("secret")
    return f"{parameter.name}: {', '.join(facts)}. {parameter.description}"


def script_detail(response: console_pb2.GetScriptResponse) -> list[Text | ListTable]:
    script = response.script
    facts = [
        ("script", f"{script.id} {script.version}: {script.title}"),
        ("risk", script.risk + ("" if response.may_run else " (not yours to run)")),
        ("platforms", f"{', '.join(script.platforms)} ({script.interpreter})"),
        ("timeout", f"{script.timeout_s} s"),
        ("flags", _flags(script)),
        ("fixes", ", ".join(script.fixes) or "-"),
        ("verifies", ", ".join(script.verify) or "-"),
        ("signed by", f"catalog key {script.key_id[:16]}"),
        ("published", f"{format_time(script.published_at)} by {script.published_by}"),
    ]
    lines = [text(f"{name:<10} {value}") for name, value in facts]
    lines.append(text(script.description))
    lines.append(Text("parameters (every script also takes dry_run):"))
    lines += [text(f"  {_parameter(p)}") for p in script.parameters] or [Text("  none")]
    versions = ListTable("Versions, newest first", [Column("version"), Column("published"),
                                                   Column("by", Give.CUT)])  # fmt: skip
    for version in response.versions:
        versions.add_row(
            text(version.version), format_time(version.published_at), text(version.published_by)
        )
    return [Text("\n").join(lines), versions]
