"""What an agent checks in a run order before anything runs: signed by its server's dispatch
key, for it, unexpired, never run here, a script the catalog key signed, for its platform,
parameters in the manifest's schema, and its own policy. Each refusal says why."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from hypothesis import given, settings
from hypothesis import strategies as st

from sonde.catalog.bundle import CatalogSource, sign_entries
from sonde.catalog.envelope import (
    LONGEST_LIFE,
    MAX_ORDER_BYTES,
    OrderRefused,
    Refusal,
    sign_order,
    verify_order,
)
from sonde.catalog.folder import load_catalog_folder
from sonde.catalog.manifest import Platform, Risk
from sonde.catalog.policy import AgentPolicy, PolicyError, parse_policy
from sonde.v1 import remediation_pb2

SCRIPTS = Path(__file__).resolve().parents[3] / "scripts"
CATALOG_KEY = ed25519.Ed25519PrivateKey.generate()
DISPATCH_KEY = ed25519.Ed25519PrivateKey.generate()
NOW = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
AGENT = "7ry2abcdefghijklmnopqrstuv"
SCRIPT_ID = "kill-hung-process-linux"


def _entry(script_id: str = SCRIPT_ID) -> remediation_pb2.CatalogEntry:
    found = next(e for e in load_catalog_folder(SCRIPTS) if e.manifest.id == script_id)
    (signed,) = sign_entries(
        CATALOG_KEY, [CatalogSource(found.manifest_bytes, found.script_bytes)]
    ).entries
    return remediation_pb2.CatalogEntry(
        id=signed.id,
        version=signed.version,
        manifest=signed.manifest,
        script=signed.script,
        catalog_key_id=signed.key_id,
        catalog_signature=signed.signature,
    )


ENTRY = _entry()


def _order(
    *,
    agent_id: str = AGENT,
    parameters: dict[str, str] | None = None,
    entry: remediation_pb2.CatalogEntry | None = None,
    expires_at: datetime | None = None,
    dry_run: bool = False,
) -> remediation_pb2.RunScriptOrder:
    order = remediation_pb2.RunScriptOrder(
        command_id="c0ffee00c0ffee00c0ffee00",
        agent_id=agent_id,
        parameters=(
            parameters
            if parameters is not None
            else {"process_id": "4242", "process_name": "firefox-bin"}
        ),
        requested_by="bob",
        dry_run=dry_run,
    )
    order.entry.CopyFrom(entry or ENTRY)
    order.issued_at.FromDatetime(NOW - timedelta(minutes=1))
    order.expires_at.FromDatetime(expires_at or NOW + timedelta(hours=24))
    return order


def _verify(
    signed: remediation_pb2.SignedRunScript,
    *,
    policy: AgentPolicy | None = None,
    platform: Platform = Platform.LINUX,
    ran: frozenset[str] = frozenset(),
) -> object:
    return verify_order(
        signed,
        dispatch_key=DISPATCH_KEY.public_key(),
        catalog_key=CATALOG_KEY.public_key(),
        agent_id=AGENT,
        platform=platform,
        policy=policy or AgentPolicy(),
        already_ran=ran.__contains__,
        now=NOW,
    )


def _refused(signed: remediation_pb2.SignedRunScript, **context: object) -> OrderRefused:
    with pytest.raises(OrderRefused) as refused:
        _verify(signed, **context)  # type: ignore[arg-type]
    assert refused.value.message
    return refused.value


def test_a_good_order_is_taken_with_its_checked_values() -> None:
    verified = verify_order(
        sign_order(DISPATCH_KEY, _order(dry_run=True)),
        dispatch_key=DISPATCH_KEY.public_key(),
        catalog_key=CATALOG_KEY.public_key(),
        agent_id=AGENT,
        platform=Platform.LINUX,
        policy=AgentPolicy(),
        already_ran=lambda _: False,
        now=NOW,
    )
    assert verified.manifest.id == SCRIPT_ID
    assert verified.script == ENTRY.script
    assert verified.values == {
        "process_id": 4242,
        "process_name": "firefox-bin",
        "grace_s": 10,
        "dry_run": True,
    }


def test_an_unsigned_or_otherwise_signed_order_is_refused() -> None:
    signed = sign_order(DISPATCH_KEY, _order())
    unsigned = remediation_pb2.SignedRunScript(order=signed.order)
    assert _refused(unsigned).refusal is Refusal.UNSIGNED
    rogue = sign_order(ed25519.Ed25519PrivateKey.generate(), _order())
    assert _refused(rogue).refusal is Refusal.BAD_SIGNATURE
    # Another key's signature under the pinned key's id: the signature itself fails.
    forged = remediation_pb2.SignedRunScript(
        order=signed.order, dispatch_key_id=signed.dispatch_key_id, signature=rogue.signature
    )
    assert _refused(forged).refusal is Refusal.BAD_SIGNATURE


def test_a_parameter_changed_after_signing_is_refused() -> None:
    signed = sign_order(DISPATCH_KEY, _order())
    tampered_order = remediation_pb2.RunScriptOrder.FromString(signed.order)
    tampered_order.parameters["process_id"] = "1"
    tampered = remediation_pb2.SignedRunScript(
        order=tampered_order.SerializeToString(),
        dispatch_key_id=signed.dispatch_key_id,
        signature=signed.signature,
    )
    assert _refused(tampered).refusal is Refusal.BAD_SIGNATURE


def test_an_order_for_another_agent_expired_or_run_before_is_refused() -> None:
    other = _refused(sign_order(DISPATCH_KEY, _order(agent_id="someoneelse0000000000000")))
    assert (other.refusal, other.command_id) == (Refusal.OTHER_AGENT, "c0ffee00c0ffee00c0ffee00")
    expired = _refused(sign_order(DISPATCH_KEY, _order(expires_at=NOW - timedelta(seconds=1))))
    assert expired.refusal is Refusal.EXPIRED
    replayed = _refused(
        sign_order(DISPATCH_KEY, _order()), ran=frozenset({"c0ffee00c0ffee00c0ffee00"})
    )
    assert replayed.refusal is Refusal.REPLAYED
    assert "already ran here" in replayed.message
    long_lived = _order(expires_at=NOW + LONGEST_LIFE + timedelta(days=1))
    assert _refused(sign_order(DISPATCH_KEY, long_lived)).refusal is Refusal.MALFORMED


def test_a_script_the_catalog_key_did_not_sign_is_refused_even_from_the_real_server() -> None:
    """A server that was taken over signs its orders with the real dispatch key: what it
    cannot do is change a script or sign a new one."""
    changed = remediation_pb2.CatalogEntry()
    changed.CopyFrom(ENTRY)
    changed.script = ENTRY.script + b"\ntouch /tmp/sentinel\n"
    refused = _refused(sign_order(DISPATCH_KEY, _order(entry=changed)))
    assert refused.refusal is Refusal.CATALOG_SIGNATURE
    assert "does not verify" in refused.message
    rogue_catalog = ed25519.Ed25519PrivateKey.generate()
    (self_signed,) = sign_entries(
        rogue_catalog, [CatalogSource(ENTRY.manifest, changed.script)]
    ).entries
    own = remediation_pb2.CatalogEntry(
        id=self_signed.id,
        version=self_signed.version,
        manifest=self_signed.manifest,
        script=self_signed.script,
        catalog_key_id=self_signed.key_id,
        catalog_signature=self_signed.signature,
    )
    refused = _refused(sign_order(DISPATCH_KEY, _order(entry=own)))
    assert refused.refusal is Refusal.CATALOG_SIGNATURE
    assert "signed with another key" in refused.message


def test_the_platform_the_parameters_and_the_policy_are_checked() -> None:
    signed = sign_order(DISPATCH_KEY, _order())
    assert _refused(signed, platform=Platform.WINDOWS).refusal is Refusal.PLATFORM
    for bad in (
        {"process_id": "4242", "process_name": "fire\0fox"},
        {"process_id": "4242; reboot", "process_name": "firefox-bin"},
        {"process_id": "4242", "process_name": "firefox-bin", "extra": "x"},
        {"process_name": "firefox-bin"},
    ):
        refused = _refused(sign_order(DISPATCH_KEY, _order(parameters=bad)))
        assert refused.refusal is Refusal.PARAMETERS, bad
    low_only = _refused(signed, policy=AgentPolicy(max_risk=Risk.LOW))
    assert low_only.refusal is Refusal.POLICY
    assert "medium risk" in low_only.message
    denied = _refused(signed, policy=AgentPolicy(deny=frozenset({SCRIPT_ID})))
    assert "denies kill-hung-process-linux" in denied.message
    assert (
        _refused(signed, policy=AgentPolicy(allow=frozenset({"flush-dns-cache-linux"}))).refusal
        is Refusal.POLICY
    )


def test_a_huge_order_is_refused_before_its_signature_is_checked() -> None:
    huge = remediation_pb2.SignedRunScript(order=b"x" * (MAX_ORDER_BYTES + 1), signature=b"s")
    assert _refused(huge).refusal is Refusal.MALFORMED


@settings(max_examples=300, deadline=None)
@given(position=st.integers(min_value=0), flip=st.integers(min_value=1, max_value=255))
def test_any_byte_changed_in_a_signed_order_is_refused(position: int, flip: int) -> None:
    signed = sign_order(DISPATCH_KEY, _order())
    data = bytearray(signed.order)
    data[position % len(data)] ^= flip
    changed = remediation_pb2.SignedRunScript(
        order=bytes(data), dispatch_key_id=signed.dispatch_key_id, signature=signed.signature
    )
    assert _refused(changed).refusal is Refusal.BAD_SIGNATURE


def test_the_workstation_policy_file_is_read_strictly() -> None:
    policy = parse_policy(b'max_risk = "medium"\ndeny = ["reboot-with-notice-linux"]\n')
    assert (policy.max_risk, policy.allow, policy.deny) == (
        Risk.MEDIUM,
        None,
        frozenset({"reboot-with-notice-linux"}),
    )
    for bad, why in (
        (b'max_risk = "extreme"', "not one of low, medium, high"),
        (b'maxrisk = "low"', "unknown key maxrisk"),
        (b'allow = "flush-dns"', "must be a list of script ids"),
        (b"allow = [", "not a TOML policy"),
    ):
        with pytest.raises(PolicyError, match=why):
            parse_policy(bad)
