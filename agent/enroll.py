"""Enrollment: make the key pair here, get it certified, pin the CA, record the state."""

from __future__ import annotations

import datetime
import socket
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sonde.agent.catalog_key import CatalogKeyRefused, check_catalog_key, pin_catalog_key
from sonde.agent.dispatch_key import DISPATCH_KEY, DispatchKeyRefused
from sonde.agent.paths import CA_FILE, CERT_FILE, KEY_FILE, PENDING_KEY_FILE, STATE_FILE
from sonde.agent.pending_key import (
    PendingKeyDamaged,
    forget_pending_key,
    keep_pending_key,
    pending_key,
)
from sonde.agent.platform_info import platform_name
from sonde.agent.state import (
    AgentState,
    enrollment_problems,
    ensure_state_dir,
    is_enrolled,
    save_state,
    write_private_file,
)
from sonde.enrollment_bundle import decode_bundle
from sonde.identity import agent_id_from_public_key
from sonde.v1 import enrollment_pb2, enrollment_pb2_grpc

ENROLL_TIMEOUT_S = 20.0


class EnrollmentError(Exception):
    """Enrollment did not complete; the message is one line a person can act on."""


class ReplyLost(EnrollmentError):
    """Enroll got no answer: the server may have enrolled the key all the same."""


# What a call whose request may have reached the server ends with when its reply does not.
_REPLY_LOST = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED}
)


@dataclass(frozen=True)
class AgentKey:
    private_key: ec.EllipticCurvePrivateKey
    agent_id: str

    def private_pem(self) -> bytes:
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def public_spki(self) -> bytes:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )


def generate_key() -> AgentKey:
    """A fresh ECDSA P-256 key pair; the id follows from its public half."""
    return _agent_key(ec.generate_private_key(ec.SECP256R1()))


def _agent_key(key: ec.EllipticCurvePrivateKey) -> AgentKey:
    return AgentKey(key, agent_id_from_public_key(key.public_key()))


def enrollment_key(state_dir: Path, ca_der: bytes, *, force: bool) -> AgentKey:
    """The key pending for this server (a retry whose reply was lost), or a new one, kept
    in the state folder before it is sent: the same machine is never enrolled twice."""
    if force:
        forget_pending_key(state_dir)
    else:
        try:
            kept = pending_key(state_dir, ca_der)
        except PendingKeyDamaged as error:
            raise EnrollmentError(str(error)) from None
        if kept is not None:
            return _agent_key(kept)
    key = generate_key()
    keep_pending_key(state_dir, key.private_key, ca_der)
    return key


def build_csr(key: AgentKey) -> bytes:
    """A PKCS#10 request (DER) with CN = agent id, signed by the key it certifies."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, key.agent_id)])
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject)
    return csr.sign(key.private_key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def check_issued_certificate(
    certificate_der: bytes, ca_der: bytes, key: AgentKey
) -> x509.Certificate:
    """The certificate must be signed by the pinned CA and carry our own public key."""
    try:
        certificate = x509.load_der_x509_certificate(certificate_der)
    except ValueError as error:
        raise EnrollmentError(
            f"the server returned a certificate that does not parse: {error}"
        ) from None
    ca = x509.load_der_x509_certificate(ca_der)
    try:
        certificate.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        raise EnrollmentError(
            "the server returned a certificate that is not signed by the CA in the "
            "enrollment string; refusing it"
        ) from None
    spki = certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if spki != key.public_spki():
        raise EnrollmentError(
            "the server returned a certificate for another public key; refusing it"
        )
    return certificate


def _pem(der: bytes) -> bytes:
    return x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)


def request_certificate(
    bundle: enrollment_pb2.EnrollmentBundle, request: enrollment_pb2.EnrollRequest
) -> enrollment_pb2.EnrollResponse:
    """Call Enroll over TLS, trusting only the CA from the enrollment string."""
    credentials = grpc.ssl_channel_credentials(root_certificates=_pem(bundle.ca_certificate_der))
    options = [("grpc.ssl_target_name_override", bundle.server_name)]
    with grpc.secure_channel(bundle.console_address, credentials, options=options) as channel:
        stub = enrollment_pb2_grpc.EnrollmentServiceStub(channel)
        try:
            response: enrollment_pb2.EnrollResponse = stub.Enroll(request, timeout=ENROLL_TIMEOUT_S)
        except grpc.RpcError as error:
            code = error.code() if isinstance(error, grpc.Call) else grpc.StatusCode.UNKNOWN
            details = error.details() if isinstance(error, grpc.Call) else str(error)
            if code not in _REPLY_LOST:
                raise EnrollmentError(
                    f"enrollment refused ({code.name}): {details or 'no details'}"
                ) from None
            if code == grpc.StatusCode.UNAVAILABLE:
                raise ReplyLost(
                    f"cannot reach the server at {bundle.console_address} (UNAVAILABLE): {details}"
                ) from None
            raise ReplyLost(
                f"no answer from the server at {bundle.console_address} ({code.name}): "
                f"{details or 'no details'}"
            ) from None
    return response


def _refuse_unsafe_folder(state_dir: Path) -> None:
    """A link or another user's folder would put the key where someone else chose."""
    problems = enrollment_problems(state_dir)
    if problems:
        raise EnrollmentError("\n".join(f"refusing to enroll: {line}" for line in problems))


def enroll(token: str, state_dir: Path, *, force: bool = False) -> AgentState:
    """Enroll this workstation with the server the token names; return the recorded state."""
    try:
        bundle = decode_bundle(token)
    except ValueError as error:
        raise EnrollmentError(str(error)) from None
    _refuse_unsafe_folder(state_dir)
    if is_enrolled(state_dir) and not force:
        raise EnrollmentError(
            f"{state_dir} already holds an enrollment; pass --force to replace it "
            "(the old identity stops working on this machine)"
        )
    ensure_state_dir(state_dir)
    _refuse_unsafe_folder(state_dir)  # again: made after the first look, it may be a stranger's
    key = enrollment_key(state_dir, bundle.ca_certificate_der, force=force)
    request = enrollment_pb2.EnrollRequest(
        token_id=bundle.token_id,
        secret=bundle.secret,
        csr_der=build_csr(key),
        hostname=socket.gethostname(),
        platform=platform_name(),
    )
    try:
        response = request_certificate(bundle, request)
    except ReplyLost as error:
        raise EnrollmentError(
            f"{error}\n(this machine's key for the enrollment is kept in "
            f"{state_dir / PENDING_KEY_FILE}: run the same command again to finish it as the "
            "same machine)"
        ) from None
    certificate = check_issued_certificate(response.certificate_der, bundle.ca_certificate_der, key)
    if response.agent_id and response.agent_id != key.agent_id:
        raise EnrollmentError(
            f"the server named this agent {response.agent_id!r} but its key says {key.agent_id!r}"
        )
    try:
        # Before anything is written: a refused key leaves the old enrollment as it was.
        check_catalog_key(state_dir, response.catalog_public_key, replace=force)
        DISPATCH_KEY.check(state_dir, response.dispatch_public_key, replace=force)
    except (CatalogKeyRefused, DispatchKeyRefused) as error:
        raise EnrollmentError(str(error)) from None
    # The string's list is the admin's (every replica); an older server's names one address,
    # which the server that enrolled us may correct.
    addresses = list(bundle.agent_addresses) or [response.agent_address or bundle.agent_address]
    state = AgentState(
        agent_id=key.agent_id,
        agent_addresses=tuple(addresses),
        console_address=bundle.console_address,
        server_name=response.server_name or bundle.server_name,
        enrolled_at=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    )
    # Forget the old identity first: a crash below must not pair the old agent.json
    # with a new key.
    (state_dir / STATE_FILE).unlink(missing_ok=True)
    # agent.key is written once the server has certified the key; agent.json comes last,
    # so a half-written enrollment never looks complete. The pending key goes after it.
    write_private_file(state_dir / KEY_FILE, key.private_pem())
    write_private_file(state_dir / CERT_FILE, certificate.public_bytes(serialization.Encoding.PEM))
    write_private_file(state_dir / CA_FILE, _pem(bundle.ca_certificate_der))
    pin_catalog_key(state_dir, response.catalog_public_key, replace=force)
    DISPATCH_KEY.pin(state_dir, response.dispatch_public_key, replace=force)
    save_state(state_dir, state)
    forget_pending_key(state_dir)
    return state
