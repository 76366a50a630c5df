"""The assignee is told by mail of a ticket someone else gave them (assign, escalate to them),
never of one they took; the technicians of a level are told at most MAX_TOLD at a time, by
name. SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy import select

from sonde.server.domain.audited import AuditedWrites
from sonde.server.domain.roles import Role
from sonde.server.domain.staff_notifications import MAX_TOLD, staff_to_tell
from sonde.server.domain.ticket_model import TicketLevel
from sonde.server.domain.tickets import Tickets
from sonde.server.domain.users import Users
from sonde.server.storage.db import Database
from sonde.server.storage.tables import outbox
from tests.unit.domain.builders import SETUP_ADMIN, Clock, technician


async def _mails(db: Database) -> list[tuple[str, str, int]]:
    rows = await db.read(lambda c: c.execute(select(outbox).order_by(outbox.c.id)).all())
    return [(row.kind, row.recipient, row.ticket_id) for row in rows]


async def test_the_assignee_is_told_of_what_someone_else_gave_them(db: Database) -> None:
    clock = Clock()
    desk = Tickets(db, clock, writes=AuditedWrites(db, clock), notify=True)
    ann = await technician(db, "ann", Role.L1)
    bob = await technician(db, "bob", Role.L2)
    await technician(db, "cid", Role.L1)  # no mail address: told of nothing
    users = Users(db)
    await users.set_email(SETUP_ADMIN, "ann", "ann@helpdesk.example")
    await users.set_email(SETUP_ADMIN, "bob", "bob@helpdesk.example")

    taken = await desk.open(ann, title="printer jams")
    await desk.assign(ann, taken.id)  # to herself: no mail
    given = await desk.open(ann, title="VPN drops")
    await desk.assign(ann, given.id, "cid")  # cid has no address
    await desk.assign(bob, given.id, "ann")
    escalated = await desk.open(ann, title="disk failing", assignee="ann")
    await desk.escalate(ann, escalated.id, "needs a new disk", "bob")
    assert await _mails(db) == [
        ("assigned", "ann@helpdesk.example", given.id),
        ("assigned", "bob@helpdesk.example", escalated.id),
    ]
    rows = await db.read(lambda c: c.execute(select(outbox.c.body)).all())
    assert "[Sonde #" in rows[0].body
    assert "bob gave it to you." in rows[0].body
    assert "ann escalated it to you: needs a new disk" in rows[1].body
    await desk.assign(bob, escalated.id)  # bob takes what he has: no new mail
    assert len(await _mails(db)) == 2
    opened_for = await desk.open(bob, title="no sound", assignee="ann")
    mine = await desk.open(ann, title="no mail", assignee="ann")  # her own: no mail
    assert (await _mails(db))[2:] == [("assigned", "ann@helpdesk.example", opened_for.id)]
    assert mine.id not in [ticket_id for _, _, ticket_id in await _mails(db)]


async def test_no_mail_when_the_server_sends_none(db: Database) -> None:
    clock = Clock()
    desk = Tickets(db, clock, writes=AuditedWrites(db, clock))
    ann = await technician(db, "ann", Role.L1)
    await technician(db, "bob", Role.L1)
    await Users(db).set_email(SETUP_ADMIN, "bob", "bob@helpdesk.example")
    ticket = await desk.open(ann, title="no sound")
    await desk.assign(ann, ticket.id, "bob")
    assert await _mails(db) == []


async def test_a_level_is_told_at_most_max_told_by_name_and_only_its_own(db: Database) -> None:
    users = Users(db)
    for number in range(MAX_TOLD + 5):
        name = f"l1-{number:02d}"
        await technician(db, name, Role.L1)
        await users.set_email(SETUP_ADMIN, name, f"{name}@helpdesk.example")
    await technician(db, "lena", Role.L2)
    await users.set_email(SETUP_ADMIN, "lena", "lena@helpdesk.example")
    await users.disable(SETUP_ADMIN, "l1-00")

    told = await db.read(lambda c: staff_to_tell(c, None, TicketLevel.L1))
    assert [person.name for person in told] == [f"l1-{n:02d}" for n in range(1, MAX_TOLD + 1)]
    at_l2 = await db.read(lambda c: staff_to_tell(c, None, TicketLevel.L2))
    assert [person.name for person in at_l2] == ["lena"]
