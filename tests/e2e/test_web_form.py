"""The web channel end to end: `sonde-server run --web-listen` as a real process, a real HTTPS
client (urllib, the server's CA) sending the self-service form; the ticket a technician sees,
the requester's mail over a real SMTP server, a resent form opening no second ticket, refusals
that give back what was typed, markup stored as text and shown inert, the rating link in the
resolve mail answered once, and the per-address limit."""

from __future__ import annotations

import json
import re
import socket
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from sonde.server.settings import DataDir
from tests.support.deployment import Deployment, run
from tests.support.idle_connections import wait_all_closed
from tests.support.smtp_sink import SmtpSink, running_smtp_sink
from tests.support.sshd import free_port

SCRIPT = "<script>alert('owned')</script>"


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    text: str


@dataclass
class WebDesk:
    sonde: Deployment
    sink: SmtpSink
    base: str
    tls: ssl.SSLContext

    def get(self, path: str) -> Answer:
        return self._send(urllib.request.Request(self.base + path))

    def post(self, path: str, fields: dict[str, str] | bytes) -> Answer:
        body = fields if isinstance(fields, bytes) else urllib.parse.urlencode(fields).encode()
        request = urllib.request.Request(
            self.base + path,
            data=body,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        return self._send(request)

    def _send(self, request: urllib.request.Request) -> Answer:
        try:
            with urllib.request.urlopen(request, context=self.tls, timeout=30) as response:
                return Answer(response.status, dict(response.headers), response.read().decode())
        except urllib.error.HTTPError as refused:
            return Answer(refused.code, dict(refused.headers), refused.read().decode())

    def cli(self, *args: str) -> dict[str, Any]:
        done = run("sonde", *args, "--json", env=self.sonde.cli_env(), timeout=60)
        assert done.returncode == 0, done.stderr
        value = json.loads(done.stdout)
        assert isinstance(value, dict)
        return value


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[WebDesk]:
    with running_smtp_sink(tmp_path / "smtp") as sink:
        sonde = Deployment(tmp_path)
        sonde.init()
        port = free_port()
        sonde.start_server(
            "--web-listen", f"127.0.0.1:{port}",
            "--smtp", f"smtp+starttls://127.0.0.1:{sink.port}", "--smtp-ca", str(sink.ca_file),
            "--smtp-from", "helpdesk@example.org",
        )  # fmt: skip
        tls = ssl.create_default_context(cafile=str(sonde.ca_file))
        try:
            yield WebDesk(sonde, sink, f"https://127.0.0.1:{port}", tls)
        finally:
            sonde.stop()


def submission_of(page: str) -> str:
    found = re.search(r'name="submission" value="([A-Za-z0-9_-]+)"', page)
    assert found is not None, page
    return found.group(1)


def form(submission: str, **fields: str) -> dict[str, str]:
    return {
        "submission": submission,
        "name": "Marie Dupont",
        "contact": "marie@example.org",
        "machine": "PC-NOBODY-HAS",
        "description": f"The printer on floor 2 jams {SCRIPT}\nsince this morning",
        **fields,
    }


def body_of(mail: EmailMessage) -> str:
    part = mail.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def test_a_request_from_the_form_to_its_rating(desk: WebDesk) -> None:
    shown = desk.get("/")
    assert shown.status == 200
    assert "default-src 'none'" in shown.headers["Content-Security-Policy"]
    assert shown.headers["Referrer-Policy"] == "no-referrer"
    submission = submission_of(shown.text)

    sent = desk.post("/requests", form(submission))
    assert sent.status == 200, sent.text
    number = int(re.findall(r"ticket #(\d+)", sent.text)[0])
    again = desk.post("/requests", form(submission))  # a reload: the same form again
    assert f"ticket #{number} (we had received this form already)" in again.text

    (ticket,) = desk.cli("ticket", "list")["tickets"]
    assert ticket["id"] == number
    assert ticket["channel"] == "TICKET_CHANNEL_WEB_FORM"
    assert ticket["requester"] == "Marie Dupont <marie@example.org>"
    assert ticket["title"] == f"The printer on floor 2 jams {SCRIPT}"  # stored as typed
    shown_ticket = desk.cli("ticket", "show", str(number))["ticket"]
    assert (
        "Machine as typed (no agent has that name): PC-NOBODY-HAS" in (shown_ticket["description"])
    )
    (opened,) = desk.sink.wait_for(1, timeout=30)
    assert opened.recipients == ("marie@example.org",)
    assert opened.message()["Subject"].startswith(f"[Sonde #{number}] Your request is open")

    # A field over its limit, a contact that is neither: the form comes back with the text.
    long_text = "word " * 900  # 4,499 characters once stripped
    refused = desk.post("/requests", form(submission_of(desk.get("/").text), description=long_text))
    assert refused.status == 422
    assert f"{len(long_text.strip()):,} characters; at most 4,000" in refused.text
    assert "word word word" in refused.text
    wrong = desk.post("/requests", form(submission_of(desk.get("/").text), contact="<b>nope</b>"))
    assert wrong.status == 422
    assert "a mail address (marie@example.org) or a phone number" in wrong.text
    assert "&lt;b&gt;nope&lt;/b&gt;" in wrong.text
    assert "<b>nope</b>" not in wrong.text
    huge = desk.post("/requests", b"description=" + b"x" * (70 * 1024))
    assert huge.status == 413
    assert "over 64 KiB" in huge.text
    assert len(desk.cli("ticket", "list")["tickets"]) == 1

    desk.cli(
        "ticket", "resolve", str(number), "--resolution", "cleared the jam, new fuser",
        "--outcome", "fixed", "--time-spent", "20m",
    )  # fmt: skip
    mails = desk.sink.wait_for(2, timeout=30)
    resolved = body_of(mails[1].message())
    link = re.search(r"https://127\.0\.0\.1:\d+(/rate/[A-Za-z0-9_-]+)", resolved)
    assert link is not None, resolved
    asked = desk.get(link.group(1))
    assert asked.status == 200
    assert f"How did we do on ticket #{number}?" in asked.text
    assert "&lt;script&gt;" in asked.text
    assert SCRIPT not in asked.text
    assert desk.post(link.group(1), {"rating": "6"}).status == 422
    rated = desk.post(link.group(1), {"rating": "4", "comment": "quick, thanks"})
    assert rated.status == 200
    assert f"Your rating of 4/5 for ticket #{number} is recorded" in rated.text
    twice = desk.post(link.group(1), {"rating": "1"})
    assert twice.status == 409
    assert "rated already (4/5)" in twice.text
    assert desk.get("/rate/not-a-link-of-ours").status == 404
    assert desk.post("/rate/not-a-link-of-ours", {"rating": "9"}).status == 404
    timeline = desk.cli("ticket", "show", str(number))["timeline"]
    assert timeline[-1]["kind"] == "TICKET_EVENT_KIND_RATED"
    assert timeline[-1]["body"] == "Rated 4/5 by the requester: quick, thanks"
    report = desk.cli("report", "interventions", "--from", "1d")
    (row,) = report["interventions"]
    assert (row["ticket_id"], row["rating"]) == (number, 4)
    (technician,) = report["by_technician"]
    assert (technician["rated"], technician["rating_sum"]) == (1, 4)


def test_one_address_sends_at_most_five_requests_in_ten_minutes(desk: WebDesk) -> None:
    for _ in range(5):
        page = desk.get("/").text
        assert desk.post("/requests", form(submission_of(page))).status == 200
    page = desk.get("/").text
    limited = desk.post("/requests", form(submission_of(page), description="sixth one here"))
    assert limited.status == 429
    assert "Too many requests from your address" in limited.text
    assert "sixth one here" in limited.text  # what was typed is still there
    assert len(desk.cli("ticket", "list")["tickets"]) == 5


def test_server_json_bounds_the_forms_connections(tmp_path: Path) -> None:
    """connection_limits' web_* names reach the web listener of a real server."""
    sonde = Deployment(tmp_path)
    sonde.init()
    data = DataDir(sonde.data)
    config = data.load_config()
    config.connection_limits = {"web_head_timeout_s": 1, "max_web_connections_per_address": 2}
    data.save_config(config)
    port = free_port()
    sonde.start_server("--web-listen", f"127.0.0.1:{port}")
    tls = ssl.create_default_context(cafile=str(sonde.ca_file))
    try:

        def connect() -> ssl.SSLSocket:
            raw = socket.create_connection(("127.0.0.1", port), timeout=10)
            return tls.wrap_socket(raw, server_hostname="127.0.0.1")

        silent = [connect(), connect()]
        third = connect()
        third.settimeout(10)
        assert third.recv(4096).startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
        third.close()
        assert wait_all_closed(silent, 10) < 10  # no head within 1 s
        style = f"https://127.0.0.1:{port}/style.css"
        with urllib.request.urlopen(style, context=tls, timeout=30) as served:
            assert served.status == 200
    finally:
        sonde.stop()
