"""parse_mail on every bad input issue 9 lists, and properties over random bytes and random
messages: it never raises, and always gives a subject and a sender or "unknown"."""

from __future__ import annotations

import hashlib
from email.message import EmailMessage

from hypothesis import given, settings
from hypothesis import strategies as st

from sonde.server.intake.mail_message import (
    NO_SUBJECT,
    html_to_text,
    parse_mail,
    safe_file_name,
    ticket_id_in,
    ticket_reference,
)

MIB = 1024 * 1024


def mail(
    subject: str | None = "Printer jams",
    body: str = "The printer on floor 2 jams.",
    sender: str = "Ada Lovelace <ada@example.org>",
    **headers: str,
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = "helpdesk@example.org"
    if subject is not None:
        message["Subject"] = subject
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content(body)
    return message


def test_a_plain_mail_gives_sender_subject_body_and_message_id() -> None:
    got = parse_mail(bytes(mail(Message_ID="<abc@example.org>")))
    assert got.sender_address == "ada@example.org"
    assert got.sender_name == "Ada Lovelace"
    assert got.subject == "Printer jams"
    assert got.body == "The printer on floor 2 jams."
    assert got.message_id == "<abc@example.org>"
    assert got.ticket_id is None
    assert got.warnings == ()


def test_the_reference_is_found_behind_re_and_fwd_prefixes() -> None:
    subject = f"Re: Fwd: RE: {ticket_reference(17)} Printer jams"
    got = parse_mail(bytes(mail(subject, In_Reply_To="<n1@sonde>", References="<n0@x> <n1@sonde>")))
    assert got.ticket_id == 17
    assert got.in_reply_to == ("<n1@sonde>",)
    assert got.references == ("<n0@x>", "<n1@sonde>")
    assert ticket_id_in("AW: [sonde # 42] x") == 42
    assert ticket_id_in("[Sonde #notanumber] x") is None


def test_an_unknown_or_absent_reference_is_a_new_ticket() -> None:
    assert parse_mail(bytes(mail("Re: Printer jams"))).ticket_id is None
    # An id the helpdesk never gave is still read; the caller opens a new ticket for it.
    assert parse_mail(bytes(mail("Re: [Sonde #999999] x"))).ticket_id == 999999


def test_rfc2047_subject_is_decoded() -> None:
    raw = b"From: a@b.example\r\nSubject: =?utf-8?b?w4ljcmFuIG5vaXI=?=\r\n\r\nx\r\n"
    assert parse_mail(raw).subject == "Écran noir"


def test_no_subject_takes_the_first_line_of_the_body() -> None:
    got = parse_mail(bytes(mail(None, body="\n\n  VPN drops every hour\nsince Monday")))
    assert got.subject == "VPN drops every hour"
    assert any("no subject" in warning for warning in got.warnings)


def test_no_subject_and_no_body_is_no_subject() -> None:
    got = parse_mail(b"From: a@b.example\r\n\r\n")
    assert got.subject == NO_SUBJECT
    assert got.body == ""


def test_header_injection_in_the_subject_is_one_line() -> None:
    raw = (
        b"From: a@b.example\r\n"
        b"Subject: =?utf-8?q?hello=0D=0ABcc:_victim@evil.example=0D=0A?=\r\n\r\nbody\r\n"
    )
    got = parse_mail(raw)
    assert "\r" not in got.subject
    assert "\n" not in got.subject
    assert got.subject == "hello Bcc: victim@evil.example"


def test_header_injection_in_the_sender_name_is_one_line() -> None:
    raw = b"From: =?utf-8?q?Eve=0D=0ATo:_x@evil.example?= <eve@example.org>\r\nSubject: s\r\n\r\nb"
    got = parse_mail(raw)
    assert got.sender_address == "eve@example.org"
    assert "\n" not in got.sender_name
    assert "\r" not in got.sender_name


def test_bidi_overrides_leave_the_subject_but_joiners_stay_in_the_body() -> None:
    got = parse_mail(bytes(mail("invoice\u202efdp.exe", body="family \U0001f468\u200d\U0001f469")))
    assert got.subject == "invoice fdp.exe"
    assert got.body == "family \U0001f468\u200d\U0001f469"


def test_no_sender_is_unknown() -> None:
    got = parse_mail(b"Subject: who am I\r\n\r\nbody")
    assert got.sender_address is None
    assert got.sender_label == "unknown sender"
    assert any("no sender" in warning for warning in got.warnings)


def test_a_huge_body_is_cut_with_a_visible_note() -> None:
    got = parse_mail(bytes(mail(body="x" * 300_000)), max_body_chars=1000)
    assert got.body.startswith("x" * 1000)
    assert "cut here" in got.body
    assert len(got.body) < 1200
    assert any("cut at 1000" in warning for warning in got.warnings)


def test_html_only_becomes_plain_text_and_script_is_dropped() -> None:
    message = mail(body="")
    message.set_content(
        "<html><head><style>p{}</style></head><body><p>Hello &amp; <b>welcome</b></p>"
        "<script>alert('x')</script><p>second</p></body></html>",
        subtype="html",
    )
    got = parse_mail(bytes(message))
    assert got.body == "Hello & welcome\n\nsecond"
    assert "<" not in got.body
    assert "alert" not in got.body


def test_text_plain_is_preferred_over_html() -> None:
    message = mail(body="plain words")
    message.add_alternative("<p>html words</p>", subtype="html")
    assert parse_mail(bytes(message)).body == "plain words"


def test_script_in_a_plain_body_and_subject_stays_text() -> None:
    got = parse_mail(bytes(mail("<script>alert(1)</script>", body="<img src=x onerror=y>")))
    assert got.subject == "<script>alert(1)</script>"
    assert got.body == "<img src=x onerror=y>"  # text, to be shown escaped


def test_attachments_are_kept_under_the_caps_and_listed_over_them() -> None:
    message = mail()
    message.add_attachment(
        b"\x00\x01binary\xff" * 10,
        maintype="application",
        subtype="octet-stream",
        filename="../../etc/passwd",
    )
    message.add_attachment(b"y" * (2 * MIB), maintype="image", subtype="png", filename="screen.png")
    message.add_attachment(b"z" * 1000, maintype="text", subtype="plain", filename="log.txt")
    got = parse_mail(bytes(message), max_attachment_bytes=MIB, max_attachments_total_bytes=MIB)
    small, big, text = got.attachments
    assert small.file_name == "passwd"
    assert small.content == b"\x00\x01binary\xff" * 10
    assert small.sha256 == hashlib.sha256(small.content).hexdigest()
    assert big.content is None
    assert big.refused == "not kept: over 1 MiB"
    assert big.size == 2 * MIB
    assert big.sha256 == hashlib.sha256(b"y" * (2 * MIB)).hexdigest()
    assert text.content == b"z" * 1000
    assert got.body == "The printer on floor 2 jams."
    assert any("screen.png" in warning for warning in got.warnings)


def test_attachments_over_the_total_cap_are_not_kept() -> None:
    message = mail()
    for index in range(3):
        message.add_attachment(
            b"a" * 600, maintype="application", subtype="pdf", filename=f"part{index}.pdf"
        )
    got = parse_mail(bytes(message), max_attachment_bytes=1000, max_attachments_total_bytes=1300)
    kept = [a.content is not None for a in got.attachments]
    assert kept == [True, True, False]
    assert got.attachments[2].refused is not None
    assert "all the mail's attachments" in got.attachments[2].refused


def test_file_names_are_made_safe() -> None:
    assert safe_file_name("C:\\Users\\x\\report.pdf") == "report.pdf"
    assert safe_file_name("..") == "attachment"
    assert safe_file_name("CON.txt") == "_CON.txt"
    assert safe_file_name("a;rm -rf $HOME|.sh") == "a_rm -rf _HOME_.sh"
    assert safe_file_name("x\r\nSubject: y.txt") == "x__Subject_ y.txt"
    assert len(safe_file_name("n" * 500 + ".pdf")) == 120
    assert safe_file_name("n" * 500 + ".pdf").endswith(".pdf")


def test_no_message_id_is_a_stable_hash_of_the_bytes() -> None:
    raw = b"From: a@b.example\r\nSubject: s\r\n\r\nbody\r\n"
    first, again = parse_mail(raw), parse_mail(raw)
    assert first.message_id == again.message_id
    assert first.message_id.startswith("<sha256-")
    assert parse_mail(raw + b"more").message_id != first.message_id


def test_an_unknown_charset_does_not_lose_the_body() -> None:
    raw = (
        b"From: a@b.example\r\nSubject: =?x-unknown?q?abc?=\r\n"
        b"Content-Type: text/plain; charset=x-unknown\r\n\r\nhello \xff\r\n"
    )
    got = parse_mail(raw)
    assert got.body.startswith("hello")
    assert got.subject


def test_html_to_text_handles_broken_markup() -> None:
    assert html_to_text("<p>unclosed <b>bold <script>x") == "unclosed bold"
    assert html_to_text("a &lt;b&gt; c") == "a <b> c"


def _holds_a_subject_and_a_sender_or_unknown(raw: bytes) -> None:
    got = parse_mail(raw, max_body_chars=5000)
    assert got.subject
    assert "\n" not in got.subject
    assert "\r" not in got.subject
    assert got.sender_address is None or "@" in got.sender_address
    assert got.sender_label
    assert got.message_id.startswith("<")
    assert len(got.body) <= 5000 + 200


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=4000))
def test_random_bytes_never_raise(raw: bytes) -> None:
    _holds_a_subject_and_a_sender_or_unknown(raw)


_HEADER_NAMES = st.sampled_from(
    [
        "From",
        "Subject",
        "Message-ID",
        "In-Reply-To",
        "References",
        "Content-Type",
        "Content-Transfer-Encoding",
        "Content-Disposition",
        "MIME-Version",
        "Sender",
        "X-Other",
    ]
)
_HEADER_VALUES = st.one_of(
    st.text(max_size=120),
    st.sampled_from(
        [
            "multipart/mixed; boundary=b",
            "text/html; charset=utf-8",
            "base64",
            "quoted-printable",
            'attachment; filename="../x"',
            "=?utf-8?b?////?=",
            "=?bogus?q?x?=",
            "<a@b>",
            "x@y",
            'text/plain; charset=""',
        ]
    ),
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(_HEADER_NAMES, _HEADER_VALUES), max_size=12),
    st.one_of(st.binary(max_size=2000), st.text(max_size=2000).map(str.encode)),
)
def test_generated_messages_with_random_headers_never_raise(
    headers: list[tuple[str, str]], body: bytes
) -> None:
    head = b"".join(
        name.encode() + b": " + value.encode("utf-8", errors="surrogateescape") + b"\r\n"
        for name, value in headers
    )
    multipart = b"\r\n--b\r\nContent-Type: text/plain\r\n\r\n" + body + b"\r\n--b--\r\n"
    _holds_a_subject_and_a_sender_or_unknown(head + b"\r\n" + body)
    _holds_a_subject_and_a_sender_or_unknown(head + b"\r\n" + multipart)
