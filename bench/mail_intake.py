"""Mail intake throughput from a mailbox of 1,000, and the time from a mail's arrival to its
ticket (issue 9's benchmark).

Real parts: Debian's dovecot on loopback over IMAPS (tests/support/dovecot.py), SQLite in a
temporary data folder as Sonde ships it, the server's own MailPoller and MailTickets. Figures:

- **fetch only** (the reference): the same 1,000 mails read by UID with ImapMailbox alone,
  nothing parsed or stored: what the mailbox and TLS cost;
- **intake**: MailPoller.round over the 1,000: fetch, parse, take (one audited transaction a
  mail: the ticket, its Message-ID record, the position), mark done; mails per second and the
  ratio to the reference;
- **arrival to ticket**: the poller running at its shortest interval (5 s), a mail appended at
  a random moment, the time until its ticket is readable; SAMPLES of them, p50 and p99. Most of
  it is the wait for the next round, by design: the figure says what a requester waits.

    .venv/bin/python -m bench.mail_intake [--mails 1000] [--samples 10] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

from sqlalchemy import func, select

from bench.stats import Row, format_table
from sonde.server.domain.audited import AuditedWrites
from sonde.server.domain.mail_tickets import MailTickets
from sonde.server.domain.tickets import Tickets
from sonde.server.intake.imap_mailbox import ImapMailbox, MailboxAccount
from sonde.server.intake.mail_poller import MailPoller
from sonde.server.storage.db import Database, migrate
from sonde.server.storage.tables import tickets as tickets_table
from tests.support.dovecot import Dovecot, running_dovecot


def _mail(number: int) -> bytes:
    message = EmailMessage()
    message["From"] = f"User {number} <user{number}@example.org>"
    message["Subject"] = f"Printer {number % 37} on floor {number % 5} prints blank pages"
    message["Message-ID"] = make_msgid(domain="example.org")
    message.set_content("Since this morning, every page comes out blank.\n" * 20)
    return bytes(message)


def _account(server: Dovecot, folder: str) -> MailboxAccount:
    return MailboxAccount(
        host="127.0.0.1",
        port=server.port,
        user=server.user,
        password=server.password,
        folder=folder,
        ca_file=server.ca_file,
    )


def _folder(server: Dovecot, name: str) -> str:
    client = server.connect()
    try:
        client.create(name)
    finally:
        client.logout()
    return name


def _fetch_all(account: MailboxAccount) -> int:
    count, last = 0, 0
    with ImapMailbox(account) as mailbox:
        while True:
            batch = mailbox.fetch_since(last, None)
            count += len(batch.mails)
            if batch.mails:
                last = batch.mails[-1].uid
            if not batch.more:
                return count


async def _ticket_count(db: Database) -> int:
    return int(
        await db.read(
            lambda c: c.execute(select(func.count()).select_from(tickets_table)).scalar_one()
        )
    )


async def _measure(server: Dovecot, mails: int, samples: int) -> dict[str, object]:
    folder = _folder(server, "bench")
    started = time.perf_counter()
    for number in range(mails):
        server.deliver(_mail(number), folder)
    print(f"{mails} mails appended in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    account = _account(server, folder)
    started = time.perf_counter()
    fetched = await asyncio.to_thread(_fetch_all, account)
    fetch_s = time.perf_counter() - started
    assert fetched == mails, fetched

    with tempfile.TemporaryDirectory(prefix="sonde-bench-mail-") as scratch:
        url = f"sqlite+aiosqlite:///{Path(scratch) / 'sonde.db'}"
        migrate(url)
        db = await Database.open(url)
        try:
            writes = AuditedWrites(db)
            tickets = Tickets(db, writes=writes)
            intake = MailTickets(db, writes, tickets)
            started = time.perf_counter()
            report = await MailPoller(account, intake).round()
            intake_s = time.perf_counter() - started
            assert report.opened == mails, report
            print(f"intake of {mails} in {intake_s:.1f} s", file=sys.stderr)

            arrival = _folder(server, "arrival")
            poller = MailPoller(_account(server, arrival), intake, interval_s=5)
            running = asyncio.create_task(poller.run())
            latencies = []
            try:
                for sample in range(samples):
                    await asyncio.sleep(random.uniform(0, 5))
                    before = await _ticket_count(db)
                    server.deliver(_mail(10_000 + sample), arrival)
                    sent = time.perf_counter()
                    while await _ticket_count(db) == before:  # noqa: ASYNC110 (a poll of the db)
                        await asyncio.sleep(0.05)
                    latencies.append(time.perf_counter() - sent)
                    print(f"arrival {sample + 1}: {latencies[-1]:.2f} s", file=sys.stderr)
            finally:
                running.cancel()
        finally:
            await db.close()
    return {
        "mails": mails,
        "fetch_only_per_s": mails / fetch_s,
        "intake_per_s": mails / intake_s,
        "intake_over_fetch": fetch_s / intake_s,
        "arrival_to_ticket_s": latencies,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mails", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with running_dovecot() as server:
        figures = asyncio.run(_measure(server, args.mails, args.samples))
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    latencies = figures["arrival_to_ticket_s"]
    assert isinstance(latencies, list)
    print(
        f"{args.mails} mails: fetch only {figures['fetch_only_per_s']:.0f}/s (reference), "
        f"intake {figures['intake_per_s']:.1f}/s = "
        f"{figures['intake_over_fetch']:.2f}x the reference"
    )
    print(format_table([Row.of("arrival to ticket (s), 5 s interval", latencies)]))
    print(f"mean {statistics.mean(latencies):.2f} s")


if __name__ == "__main__":
    main()
