"""One mail as the helpdesk takes it in: who asked, about what, which ticket, what they attached.

`parse_mail` is pure and never raises, whatever the bytes: a request is never lost because
its mail is malformed. What it cannot read it replaces and says so in `warnings`:

- Subject: RFC 2047 decoded, control characters (CR and LF included: header injection)
  replaced by spaces, cut at SUBJECT_MAX_CHARS. Empty: the body's first line, else
  "(no subject)".
- Ticket reference: `[Sonde #17]` anywhere in the subject (so "Re: Fwd: [Sonde #17] ..." is a
  reply to ticket 17); the first one wins. `ticket_reference(17)` writes it.
- Message-ID: the header's `<...>`, else a stable hash of the raw bytes (the same bytes
  fetched again give the same id, which the caller dedups on).
- Body: text/plain preferred, else HTML turned into plain text (script and style dropped);
  never kept as HTML. Cut at `max_body_chars` with a visible note.
- Attachments: a safe file name, content type, size and SHA-256 always; the bytes only under
  `max_attachment_bytes` each and `max_attachments_total_bytes` together, else
  "not kept: over N MiB".

Everything is text to store and to show escaped: a `<script>` in any field stays those
characters. See docs/mail.md.
"""

from __future__ import annotations

import email.utils
import hashlib
import html
import re
import unicodedata
from dataclasses import dataclass, field
from email.header import decode_header, make_header
from email.message import Message
from email.parser import BytesParser
from email.policy import compat32
from html.parser import HTMLParser

REFERENCE_PATTERN = re.compile(r"\[\s*Sonde\s*#\s*(\d{1,12})\s*\]", re.IGNORECASE)
SUBJECT_MAX_CHARS = 255
NAME_MAX_CHARS = 200
FILE_NAME_MAX_CHARS = 120
MAX_PARTS = 200  # parts looked at in one mail; the rest are listed as a warning
MAX_REFERENCES = 50
NO_SUBJECT = "(no subject)"

_MESSAGE_ID = re.compile(r"<([^<>\s]{1,400})>")
_ENCODED_WORD = re.compile(r"=\?[^?\s]{1,64}\?[bBqQ]\?[^?\s]*\?=")
_ADDRESS = re.compile(r"^[^@\s<>\"(),;:\\\[\]]{1,128}@[A-Za-z0-9.\-\[\]:]{1,253}$")
_UNSAFE_FILE_CHARS = re.compile(r"[^\w.\- ]+")
_WINDOWS_RESERVED = re.compile(r"^(con|prn|aux|nul|com\d|lpt\d)(\..*)?$", re.IGNORECASE)


def ticket_reference(ticket_id: int) -> str:
    """The reference a notification's subject carries and a reply's subject brings back."""
    return f"[Sonde #{ticket_id}]"


@dataclass(frozen=True)
class IntakeAttachment:
    file_name: str  # safe to use as a file name: no folders, no control or shell characters
    content_type: str
    size: int
    sha256: str
    content: bytes | None  # None when not kept: `refused` says why
    refused: str | None = None


@dataclass(frozen=True)
class IntakeMail:
    sender_address: str | None  # None: the mail named no usable sender
    sender_name: str
    subject: str  # never empty
    message_id: str  # "<...>", from the header or from the raw bytes' hash
    in_reply_to: tuple[str, ...]
    references: tuple[str, ...]
    ticket_id: int | None  # the ticket the subject's reference names
    body: str
    attachments: tuple[IntakeAttachment, ...]
    warnings: tuple[str, ...] = ()

    @property
    def sender_label(self) -> str:
        """Who asked, for a ticket's requester line: the address, else "unknown sender"."""
        if self.sender_address is None:
            return "unknown sender"
        if self.sender_name:
            return f"{self.sender_name} <{self.sender_address}>"
        return self.sender_address


@dataclass
class _Reading:
    """What one parse collects as it goes."""

    warnings: list[str] = field(default_factory=list)
    attachments: list[IntakeAttachment] = field(default_factory=list)
    kept_bytes: int = 0


def parse_mail(
    raw: bytes,
    *,
    max_body_chars: int = 100_000,
    max_attachment_bytes: int = 10 * 1024 * 1024,
    max_attachments_total_bytes: int = 25 * 1024 * 1024,
    reference_pattern: re.Pattern[str] = REFERENCE_PATTERN,
) -> IntakeMail:
    """Read `raw` (one RFC 5322 message as the mailbox holds it); never raises."""
    try:
        return _parse(
            raw,
            max_body_chars=max_body_chars,
            max_attachment_bytes=max_attachment_bytes,
            max_attachments_total_bytes=max_attachments_total_bytes,
            reference_pattern=reference_pattern,
        )
    except Exception as error:  # the request is kept whatever the parser met
        body = _cut_body(_clean_text(raw.decode("utf-8", errors="replace")), max_body_chars, [])
        return IntakeMail(
            sender_address=None,
            sender_name="",
            subject=_subject_from_body(body),
            message_id=_hashed_message_id(raw),
            in_reply_to=(),
            references=(),
            ticket_id=None,
            body=body,
            attachments=(),
            warnings=(
                f"the mail could not be read as a message ({type(error).__name__}); "
                "its raw text is kept as the body",
            ),
        )


def _parse(
    raw: bytes,
    *,
    max_body_chars: int,
    max_attachment_bytes: int,
    max_attachments_total_bytes: int,
    reference_pattern: re.Pattern[str],
) -> IntakeMail:
    message = BytesParser(policy=compat32).parsebytes(raw)
    reading = _Reading()
    sender_name, sender_address = _sender(message, reading)
    subject = _clean_line(_header(message, "Subject", reading), SUBJECT_MAX_CHARS, reading)
    body = _body_and_attachments(
        message, reading, max_attachment_bytes, max_attachments_total_bytes
    )
    body = _cut_body(body, max_body_chars, reading.warnings)
    if not subject:
        subject = _subject_from_body(body)
        reading.warnings.append(f"the mail had no subject: {subject!r} is used")
    return IntakeMail(
        sender_address=sender_address,
        sender_name=sender_name,
        subject=subject,
        message_id=_message_id(message, raw, reading),
        in_reply_to=_message_ids(_header(message, "In-Reply-To", reading)),
        references=_message_ids(_header(message, "References", reading)),
        ticket_id=ticket_id_in(subject, reference_pattern),
        body=body,
        attachments=tuple(reading.attachments),
        warnings=tuple(reading.warnings),
    )


def ticket_id_in(subject: str, pattern: re.Pattern[str] = REFERENCE_PATTERN) -> int | None:
    """The ticket id of the first reference in `subject`, whatever prefixes come before it."""
    found = pattern.search(subject)
    return int(found.group(1)) if found else None


# Headers


def _header(message: Message, name: str, reading: _Reading) -> str:
    """A header decoded to text (RFC 2047), or "" when absent; several: the first."""
    value = message.get(name)
    if value is None:
        return ""
    return _decoded(str(value), name, reading)


def _decoded(text: str, name: str, reading: _Reading) -> str:
    try:
        return str(make_header(decode_header(text)))
    except Exception:  # an unknown charset or broken encoded word: keep what is there
        reading.warnings.append(f"the {name} header could not be decoded; kept as sent")
        return text


def _clean_line(text: str, max_chars: int, reading: _Reading | None = None) -> str:
    """One line of text: control characters (CR, LF: header injection) become spaces."""
    line = "".join(" " if _is_control(ch) else ch for ch in text)
    line = " ".join(line.split())
    if len(line) > max_chars:
        if reading is not None:
            reading.warnings.append(f"a header was cut at {max_chars} characters")
        line = line[:max_chars].rstrip()
    return line


def _is_control(ch: str) -> bool:
    return unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp", "Cs")


def _sender(message: Message, reading: _Reading) -> tuple[str, str | None]:
    for header in ("From", "Sender", "Reply-To"):
        value = message.get(header)
        if value is None:
            continue
        name, address = _name_and_address(_clean_line(str(value), 2000))
        if _ADDRESS.match(address):
            return _clean_line(_decoded(name, header, reading), NAME_MAX_CHARS), address
        reading.warnings.append(f"the {header} header names no usable address")
    reading.warnings.append("the mail has no sender address: the requester is unknown")
    return "", None


def _name_and_address(value: str) -> tuple[str, str]:
    """The first mailbox of an address header, read before any RFC 2047 decoding: an encoded
    word in the name (`=?utf-8?q?x=0D=0ATo:_y@evil?=`) stays part of the name and cannot bring
    in another address."""
    words = _ENCODED_WORD.findall(value)
    for index, word in enumerate(words):
        value = value.replace(word, f" SondeEncodedWord{index}x ", 1)
    name, address = email.utils.parseaddr(value)
    if "SondeEncodedWord" in address:
        return "", ""
    for index, word in enumerate(words):
        name = name.replace(f"SondeEncodedWord{index}x", word, 1)
    return " ".join(name.split()), address.strip()


def _message_ids(text: str) -> tuple[str, ...]:
    return tuple(f"<{found}>" for found in _MESSAGE_ID.findall(text)[:MAX_REFERENCES])


def _message_id(message: Message, raw: bytes, reading: _Reading) -> str:
    ids = _message_ids(_header(message, "Message-ID", reading))
    if ids:
        return ids[0]
    reading.warnings.append("the mail has no Message-ID: one is made from its bytes")
    return _hashed_message_id(raw)


def _hashed_message_id(raw: bytes) -> str:
    return f"<sha256-{hashlib.sha256(raw).hexdigest()}@intake.sonde>"


# Body and attachments


def _body_and_attachments(
    message: Message, reading: _Reading, max_each: int, max_total: int
) -> str:
    plain: str | None = None
    html_text: str | None = None
    for index, part in enumerate(message.walk()):
        if index >= MAX_PARTS:
            reading.warnings.append(f"the mail has more than {MAX_PARTS} parts: the rest ignored")
            break
        if part.is_multipart():
            continue
        content_type = _clean_line(part.get_content_type(), 100)
        if _is_attachment(part, content_type):
            _take_attachment(part, content_type, reading, max_each, max_total)
        elif content_type == "text/html":
            if html_text is None:
                html_text = html_to_text(_part_text(part))
        elif plain is None:
            plain = _part_text(part)
    if plain is not None and plain.strip():
        return _clean_text(plain)
    if html_text is not None:
        return _clean_text(html_text)
    return _clean_text(plain or "")


def _is_attachment(part: Message, content_type: str) -> bool:
    disposition = str(part.get("Content-Disposition", "")).lower()
    if disposition.startswith("attachment") or part.get_filename() is not None:
        return True
    return content_type not in ("text/plain", "text/html")


def _payload(part: Message) -> bytes:
    payload = part.get_payload(decode=True)
    if isinstance(payload, bytes):
        return payload
    return b""


def _part_text(part: Message) -> str:
    data = _payload(part)
    charset = part.get_content_charset() or "utf-8"
    try:
        return data.decode(charset, errors="replace")
    except LookupError:  # a charset Python does not know
        return data.decode("utf-8", errors="replace")


def _take_attachment(
    part: Message, content_type: str, reading: _Reading, max_each: int, max_total: int
) -> None:
    data = _payload(part)
    name = safe_file_name(_file_name(part), fallback=f"attachment-{len(reading.attachments) + 1}")
    refused: str | None = None
    if len(data) > max_each:
        refused = f"not kept: over {_mebibytes(max_each)} MiB"
    elif reading.kept_bytes + len(data) > max_total:
        refused = f"not kept: over {_mebibytes(max_total)} MiB for all the mail's attachments"
    if refused is not None:
        reading.warnings.append(f"attachment {name!r} ({len(data)} bytes) {refused}")
    else:
        reading.kept_bytes += len(data)
    reading.attachments.append(
        IntakeAttachment(
            file_name=name,
            content_type=content_type,
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            content=None if refused else data,
            refused=refused,
        )
    )


def _file_name(part: Message) -> str:
    name = part.get_filename()
    if name is None:
        return ""
    try:
        return str(make_header(decode_header(str(name))))
    except Exception:
        return str(name)


def _mebibytes(size: int) -> str:
    return f"{size / (1024 * 1024):g}"


def safe_file_name(name: str, *, fallback: str = "attachment") -> str:
    """A name that is safe to write in a folder on any system: the last path component,
    letters, digits, dot, dash, underscore and space only, no leading dot, not a Windows
    device name; `fallback` when nothing is left."""
    name = unicodedata.normalize("NFKC", name)
    name = re.split(r"[/\\]", name)[-1]
    name = "".join("_" if _is_control(ch) else ch for ch in name)
    name = _UNSAFE_FILE_CHARS.sub("_", name).strip(" ._")
    if len(name) > FILE_NAME_MAX_CHARS:
        stem, dot, extension = name.rpartition(".")
        if dot and 0 < len(extension) <= 10:
            name = stem[: FILE_NAME_MAX_CHARS - len(extension) - 1] + "." + extension
        else:
            name = name[:FILE_NAME_MAX_CHARS]
    if not name:
        return fallback
    if _WINDOWS_RESERVED.match(name):
        return "_" + name
    return name


def _clean_text(text: str) -> str:
    """A body as text: newlines normalised, control characters other than tab and newline
    dropped."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    # Format characters stay in a body (joiners in emoji, Persian, Arabic); only headers and
    # file names lose them.
    return "".join(
        ch for ch in text if ch in "\n\t" or unicodedata.category(ch) not in ("Cc", "Cs")
    ).strip()


def _cut_body(body: str, max_chars: int, warnings: list[str]) -> str:
    if len(body) <= max_chars:
        return body
    warnings.append(f"the body was cut at {max_chars} characters of {len(body)}")
    return (
        body[:max_chars]
        + f"\n\n[Sonde: the message was cut here; {max_chars} of {len(body)} characters kept]"
    )


def _subject_from_body(body: str) -> str:
    for line in body.splitlines():
        cleaned = _clean_line(line, 80)
        if cleaned and not cleaned.startswith("[Sonde:"):
            return cleaned
    return NO_SUBJECT


# HTML


class _TextOfHtml(HTMLParser):
    _DROPPED = frozenset({"script", "style", "head", "title", "noscript", "template"})
    _BREAKS = frozenset({"br", "p", "div", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.pieces: list[str] = []
        self._dropping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._DROPPED:
            self._dropping += 1
        elif tag in self._BREAKS:
            self.pieces.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._DROPPED:
            self._dropping = max(0, self._dropping - 1)
        elif tag in self._BREAKS:
            self.pieces.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._dropping:
            self.pieces.append(data)


def html_to_text(markup: str) -> str:
    """The text a reader sees in `markup`: tags gone, entities resolved, script and style
    dropped. The result is plain text (a `<` in it is a character, not markup)."""
    reader = _TextOfHtml()
    try:
        reader.feed(markup)
        reader.close()
    except Exception:  # HTMLParser is lenient; this is the last resort
        return html.unescape(re.sub(r"<[^>]*>", " ", markup))
    lines = (" ".join(line.split()) for line in "".join(reader.pieces).splitlines())
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
