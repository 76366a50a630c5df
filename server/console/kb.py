"""`sonde kb search|show|add|edit|import|export|suggest`: the knowledge base's resolution
procedures, kept as Markdown files (docs/kb.md), and the ones that fit a ticket."""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import tempfile
from pathlib import Path

from sonde.server.console.arguments import ticket_number
from sonde.server.console.context import Context
from sonde.server.console.errors import CliError
from sonde.server.console.layout import Column, Give, ListTable
from sonde.server.console.render import text
from sonde.v1 import console_pb2

MAX_FILE_BYTES = 256 * 1024


def register(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    kb = commands.add_parser("kb", parents=[common], help="the knowledge base's procedures")
    actions = kb.add_subparsers(dest="kb_command", metavar="COMMAND")
    actions.required = True

    def action(name: str, help_text: str) -> argparse.ArgumentParser:
        return actions.add_parser(name, parents=[common], help=help_text, description=help_text)

    found = action("search", "procedures whose words, ids or findings match")
    found.add_argument("words", nargs="*", metavar="WORDS", help="nothing: every procedure")
    found.set_defaults(handler=run_search)
    show = action("show", "one procedure, as its Markdown")
    show.add_argument("id", metavar="ID")
    show.set_defaults(handler=run_show)
    add = action("add", "save a procedure from its Markdown file (new, or the stored version's)")
    add.add_argument("file", type=Path, metavar="FILE")
    add.set_defaults(handler=run_add)
    edit = action("edit", "open a procedure in $EDITOR and save it")
    edit.add_argument("id", metavar="ID")
    edit.set_defaults(handler=run_edit)
    imported = action("import", "save every FOLDER/*.md (a team's git checkout)")
    imported.add_argument("folder", type=Path, metavar="FOLDER")
    imported.set_defaults(handler=run_import)
    exported = action("export", "write every procedure to FOLDER/ID.md")
    exported.add_argument("folder", type=Path, metavar="FOLDER")
    exported.set_defaults(handler=run_export)
    suggested = action("suggest", "the procedures that fit a ticket, with how they have worked")
    suggested.add_argument("ticket", type=ticket_number, metavar="N")
    suggested.add_argument("--limit", type=int, default=0, metavar="N", help="at most N (5)")
    suggested.set_defaults(handler=run_suggest)


def _read(path: Path) -> str:
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise CliError("INVALID_ARGUMENT", f"{path} is larger than 256 KiB: not a procedure")
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise CliError("INVALID_ARGUMENT", f"cannot read {path}: {error}") from None


def _save(ctx: Context, markdown: str, source: str) -> console_pb2.SaveProcedureResponse:
    client = ctx.client()
    request = console_pb2.SaveProcedureRequest(markdown=markdown, source_name=source)
    response: console_pb2.SaveProcedureResponse = client.call(client.stub.SaveProcedure, request)
    return response


def _said(response: console_pb2.SaveProcedureResponse) -> str:
    procedure = response.procedure
    if not response.changed:
        return f"procedure {procedure.id} unchanged (version {procedure.version})"
    return f"procedure {procedure.id} saved: version {procedure.version}"


def procedures_table(response: console_pb2.ListProceduresResponse) -> ListTable:
    table = ListTable(
        f"{len(response.procedures)} procedures",
        [
            Column("id"),
            Column("title", Give.WRAP),
            Column("category", optional=True),
            Column("findings", optional=True),
            Column("v", optional=True),
        ],
    )
    for hit in response.procedures:
        procedure = hit.procedure
        table.add_row(
            text(procedure.id),
            text(procedure.title),
            text(procedure.category),
            text(", ".join(procedure.finding_ids)),
            text(str(procedure.version)),
        )
    return table


def run_search(args: argparse.Namespace, ctx: Context) -> int:
    client = ctx.client()
    request = console_pb2.ListProceduresRequest(query=" ".join(args.words))
    response = client.call(client.stub.ListProcedures, request)
    if ctx.out.json_mode:
        ctx.out.emit_message(response)
    else:
        ctx.out.show(procedures_table(response))
    return 0


def _get(ctx: Context, procedure_id: str) -> console_pb2.Procedure:
    client = ctx.client()
    response = client.call(
        client.stub.GetProcedure, console_pb2.GetProcedureRequest(id=procedure_id)
    )
    procedure: console_pb2.Procedure = response.procedure
    return procedure


def run_show(args: argparse.Namespace, ctx: Context) -> int:
    procedure = _get(ctx, args.id)
    if ctx.out.json_mode:
        ctx.out.emit_message(procedure)
    else:
        ctx.out.stdout.write(procedure.markdown)
    return 0


def run_add(args: argparse.Namespace, ctx: Context) -> int:
    response = _save(ctx, _read(args.file), args.file.name)
    ctx.out.emit_message(response)
    ctx.out.done(_said(response))
    return 0


def run_edit(args: argparse.Namespace, ctx: Context) -> int:
    procedure = _get(ctx, args.id)
    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    with tempfile.TemporaryDirectory(prefix="sonde-kb-") as folder:
        path = Path(folder) / f"{procedure.id}.md"
        path.write_text(procedure.markdown, encoding="utf-8")
        done = subprocess.run([*shlex.split(editor), str(path)], check=False)
        if done.returncode != 0:
            raise CliError("ABORTED", f"{editor} exited with {done.returncode}: nothing saved")
        response = _save(ctx, _read(path), path.name)
    ctx.out.emit_message(response)
    ctx.out.done(_said(response))
    return 0


def run_import(args: argparse.Namespace, ctx: Context) -> int:
    files = sorted(args.folder.glob("*.md")) if args.folder.is_dir() else []
    if not files:
        raise CliError("INVALID_ARGUMENT", f"{args.folder} holds no .md file")
    saved = unchanged = 0
    for path in files:
        response = _save(ctx, _read(path), path.name)
        saved += response.changed
        unchanged += not response.changed
        if not ctx.out.json_mode:
            ctx.out.done(_said(response))
    ctx.out.done(f"{len(files)} files: {saved} saved, {unchanged} unchanged")
    return 0


def run_export(args: argparse.Namespace, ctx: Context) -> int:
    client = ctx.client()
    response = client.call(client.stub.ListProcedures, console_pb2.ListProceduresRequest())
    args.folder.mkdir(parents=True, exist_ok=True)
    for hit in response.procedures:
        (args.folder / f"{hit.procedure.id}.md").write_text(
            hit.procedure.markdown, encoding="utf-8", newline="\n"
        )
    ctx.out.done(f"{len(response.procedures)} procedures written to {args.folder}")
    return 0


def suggestions_table(response: console_pb2.SuggestProceduresResponse, ticket: int) -> ListTable:
    table = ListTable(
        f"Procedures for ticket #{ticket}",
        [
            Column("id"),
            Column("title", Give.WRAP),
            Column("why", Give.WRAP),
            Column("measured", optional=True),
        ],
    )
    for suggestion in response.suggestions:
        table.add_row(
            text(suggestion.procedure.id),
            text(suggestion.procedure.title),
            text(suggestion.why),
            text(suggestion.success),
        )
    return table


def run_suggest(args: argparse.Namespace, ctx: Context) -> int:
    client = ctx.client()
    request = console_pb2.SuggestProceduresRequest(ticket_id=args.ticket, limit=max(args.limit, 0))
    response = client.call(client.stub.SuggestProcedures, request)
    if ctx.out.json_mode:
        ctx.out.emit_message(response)
    elif not response.suggestions:
        ctx.out.done(f"no procedure fits ticket #{args.ticket}: `sonde kb search WORDS`")
    else:
        ctx.out.show(suggestions_table(response, args.ticket))
    return 0
