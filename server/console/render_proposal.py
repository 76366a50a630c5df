"""A script proposal as a reviewer reads it: what it is, the fields that matter beside the
published version (what changed marked, a raised risk called out), and unified diffs of the
manifest and the script. Every string from the proposal is inert (sonde.server.console.inert):
the server refuses control characters at intake, and the CLI does not rely on it."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import RenderableType
from rich.text import Text

from sonde.server.console.inert import inert
from sonde.server.console.layout import Column, Give, ListTable
from sonde.server.console.render import format_time, text
from sonde.v1 import console_pb2

_STATE_STYLE = {"pending": "yellow", "approved": "green", "rejected": "red", "published": "bold"}


def state_name(state: console_pb2.ProposalState.ValueType) -> str:
    return console_pb2.ProposalState.Name(state).removeprefix("PROPOSAL_STATE_").lower()


def _risk(risk: str) -> Text:
    return text(risk, style={"high": "bold red", "medium": "yellow"}.get(risk, ""))


def proposals_table(proposals: Sequence[console_pb2.ScriptProposal]) -> ListTable:
    table = ListTable(
        "Script proposals, newest first",
        [
            Column("id", justify="right"),
            Column("script", Give.CUT),
            Column("version"),
            Column("risk"),
            Column("state"),
            Column("by", Give.CUT),
            Column("proposed", optional=True),
            Column("title", Give.CUT, optional=True),
        ],
    )
    for p in proposals:
        state = state_name(p.state)
        table.add_row(
            str(p.id),
            text(p.script_id),
            text(p.version),
            _risk(p.risk),
            Text(state, style=_STATE_STYLE.get(state, "dim")),
            text(p.proposed_by),
            format_time(p.proposed_at),
            text(p.title),
        )
    return table


def _facts(response: console_pb2.GetProposalResponse) -> Text:
    p = response.proposal
    state = state_name(p.state)
    facts = [
        ("proposal", f"{p.id}: {p.script_id} {p.version} for {p.platform}: {p.title}"),
        ("state", state + (f" ({p.reason})" if p.reason else "")),
        ("proposed", f"{format_time(p.proposed_at)} by {p.proposed_by}"),
    ]
    if p.reviewed_by:
        facts.append(("reviewed", f"{format_time(p.reviewed_at)} by {p.reviewed_by}"))
    if p.superseded_by:
        facts.append(("replaced", f"by proposal {p.superseded_by}"))
    published = response.published_version or "nothing: a new script"
    facts.append(("beside", f"published {published}"))
    lines = [text(f"{name:<9} {value}") for name, value in facts]
    if p.note:
        lines.append(text(f"{'note':<9} {p.note}"))
    return Text("\n").join(lines)


def _changes(response: console_pb2.GetProposalResponse) -> ListTable:
    before = response.published_version or "published"
    table = ListTable(
        f"Manifest: published {before} and proposed {response.proposal.version}",
        [
            Column("field"),
            Column(before, Give.WRAP),
            Column(response.proposal.version, Give.WRAP),
            Column("change", Give.WRAP),
        ],
    )
    for change in response.changes:
        style = "bold red" if change.note.startswith("risk raised") else "yellow"
        table.add_row(
            text(change.field),
            text(change.published),
            text(change.proposed, style=style if change.changed else ""),
            text(change.note, style=style) if change.changed else Text(""),
        )
    return table


def diff_text(diff: str) -> Text:
    """A unified diff, each line inert, additions green, removals red, hunks cyan."""
    shown = Text()
    for line in diff.splitlines():
        style = ""
        if line.startswith(("+++", "---")):
            style = "bold"
        elif line.startswith("+"):
            style = "green"
        elif line.startswith("-"):
            style = "red"
        elif line.startswith("@@"):
            style = "cyan"
        shown.append(inert(line), style=style)
        shown.append("\n")
    return shown


def proposal_detail(response: console_pb2.GetProposalResponse) -> list[RenderableType]:
    shown: list[RenderableType] = [_facts(response), _changes(response)]
    if response.risk_raised:
        shown.append(
            Text(
                "The risk is raised: a technician needs a higher permission to run it, and "
                "review it as such.",
                style="bold red",
            )
        )
    for title, diff in (("manifest", response.manifest_diff), ("script", response.script_diff)):
        if diff:
            shown.append(Text(f"The {title}, as a unified diff:", style="bold"))
            shown.append(diff_text(diff))
        else:
            shown.append(Text(f"The {title} is unchanged."))
    p = response.proposal
    if response.may_review:
        shown.append(
            Text(
                f"decide: sonde scripts review {p.id} --approve, or --reject --reason TEXT",
                style="bold",
            )
        )
    return shown
