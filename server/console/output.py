"""Where a command's result goes: rich tables for people, or JSON for scripts (`--json`).

With --json, stdout carries exactly one JSON document, errors included
({"error": {"code": ..., "message": ...}}), so a script never has to parse prose.
"""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from rich.console import Console, RenderableType
from rich.text import Text

from sonde.server.console.errors import CliError
from sonde.server.console.inert import inert
from sonde.server.console.layout import terminal_width


def message_json(message: Message) -> dict[str, Any]:
    """A message as JSON: proto field names, every field present, int64 as numbers."""
    return MessageToDict(
        message,
        preserving_proto_field_name=True,
        always_print_fields_with_no_presence=True,
        unquote_int64_if_possible=True,
    )


def dump_json(data: object) -> str:
    # ensure_ascii keeps control and C1 characters from agents escaped in the JSON text too.
    return json.dumps(data, indent=2, ensure_ascii=True, sort_keys=False)


class _Console(Console):
    def on_broken_pipe(self) -> None:
        # rich would exit 1 itself; the program's entry point ends every program alike
        # (sonde.pipes: exit 141, nothing printed).
        self.quiet = True
        raise BrokenPipeError


class Output:
    """The stdout and stderr of one command, in either JSON or table mode."""

    def __init__(
        self,
        *,
        json_mode: bool,
        stdout: TextIO | None = None,
        stderr: TextIO | None = None,
        force_terminal: bool | None = None,
        width: int | None = None,
    ) -> None:
        self.json_mode = json_mode
        self.stdout = sys.stdout if stdout is None else stdout
        self.stderr = sys.stderr if stderr is None else stderr
        # The terminal's width, 80 when not a terminal (docs/cli.md: tables fit it).
        width = terminal_width() if width is None else width
        self.console = _Console(
            file=self.stdout,
            highlight=False,
            emoji=False,
            force_terminal=force_terminal,
            width=width,
        )
        self.errors = _Console(
            file=self.stderr,
            highlight=False,
            emoji=False,
            force_terminal=force_terminal,
            width=width,
        )

    def show(self, *renderables: RenderableType) -> None:
        """Tables and text for people; nothing in JSON mode."""
        if not self.json_mode:
            self.console.print(*renderables)

    def show_lines(self, *lines: Text) -> None:
        """Lines never wrapped by rich (tokens, commands), so copy and paste gets them whole."""
        if not self.json_mode:
            for line in lines:
                self.console.print(line, soft_wrap=True)

    def emit(self, data: object) -> None:
        """The command's JSON document (JSON mode only)."""
        if self.json_mode:
            print(dump_json(data), file=self.stdout, flush=True)

    def emit_message(self, message: Message) -> None:
        self.emit(message_json(message))

    def result(self, message: Message, *renderables: RenderableType) -> None:
        """The usual ending of a command: the response as JSON, or the renderables."""
        if self.json_mode:
            self.emit_message(message)
        else:
            self.show(*renderables)

    def done(self, sentence: str) -> None:
        """A one-line confirmation for people; `sentence` may hold untrusted text."""
        if not self.json_mode:
            self.console.print(Text(inert(sentence)), soft_wrap=True)

    def error(self, error: CliError) -> None:
        if self.json_mode:
            print(dump_json(error.to_json()), file=self.stdout, flush=True)
            return
        line = Text(f"error ({error.code}): ", style="bold red")
        line.append(inert(error.message))
        self.errors.print(line, soft_wrap=True)
