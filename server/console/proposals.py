"""`sonde scripts propose|proposals|review|withdraw|export-approved`: writing and updating
catalog scripts. A proposal is kept by the server and never sent to an agent; an approved one
is exported for signing with the offline catalog key, then published.

sonde scripts propose DIR [--note TEXT] [--platform P]   a new script or version (l2, admin)
sonde scripts proposals [--state S] [--script ID]        newest first
sonde scripts review ID [--approve | --reject --reason TEXT]   beside the published version
sonde scripts withdraw ID [--reason TEXT]                your own, pending or approved
sonde scripts export-approved --out DIR [--force]        a folder sonde-catalog sign signs

DIR for propose is a platform folder (scripts/linux: every script in it), a catalog folder
with platform folders (scripts/), or any folder with one script and its manifest, whose
platform is --platform or the one its manifest names.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.text import Text

from sonde.catalog.folder import (
    CatalogEntry,
    CatalogFolderError,
    load_catalog_folder,
    load_platform_folder,
)
from sonde.catalog.manifest import ManifestError, Platform, parse_manifest
from sonde.server.console.context import Context
from sonde.server.console.errors import CliError
from sonde.server.console.proposal_export import export_approved
from sonde.server.console.render import text
from sonde.server.console.render_proposal import proposal_detail, proposals_table
from sonde.v1 import console_pb2

STATES = ("pending", "approved", "rejected", "withdrawn", "superseded", "published")
PLATFORMS = tuple(p.value for p in Platform)


def register(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    propose = commands.add_parser(
        "propose", parents=[common], help="propose a new script or version for review (l2)"
    )
    propose.add_argument("folder", type=Path, metavar="DIR", help="its manifest and script")
    propose.add_argument("--note", default="", help="what it changes and why, for the reviewer")
    propose.add_argument("--platform", choices=PLATFORMS, default="", help="a plain folder's")
    propose.set_defaults(handler=run_propose)

    listing = commands.add_parser("proposals", parents=[common], help="proposals, newest first")
    listing.add_argument("--state", choices=STATES, default="", help="only this state")
    listing.add_argument("--script", default="", metavar="ID", help="only this script's")
    listing.set_defaults(handler=run_list)

    review = commands.add_parser(
        "review", parents=[common], help="a proposal beside the published version; decide it"
    )
    review.add_argument("proposal", metavar="ID", help="its number, or script-id@version")
    decision = review.add_mutually_exclusive_group()
    decision.add_argument("--approve", action="store_true", help="approve it for signing")
    decision.add_argument("--reject", action="store_true", help="reject it (needs --reason)")
    review.add_argument("--reason", default="", help="why it is rejected")
    review.set_defaults(handler=run_review)

    withdraw = commands.add_parser("withdraw", parents=[common], help="withdraw your proposal")
    withdraw.add_argument("proposal", metavar="ID", help="its number, or script-id@version")
    withdraw.add_argument("--reason", default="", help="why, for the record")
    withdraw.set_defaults(handler=run_withdraw)

    export = commands.add_parser(
        "export-approved",
        parents=[common],
        help="write the approved proposals as a folder to sign with sonde-catalog (admin)",
    )
    export.add_argument("--out", type=Path, required=True, metavar="DIR", help="where")
    export.add_argument("--force", action="store_true", help="write into a non-empty DIR")
    export.set_defaults(handler=export_approved)


def proposed_entries(folder: Path, platform: str) -> list[CatalogEntry]:
    """What DIR proposes, checked as `sonde-catalog sign` checks a catalog folder."""
    if not folder.is_dir():
        raise CliError("INVALID_ARGUMENT", f"{folder} is not a folder")
    try:
        if folder.name in PLATFORMS and not platform:
            entries = load_platform_folder(folder, Platform(folder.name))
        elif any((folder / name).is_dir() for name in PLATFORMS):
            entries = load_catalog_folder(folder)
        else:
            entries = load_platform_folder(folder, _plain_folder_platform(folder, platform))
    except CatalogFolderError as error:
        raise CliError("INVALID_ARGUMENT", f"nothing proposed: {error}") from None
    if not entries:
        raise CliError(
            "INVALID_ARGUMENT",
            f"{folder} holds no script: put <id>.toml beside its script (<id>.sh, .ps1, .py)",
        )
    return entries


def _plain_folder_platform(folder: Path, given: str) -> Platform:
    if given:
        return Platform(given)
    named: set[Platform] = set()
    for path in sorted(folder.glob("*.toml")):
        try:
            named.update(parse_manifest(path.read_bytes()[: 64 * 1024 + 1]).platforms)
        except (OSError, ManifestError) as error:
            raise CliError("INVALID_ARGUMENT", f"nothing proposed: {path}: {error}") from None
    if len(named) != 1:
        listed = ", ".join(sorted(p.value for p in named)) or "none"
        raise CliError(
            "INVALID_ARGUMENT",
            f"{folder}'s manifests name the platforms {listed}: say which this folder is for "
            "with --platform",
        )
    return named.pop()


def run_propose(args: argparse.Namespace, ctx: Context) -> int:
    entries = proposed_entries(args.folder, args.platform)
    request = console_pb2.ProposeScriptsRequest(
        scripts=[
            console_pb2.ProposedScript(
                platform=e.platform.value,
                script_name=e.script_path.name,
                manifest=e.manifest_bytes,
                script=e.script_bytes,
            )
            for e in entries
        ],
        note=args.note,
    )
    client = ctx.client()
    response = client.call(client.stub.ProposeScripts, request)
    lines = [
        text(f"proposal {p.id}: {p.script_id} {p.version} ({p.risk} risk), pending review")
        for p in response.proposals
    ]
    if response.superseded:
        replaced = ", ".join(str(n) for n in response.superseded)
        lines.append(Text(f"it replaces the older proposal {replaced} (now superseded)"))
    first = response.proposals[0].id if response.proposals else 0
    lines.append(Text(f"another person with catalog.review decides: sonde scripts review {first}"))
    ctx.out.result(response, Text("\n").join(lines))
    return 0


def run_list(args: argparse.Namespace, ctx: Context) -> int:
    state = console_pb2.PROPOSAL_STATE_UNSPECIFIED
    if args.state:
        state = console_pb2.ProposalState.Value(f"PROPOSAL_STATE_{args.state.upper()}")
    client = ctx.client()
    request = console_pb2.ListProposalsRequest(state=state, script_id=args.script)
    response = client.call(client.stub.ListProposals, request)
    ctx.out.result(response, proposals_table(response.proposals))
    return 0


def run_review(args: argparse.Namespace, ctx: Context) -> int:
    client = ctx.client()
    if not (args.approve or args.reject):
        if args.reason:
            raise CliError("INVALID_ARGUMENT", "--reason goes with --reject")
        request = console_pb2.GetProposalRequest(proposal=args.proposal)
        response = client.call(client.stub.GetProposal, request)
        ctx.out.result(response, *proposal_detail(response))
        return 0
    if args.reject and not args.reason.strip():
        raise CliError("INVALID_ARGUMENT", "--reject needs --reason: say what to change")
    if args.approve and args.reason:
        raise CliError("INVALID_ARGUMENT", "--reason goes with --reject, not --approve")
    decision = (
        console_pb2.REVIEW_DECISION_APPROVE if args.approve else console_pb2.REVIEW_DECISION_REJECT
    )
    reviewed = client.call(
        client.stub.ReviewProposal,
        console_pb2.ReviewProposalRequest(
            proposal=args.proposal, decision=decision, reason=args.reason
        ),
    )
    p = reviewed.proposal
    if args.approve:
        done = (
            f"approved proposal {p.id}: {p.script_id} {p.version}; sign it with "
            "sonde scripts export-approved --out DIR, then sonde-catalog sign"
        )
    else:
        done = f"rejected proposal {p.id}: {p.script_id} {p.version}: {p.reason}"
    ctx.out.result(reviewed, text(done))
    return 0


def run_withdraw(args: argparse.Namespace, ctx: Context) -> int:
    client = ctx.client()
    request = console_pb2.WithdrawProposalRequest(proposal=args.proposal, reason=args.reason)
    response = client.call(client.stub.WithdrawProposal, request)
    p = response.proposal
    ctx.out.result(response, text(f"withdrew proposal {p.id}: {p.script_id} {p.version}"))
    return 0
