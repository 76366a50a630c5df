"""Script proposals on SQLite and PostgreSQL: what propose refuses and why, supersession, the
review beside the published version, who may approve or reject (never the author), withdraw,
publishing marks a proposal, a proposal never runs, and each change audited in its
transaction (a crash before the audit row leaves neither)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy import select

from sonde.catalog.bundle import CatalogSource
from sonde.server.domain.audited import AuditedWrites
from sonde.server.domain.catalog import Catalog
from sonde.server.domain.proposal_intake import MAX_SCRIPTS_PER_PROPOSAL, ProposedFile
from sonde.server.domain.proposal_states import ProposalState
from sonde.server.domain.roles import Principal, Role
from sonde.server.domain.script_proposals import Proposals
from sonde.server.domain.script_runs import ScriptRuns
from sonde.server.domain.wakeups import Wakeups
from sonde.server.errors import Conflict, InvalidArgument, NotFound, PermissionDenied
from sonde.server.storage.db import Database
from sonde.server.storage.tables import audit_log, script_proposals
from tests.support.catalog_bundles import manifest_text, script_text, signed_bundle, source
from tests.unit.domain.builders import SETUP_ADMIN, Clock, enrolled_agent, technician


@dataclass
class Desk:
    db: Database
    clock: Clock
    writes: AuditedWrites
    proposals: Proposals
    catalog: Catalog
    key: ed25519.Ed25519PrivateKey
    bob: Principal  # l2: proposes
    carol: Principal  # l2
    admin: Principal  # reviews
    other_admin: Principal


@pytest.fixture(name="d")
async def desk(db: Database) -> Desk:
    clock = Clock()
    writes = AuditedWrites(db, clock)
    key = ed25519.Ed25519PrivateKey.generate()
    catalog = Catalog(db, key.public_key(), clock, writes=writes)
    await catalog.publish(SETUP_ADMIN, signed_bundle(key, source("clear-temp")))
    return Desk(
        db=db,
        clock=clock,
        writes=writes,
        proposals=Proposals(db, writes, clock),
        catalog=catalog,
        key=key,
        bob=await technician(db, "bob", Role.L2),
        carol=await technician(db, "carol", Role.L2),
        admin=await technician(db, "alice", Role.ADMIN),
        other_admin=await technician(db, "dave", Role.ADMIN),
    )


def proposed(script_id: str, version: str = "1.0.0", **options: str) -> ProposedFile:
    entry = source(script_id, version, **options)
    suffix = ".ps1" if options.get("interpreter") == "powershell" else ".sh"
    return ProposedFile(
        options.get("platform", "linux"), f"{script_id}{suffix}", entry.manifest, entry.script
    )


async def audit_rows(d: Desk, action: str) -> list[tuple[str, dict[str, object], str]]:
    query = (
        select(audit_log.c.actor, audit_log.c.detail, audit_log.c.result)
        .where(audit_log.c.action == action)
        .order_by(audit_log.c.id)
    )
    rows = await d.db.read(lambda c: c.execute(query).all())
    return [(actor, json.loads(detail), result) for actor, detail, result in rows]


async def test_a_new_version_is_kept_with_its_exact_bytes_and_audited(d: Desk) -> None:
    file = proposed("clear-temp", "1.1.0")
    made = await d.proposals.propose(d.bob, [file], note="also clears ~/.cache")
    (proposal,) = made.proposals
    assert (proposal.script_id, proposal.version, proposal.state) == (
        "clear-temp",
        "1.1.0",
        ProposalState.PENDING,
    )
    assert (proposal.proposed_by, proposal.note, proposal.proposed_at) == (
        "bob",
        "also clears ~/.cache",
        d.clock.now,
    )
    query = select(script_proposals.c.manifest, script_proposals.c.script)
    stored = await d.db.read(lambda c: c.execute(query).one())
    assert (bytes(stored.manifest), bytes(stored.script)) == (file.manifest, file.script)
    ((actor, detail, result),) = await audit_rows(d, "script.propose")
    assert (actor, result) == ("bob", "ok")
    assert detail["proposals"] == f"{proposal.id} clear-temp 1.1.0"


@pytest.mark.parametrize(
    ("file", "message"),
    [
        (proposed("clear-temp", "1.0.0"), "not newer than 1.0.0, its newest published version"),
        (proposed("clear-temp", "0.9.0"), "not newer than 1.0.0"),
        (
            ProposedFile("linux", "x.sh", b'id = "x"\nrequried = true\n', b"echo\n"),
            "x.toml: the manifest: unknown key requried",
        ),
        (
            ProposedFile(
                "linux", "clear-temp.ps1", *source("clear-temp", "2.0.0").__dict__.values()
            ),
            "its interpreter is bash, whose scripts end in .sh, but its script is clear-temp.ps1",
        ),
        (
            ProposedFile("linux", "other.sh", *source("clear-temp", "2.0.0").__dict__.values()),
            "its id is clear-temp but its file is named other",
        ),
        (
            ProposedFile(
                "windows", "clear-temp.sh", *source("clear-temp", "2.0.0").__dict__.values()
            ),
            "proposed for windows but its platforms are linux",
        ),
        (
            ProposedFile("linux", "../evil.sh", b"", b""),
            "is not a script's file name",
        ),
        (
            ProposedFile("linux", "big.sh", manifest_text("big").encode(), b"#" * (256 * 1024 + 1)),
            "big.sh: 262145 bytes, a script is at most 262144",
        ),
        (
            ProposedFile(
                "linux",
                "ansi.sh",
                manifest_text("ansi").encode(),
                b"#!/bin/sh\necho ok\n# \x1b[2J\n",
            ),
            "ansi.sh: line 3 holds the control character U+001B",
        ),
        (
            ProposedFile(
                "linux",
                "bidi.sh",
                manifest_text("bidi", title="safe \u202e").encode(),
                script_text("bidi").encode(),
            ),
            "bidi.toml: line 3 holds the control character U+202E",
        ),
        (
            ProposedFile("linux", "latin.sh", manifest_text("latin").encode(), b"echo \xff\n"),
            "latin.sh: not UTF-8 text",
        ),
    ],
)
async def test_propose_refuses_with_a_reason_and_keeps_nothing(
    d: Desk, file: ProposedFile, message: str
) -> None:
    with pytest.raises((InvalidArgument, Conflict), match=re.escape(message)):
        await d.proposals.propose(d.bob, [file])
    assert await d.proposals.list(d.bob) == []
    (*_, (actor, _, result)) = await audit_rows(d, "script.propose")
    assert actor == "bob"
    assert result.startswith("refused: "), result


async def test_a_batch_is_kept_whole_or_not_at_all(d: Desk) -> None:
    good, stale = proposed("flush-dns"), proposed("clear-temp", "1.0.0")
    with pytest.raises(Conflict):
        await d.proposals.propose(d.bob, [good, stale])
    assert await d.proposals.list(d.bob) == []
    with pytest.raises(InvalidArgument, match=re.escape("flush-dns is proposed twice")):
        await d.proposals.propose(d.bob, [good, good])
    with pytest.raises(InvalidArgument, match=f"at most {MAX_SCRIPTS_PER_PROPOSAL} scripts"):
        await d.proposals.propose(d.bob, [good] * (MAX_SCRIPTS_PER_PROPOSAL + 1))
    with pytest.raises(InvalidArgument, match=re.escape("holds no script")):
        await d.proposals.propose(d.bob, [])
    with pytest.raises(InvalidArgument, match=re.escape("the note contains the control character")):
        await d.proposals.propose(d.bob, [good], note="hi\x1b[31m")


async def test_a_newer_proposal_supersedes_the_live_one_and_an_older_is_refused(d: Desk) -> None:
    (first,) = (await d.proposals.propose(d.bob, [proposed("clear-temp", "1.1.0")])).proposals
    await d.proposals.approve(d.admin, str(first.id))
    with pytest.raises(Conflict, match=re.escape("not newer than 1.1.0, approved as proposal")):
        await d.proposals.propose(d.carol, [proposed("clear-temp", "1.1.0")])
    made = await d.proposals.propose(d.carol, [proposed("clear-temp", "1.2.0")])
    assert made.superseded == (first.id,)
    listed = {p.id: p for p in await d.proposals.list(d.bob)}
    assert listed[first.id].state is ProposalState.SUPERSEDED
    assert listed[first.id].superseded_by == made.proposals[0].id
    ((_, detail, _),) = [row for row in await audit_rows(d, "script.propose") if row[2] == "ok"][1:]
    assert detail["superseded"] == str(first.id)
    assert [f.proposal.id for f in (await d.proposals.approved(d.admin))[0]] == []


async def test_the_review_shows_changes_beside_the_published_version(d: Desk) -> None:
    parameters = """
[[parameters]]
name = "days"
type = "int"
minimum = 1
maximum = 30
description = "Days to keep."
default = 7
"""
    file = proposed("clear-temp", "1.1.0", risk="high", parameters=parameters)
    (proposal,) = (await d.proposals.propose(d.bob, [file])).proposals
    review = await d.proposals.review(d.admin, "clear-temp@1.1.0")
    assert review.proposal.id == proposal.id
    assert review.published_version == "1.0.0"
    assert review.risk_raised
    changes = {c.field: c for c in review.changes}
    assert (changes["risk"].published, changes["risk"].proposed) == ("low", "high")
    assert changes["risk"].note == "risk raised: low to high"
    assert not changes["needs_admin"].changed
    assert changes["parameter days"].note == "added"
    assert changes["parameter days"].proposed == "int 1..30, default 7"
    assert '-risk = "low"\n+risk = "high"\n' in review.manifest_diff
    assert review.manifest_diff.startswith("--- clear-temp.toml (published 1.0.0)\n")
    assert "-# clear-temp 1.0.0\n+# clear-temp 1.1.0\n" in review.script_diff
    assert review.may_review
    assert not (await d.proposals.review(d.bob, str(proposal.id))).may_review  # its author
    new = (await d.proposals.propose(d.bob, [proposed("flush-dns")])).proposals[0]
    fresh = await d.proposals.review(d.admin, "flush-dns")
    assert (fresh.proposal.id, fresh.published_version) == (new.id, "")
    assert not fresh.risk_raised
    assert all(not c.changed for c in fresh.changes)
    assert fresh.script_diff.startswith("--- flush-dns.sh (nothing published)\n")
    with pytest.raises(NotFound, match=re.escape("no proposal 'flush-dns@9.9.9'")):
        await d.proposals.review(d.admin, "flush-dns@9.9.9")
    with pytest.raises(InvalidArgument, match=re.escape("X.Y.Z")):
        await d.proposals.review(d.admin, "flush-dns@latest")


async def test_nobody_reviews_their_own_and_only_catalog_review_decides(d: Desk) -> None:
    (mine,) = (await d.proposals.propose(d.admin, [proposed("flush-dns")])).proposals
    with pytest.raises(PermissionDenied, match=re.escape("is your own (alice): nobody reviews")):
        await d.proposals.approve(d.admin, str(mine.id))
    with pytest.raises(
        PermissionDenied, match=re.escape("needs catalog.review (admin); carol is l2")
    ):
        await d.proposals.approve(d.carol, str(mine.id))
    with pytest.raises(InvalidArgument, match=re.escape("the reason is required")):
        await d.proposals.reject(d.other_admin, str(mine.id), "  ")
    assert (await d.proposals.list(d.admin))[0].state is ProposalState.PENDING
    refusals = [row for row in await audit_rows(d, "script.review")]
    assert [(a, r.split(":")[1].strip()) for a, _, r in refusals] == [
        ("alice", "PermissionDenied"),
        ("carol", "PermissionDenied"),
        ("dave", "InvalidArgument"),
    ]
    rejected = await d.proposals.reject(d.other_admin, "flush-dns@1.0.0", "no dry run")
    assert (rejected.state, rejected.reviewed_by, rejected.reason) == (
        ProposalState.REJECTED,
        "dave",
        "no dry run",
    )
    assert rejected.reviewed_at == d.clock.now
    with pytest.raises(Conflict, match=re.escape("is rejected: it cannot be approved")):
        await d.proposals.approve(d.other_admin, str(mine.id))
    *_, (actor, _, result) = await audit_rows(d, "script.review")
    assert (actor, result) == ("dave", "refused: Conflict: " + f"proposal {mine.id} is rejected: "
                               "it cannot be approved (only a pending one is reviewed; "
                               "sonde scripts proposals lists them)")  # fmt: skip
    ok = [row for row in await audit_rows(d, "script.review") if row[2] == "ok"]
    assert ok == [("dave", {"decision": "reject", "proposal": mine.id, "reason": "no dry run",
                            "script": "flush-dns 1.0.0", "risk": "low",
                            "proposed_by": "alice"}, "ok")]  # fmt: skip
    # A rejected version may be proposed again, fixed: it never was signed.
    again = await d.proposals.propose(d.bob, [proposed("flush-dns")])
    assert again.proposals[0].state is ProposalState.PENDING


async def test_only_the_author_withdraws(d: Desk) -> None:
    (mine,) = (await d.proposals.propose(d.bob, [proposed("flush-dns")])).proposals
    with pytest.raises(PermissionDenied, match=re.escape("is bob's: only its author withdraws it")):
        await d.proposals.withdraw(d.admin, str(mine.id))
    withdrawn = await d.proposals.withdraw(d.bob, str(mine.id), "wrong folder")
    assert (withdrawn.state, withdrawn.reason) == (ProposalState.WITHDRAWN, "wrong folder")
    with pytest.raises(Conflict, match=re.escape("is withdrawn: it cannot be approved")):
        await d.proposals.approve(d.admin, str(mine.id))
    assert [r[2] for r in await audit_rows(d, "script.withdraw")][-1] == "ok"


async def test_publishing_the_signed_bytes_marks_it_published_and_other_bytes_supersede(
    d: Desk,
) -> None:
    same = proposed("flush-dns")
    other = proposed("clear-temp", "1.1.0")
    ids = [p.id for p in (await d.proposals.propose(d.bob, [same, other])).proposals]
    for proposal_id in ids:
        await d.proposals.approve(d.admin, str(proposal_id))
    assert [f.proposal.script_id for f in (await d.proposals.approved(d.admin))[0]] == [
        "clear-temp",
        "flush-dns",
    ]
    tampered = CatalogSource(other.manifest, other.script + b"rm -rf /\n")
    await d.catalog.publish(
        d.admin, signed_bundle(d.key, CatalogSource(same.manifest, same.script), tampered)
    )
    states = {p.script_id: p for p in await d.proposals.list(d.admin)}
    assert states["flush-dns"].state is ProposalState.PUBLISHED
    assert states["flush-dns"].ended_at == d.clock.now
    assert states["clear-temp"].state is ProposalState.SUPERSEDED
    assert "published with other bytes" in states["clear-temp"].reason
    assert await d.proposals.approved(d.admin) == ([], 0)
    *_, (_, detail, _) = await audit_rows(d, "catalog.publish")
    assert (detail["proposals_published"], detail["proposals_superseded"]) == (
        str(ids[0]),
        str(ids[1]),
    )


async def test_a_proposed_version_is_never_run(d: Desk) -> None:
    agent = await enrolled_agent(d.db)
    runs = ScriptRuns(d.db, d.writes, Wakeups(), d.clock,
                      dispatch_key=ed25519.Ed25519PrivateKey.generate())  # fmt: skip
    for version_of in (proposed("flush-dns"), proposed("clear-temp", "1.1.0")):
        (p,) = (await d.proposals.propose(d.bob, [version_of])).proposals
        await d.proposals.approve(d.admin, str(p.id))
    with pytest.raises(NotFound, match=re.escape("no script 'flush-dns' is published")):
        await runs.request(d.admin, agent.id, "flush-dns")
    with pytest.raises(
        NotFound, match=re.escape("clear-temp has no version '1.1.0' (published: 1.0.0)")
    ):
        await runs.request(d.admin, agent.id, "clear-temp", version="1.1.0")


async def test_a_crash_before_the_audit_row_keeps_no_proposal(d: Desk) -> None:
    def crash(action: str) -> None:
        raise RuntimeError(f"power cut before {action}'s audit row")

    d.writes.fault_before_audit = crash
    with pytest.raises(RuntimeError):
        await d.proposals.propose(d.bob, [proposed("flush-dns")])
    d.writes.fault_before_audit = None
    assert await d.proposals.list(d.bob) == []
    (p,) = (await d.proposals.propose(d.bob, [proposed("flush-dns")])).proposals
    d.writes.fault_before_audit = crash
    with pytest.raises(RuntimeError):
        await d.proposals.approve(d.admin, str(p.id))
    d.writes.fault_before_audit = None
    assert (await d.proposals.list(d.bob))[0].state is ProposalState.PENDING
    assert [r[2] for r in await audit_rows(d, "script.review")] == []
