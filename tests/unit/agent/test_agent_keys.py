"""The agent's key pair and CSR: made here, owner-only on disk, the id bound to the key."""

from __future__ import annotations

import datetime
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sonde.agent.enroll import EnrollmentError, build_csr, check_issued_certificate, generate_key
from sonde.agent.state import write_private_file
from sonde.identity import agent_id_from_public_key, is_agent_id

CA = tuple[ec.EllipticCurvePrivateKey, x509.Certificate]
MakeCA = Callable[[str], CA]


def _issue(ca: CA, public_key: ec.EllipticCurvePublicKey) -> bytes:
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "agent")]))
        .issuer_name(ca[1].subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(ca[0], hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.DER)


def test_key_is_p256_and_written_0600_as_pkcs8(tmp_path: Path) -> None:
    key = generate_key()
    assert isinstance(key.private_key.curve, ec.SECP256R1)
    path = tmp_path / "agent.key"
    write_private_file(path, key.private_pem())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    pem = path.read_bytes()
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS8, unencrypted
    loaded = serialization.load_pem_private_key(pem, password=None)
    assert agent_id_from_public_key(loaded.public_key()) == key.agent_id


def test_the_id_matches_the_csr_public_key_and_common_name() -> None:
    key = generate_key()
    csr = x509.load_der_x509_csr(build_csr(key))
    assert csr.is_signature_valid
    assert is_agent_id(key.agent_id)
    assert agent_id_from_public_key(csr.public_key()) == key.agent_id
    common_names = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    assert [cn.value for cn in common_names] == [key.agent_id]


def test_two_keys_get_two_ids() -> None:
    assert generate_key().agent_id != generate_key().agent_id


def test_a_certificate_from_the_pinned_ca_for_our_key_is_accepted(ca_factory: MakeCA) -> None:
    ca = ca_factory("Pinned CA")
    key = generate_key()
    der = _issue(ca, key.private_key.public_key())
    ca_der = ca[1].public_bytes(serialization.Encoding.DER)
    accepted = check_issued_certificate(der, ca_der, key)
    assert accepted.public_bytes(serialization.Encoding.DER) == der


def test_a_certificate_from_another_ca_is_refused(ca_factory: MakeCA) -> None:
    pinned, other = ca_factory("Pinned CA"), ca_factory("Other CA")
    key = generate_key()
    der = _issue(other, key.private_key.public_key())
    with pytest.raises(EnrollmentError, match="not signed by the CA in the enrollment string"):
        check_issued_certificate(der, pinned[1].public_bytes(serialization.Encoding.DER), key)


def test_a_certificate_for_another_key_is_refused(ca_factory: MakeCA) -> None:
    ca = ca_factory("Pinned CA")
    key, stranger = generate_key(), generate_key()
    der = _issue(ca, stranger.private_key.public_key())
    with pytest.raises(EnrollmentError, match="certificate for another public key"):
        check_issued_certificate(der, ca[1].public_bytes(serialization.Encoding.DER), key)


def test_garbage_instead_of_a_certificate_is_refused(ca_factory: MakeCA) -> None:
    ca = ca_factory("Pinned CA")
    ca_der = ca[1].public_bytes(serialization.Encoding.DER)
    with pytest.raises(EnrollmentError, match="does not parse"):
        check_issued_certificate(b"junk", ca_der, generate_key())
