"""The webhook's rules that need no server: what an admin may give, the signature a receiver
checks, the backoff between attempts."""

from __future__ import annotations

import pytest

from sonde.server.errors import InvalidArgument
from sonde.server.webhooks.addresses import checked_ca, checked_kinds, checked_secret, checked_url
from sonde.server.webhooks.delivery import Backoff
from sonde.server.webhooks.signing import signature, signed_headers, verify

SECRET = b"a-shared-secret-of-some-length"
BODY = b'{"id":"7","kind":"comment"}'
NOW = 1_800_000_000


def test_a_signed_body_verifies_and_any_change_does_not() -> None:
    headers = signed_headers([SECRET], NOW, BODY)
    timestamp, signed = headers["Sonde-Timestamp"], headers["Sonde-Signature"]
    assert verify(SECRET, timestamp, signed, BODY, now=NOW + 299)
    assert not verify(SECRET, timestamp, signed, BODY + b" ", now=NOW)
    assert not verify(b"another-secret-entirely", timestamp, signed, BODY, now=NOW)
    assert not verify(SECRET, str(NOW + 1), signed, BODY, now=NOW)  # the time is signed too


def test_a_replayed_or_future_timestamp_is_refused() -> None:
    signed = signature([SECRET], NOW, BODY)
    assert not verify(SECRET, str(NOW), signed, BODY, now=NOW + 301)
    assert not verify(SECRET, str(NOW), signed, BODY, now=NOW - 301)


@pytest.mark.parametrize("timestamp", ["", "-5", "1e9", "\uff11\uff12\uff13", "12 3"])
def test_a_timestamp_that_is_not_plain_digits_is_refused(timestamp: str) -> None:
    assert not verify(SECRET, timestamp, signature([SECRET], NOW, BODY), BODY, now=NOW)


def test_during_a_rotation_both_secrets_sign_and_either_verifies() -> None:
    new = b"the-new-secret-after-rotation"
    headers = signed_headers([new, SECRET], NOW, BODY)
    timestamp, signed = headers["Sonde-Timestamp"], headers["Sonde-Signature"]
    assert signed.count("v1=") == 2
    assert signed.startswith(signature([new], NOW, BODY) + ",")
    assert verify(new, timestamp, signed, BODY, now=NOW)
    assert verify(SECRET, timestamp, signed, BODY, now=NOW)
    assert not verify(b"neither-of-the-two-secrets", timestamp, signed, BODY, now=NOW)


def test_any_of_several_v1_values_may_match_and_other_schemes_are_ignored() -> None:
    good = signature([SECRET], NOW, BODY)
    assert verify(SECRET, str(NOW), f"v1=00ff, {good}", BODY, now=NOW)
    assert not verify(SECRET, str(NOW), good.replace("v1=", "v0="), BODY, now=NOW)
    assert not verify(SECRET, str(NOW), "v1=é", BODY, now=NOW)


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("http://hooks.example.com/x", "plain http"),
        ("http://127.0.0.1:8080/x", "plain http"),
        ("ftp://hooks.example.com/x", "plain http"),
        ("https:///x", "host"),
        ("https://user:pw@hooks.example.com/x", "no user or password"),
        ("https://hooks.example.com/x#top", "fragment"),
        ("https://hooks.example.com:0/x", "port 0"),
        ("https://hooks.example.com:99999/x", "not a URL"),
        ("https://hooks.example.com/a b", "spaces"),
        ("https://hooks.example.com/\x1b[31m", "control"),
        ("https://bücher.example/x", "punycode"),
        ("https://hooks.example.com/" + "a" * 3000, "at most"),
    ],
)
def test_a_url_that_is_not_a_plain_https_address_is_refused(url: str, said: str) -> None:
    with pytest.raises(InvalidArgument, match=said):
        checked_url(url)


def test_an_https_url_with_port_path_and_query_is_taken_as_given() -> None:
    url = "https://hooks.example.com:8443/in/sonde?team=l2"
    assert checked_url(url) == url


def test_kinds_are_checked_against_the_ticket_event_kinds() -> None:
    assert checked_kinds(["resolved", " opened ", "resolved", ""]) == ("opened", "resolved")
    assert checked_kinds([]) == ()
    with pytest.raises(InvalidArgument, match="no ticket event kind 'deleted'"):
        checked_kinds(["opened", "deleted"])


def test_a_secret_is_long_enough_and_printable_and_never_quoted() -> None:
    assert checked_secret("x" * 16) == b"x" * 16
    for bad in ("short-secret", "a secret with spaces", "tab\tinside-it-here"):
        with pytest.raises(InvalidArgument) as refused:
            checked_secret(bad)
        assert bad not in str(refused.value)


def test_a_ca_must_parse_as_pem_certificates() -> None:
    assert checked_ca("") == ""
    with pytest.raises(InvalidArgument, match="not PEM certificates"):
        checked_ca("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")


def test_the_backoff_doubles_up_to_its_cap_with_the_second_half_random() -> None:
    low, high = Backoff(rng=lambda: 0.0), Backoff(rng=lambda: 0.999999)
    assert [low.delay_s(n) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 8.0]
    assert [round(high.delay_s(n)) for n in (1, 2, 3, 4)] == [2, 4, 8, 16]
    assert low.delay_s(30) == 300.0
    assert round(high.delay_s(30)) == 600
    assert high.delay_s(10_000) <= 600.0  # no overflow, however long it has been down
