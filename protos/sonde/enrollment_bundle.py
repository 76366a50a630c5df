"""The enrollment string: one copy-pastable line that carries everything an agent needs."""

from __future__ import annotations

import base64
import binascii
import re

from cryptography import x509
from google.protobuf.message import DecodeError

from sonde.v1 import enrollment_pb2

PREFIX = "sonde-enroll-1."
_BASE64URL = re.compile(r"^[A-Za-z0-9_-]*$")
_REQUIRED = (
    "console_address",
    "agent_address",
    "ca_certificate_der",
    "token_id",
    "secret",
    "server_name",
)


def encode_bundle(bundle: enrollment_pb2.EnrollmentBundle) -> str:
    """`sonde-enroll-1.` + unpadded base64url of the serialized bundle."""
    payload = base64.urlsafe_b64encode(bundle.SerializeToString()).rstrip(b"=")
    return PREFIX + payload.decode("ascii")


def _refuse(reason: str) -> ValueError:
    return ValueError(f"this is not a Sonde enrollment string: {reason}")


def check_address(field: str, address: str) -> None:
    """HOST:PORT with a numeric port; IPv6 hosts in brackets."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise _refuse(f"{field} {address!r} is not HOST:PORT")


def decode_bundle(text: str) -> enrollment_pb2.EnrollmentBundle:
    """Parse an enrollment string; ValueError says precisely what is wrong with it."""
    # A string pasted from an e-mail or a terminal may have been wrapped.
    compact = "".join(text.split())
    if not compact:
        raise _refuse("it is empty")
    if not compact.startswith(PREFIX):
        shown = compact[: len(PREFIX)]
        raise _refuse(f"it must start with {PREFIX!r}, not {shown!r}")
    payload = compact[len(PREFIX) :]
    if not payload:
        raise _refuse(f"nothing follows {PREFIX!r}")
    if not _BASE64URL.fullmatch(payload):
        bad = next(c for c in payload if not (c.isascii() and (c.isalnum() or c in "-_")))
        raise _refuse(f"the part after the prefix is not base64url (unexpected {bad!r})")
    try:
        raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    except (binascii.Error, ValueError):
        raise _refuse("the part after the prefix is truncated base64url") from None
    bundle = enrollment_pb2.EnrollmentBundle()
    try:
        bundle.ParseFromString(raw)
    except DecodeError:
        raise _refuse("its contents do not decode as an enrollment bundle") from None
    missing = [name for name in _REQUIRED if not getattr(bundle, name)]
    if missing:
        raise _refuse(f"it lacks {', '.join(missing)} (copied from an incomplete token?)")
    check_address("console_address", bundle.console_address)
    check_address("agent_address", bundle.agent_address)
    for index, address in enumerate(bundle.agent_addresses):
        check_address(f"agent_addresses[{index}]", address)
    try:
        x509.load_der_x509_certificate(bundle.ca_certificate_der)
    except ValueError as error:
        raise _refuse(f"its CA certificate does not parse ({error})") from None
    return bundle
