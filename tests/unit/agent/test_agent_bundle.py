"""The enrollment string: round trip, pasted whitespace, and every way it can be wrong."""

from __future__ import annotations

import base64

import pytest

from sonde.enrollment_bundle import PREFIX, decode_bundle, encode_bundle
from sonde.v1 import enrollment_pb2


def _bundle(ca_der: bytes, **overrides: object) -> enrollment_pb2.EnrollmentBundle:
    fields: dict[str, object] = {
        "console_address": "127.0.0.1:8443",
        "agent_address": "127.0.0.1:8444",
        "ca_certificate_der": ca_der,
        "token_id": "1a2b3c",
        "secret": b"\x00\x01secret-bytes\xff",
        "server_name": "sonde-server",
    }
    fields.update(overrides)
    return enrollment_pb2.EnrollmentBundle(**fields)  # type: ignore[arg-type]


def _payload(raw: bytes) -> str:
    return PREFIX + base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def test_round_trip(ca_der: bytes) -> None:
    bundle = _bundle(ca_der)
    text = encode_bundle(bundle)
    assert text.startswith(PREFIX)
    assert "=" not in text
    assert decode_bundle(text) == bundle


def test_whitespace_and_newlines_pasted_inside_are_tolerated(ca_der: bytes) -> None:
    text = encode_bundle(_bundle(ca_der))
    wrapped = "  " + "\n".join(text[i : i + 40] for i in range(0, len(text), 40)) + " \r\n\t"
    assert decode_bundle(wrapped) == _bundle(ca_der)


def test_ipv6_addresses_are_accepted(ca_der: bytes) -> None:
    bundle = _bundle(ca_der, console_address="[::1]:8443", agent_address="[::1]:8444")
    assert decode_bundle(encode_bundle(bundle)).agent_address == "[::1]:8444"


def test_every_agent_address_is_kept_in_order(ca_der: bytes) -> None:
    replicas = ["sonde-a.example.lan:8444", "[fd00::2]:8444", "10.0.0.3:9444"]
    bundle = _bundle(ca_der, agent_address=replicas[0], agent_addresses=replicas)
    assert list(decode_bundle(encode_bundle(bundle)).agent_addresses) == replicas


def test_a_bad_address_in_the_list_is_named(ca_der: bytes) -> None:
    bundle = _bundle(ca_der, agent_addresses=["127.0.0.1:8444", "sonde-b"])
    with pytest.raises(ValueError, match=r"agent_addresses\[1\] 'sonde-b' is not HOST:PORT"):
        decode_bundle(encode_bundle(bundle))


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "it is empty"),
        ("   \n", "it is empty"),
        ("sonde-enroll-2.AAAA", "it must start with 'sonde-enroll-1.'"),
        ("hello world", "it must start with 'sonde-enroll-1.'"),
        (PREFIX, "nothing follows"),
        (PREFIX + "abc$def", "not base64url (unexpected '$')"),
        (PREFIX + "abc+/de", "not base64url (unexpected '+')"),
        (PREFIX + "abcde", "truncated base64url"),
        (_payload(b"\x80\x80\x80"), "do not decode as an enrollment bundle"),
        (_payload(b"\x0a\x05ab"), "do not decode as an enrollment bundle"),
    ],
)
def test_malformed_strings_are_refused_with_the_reason(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match="this is not a Sonde enrollment string") as refused:
        decode_bundle(text)
    assert reason in str(refused.value)


@pytest.mark.parametrize(
    "field",
    [
        "console_address",
        "agent_address",
        "ca_certificate_der",
        "token_id",
        "secret",
        "server_name",
    ],
)
def test_each_missing_field_is_named(ca_der: bytes, field: str) -> None:
    bundle = _bundle(ca_der)
    bundle.ClearField(field)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=f"it lacks {field}"):
        decode_bundle(encode_bundle(bundle))


def test_all_missing_fields_are_listed() -> None:
    expected = "it lacks console_address, agent_address, ca_certificate_der, secret, server_name"
    with pytest.raises(ValueError, match=expected):
        decode_bundle(encode_bundle(enrollment_pb2.EnrollmentBundle(token_id="1a2b")))


@pytest.mark.parametrize("address", ["localhost", "host:", ":8443", "host:port", "host:70000"])
def test_an_address_that_is_not_host_port_is_refused(ca_der: bytes, address: str) -> None:
    with pytest.raises(ValueError, match=f"console_address '{address}' is not HOST:PORT"):
        decode_bundle(encode_bundle(_bundle(ca_der, console_address=address)))


def test_a_ca_certificate_that_does_not_parse_is_refused(ca_der: bytes) -> None:
    bundle = _bundle(ca_der, ca_certificate_der=ca_der[:-20])
    with pytest.raises(ValueError, match="its CA certificate does not parse"):
        decode_bundle(encode_bundle(bundle))
