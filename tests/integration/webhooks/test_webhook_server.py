"""The delivery as `sonde-server run` runs it: a real server (real auth, its own delivery task)
POSTs a ticket's events to a real HTTPS receiver; and its start refuses another credentials key
once a webhook secret is sealed with the first."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from sonde.server.api.app import SondeServer
from sonde.server.credential_key import CredentialKeyProblem, credential_key_path
from sonde.v1 import console_pb2 as pb
from tests.support.live_server import live_server
from tests.support.webhook_receiver import WebhookReceiver


async def test_a_running_server_sends_ticket_events_and_guards_the_key_that_seals_them(
    tmp_path: Path, db_url: str
) -> None:
    with WebhookReceiver(tmp_path / "receiver") as receiver:
        async with live_server(tmp_path / "data", db_url) as live:
            async with live.console_channel(live.admin_token) as channel:
                console = live.console(channel)
                added = await console.AddWebhook(
                    pb.AddWebhookRequest(url=receiver.url, ca_pem=receiver.ca_pem), timeout=10
                )
                receiver.state.secret = added.secret.encode()
                ticket = (
                    await console.OpenTicket(pb.OpenTicketRequest(title="no network"), timeout=10)
                ).ticket
                await console.CommentTicket(
                    pb.CommentTicketRequest(id=ticket.id, body="cable unplugged"), timeout=10
                )
                deadline = time.monotonic() + 30
                while len(receiver.state.events) < 2:
                    assert time.monotonic() < deadline, "the server's delivery sent nothing"
                    await asyncio.sleep(0.1)
                listed = await console.ListWebhooks(pb.ListWebhooksRequest(), timeout=10)
            assert receiver.kinds() == ["opened", "comment"]
            assert receiver.state.events[1].document["ticket_id"] == ticket.id
            assert listed.webhooks[0].delivered == 2
            assert added.secret not in str(listed)

            key_file = credential_key_path(live.server.options.data.pki.root)
            kept = key_file.read_bytes()
            key_file.write_bytes(os.urandom(32))
            other = SondeServer(live.server.options)
            try:
                with pytest.raises(CredentialKeyProblem, match="1 of the stored"):
                    await other.start()
            finally:
                await other.stop(grace_s=0)
                key_file.write_bytes(kept)
