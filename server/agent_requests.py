"""An agent's certificate request, checked whole before enrollment looks at its token.

The CA (server/pki.py) signs only what passes here: a DER PKCS#10 request of at most
MAX_CSR_BYTES with nothing after it, an ECDSA P-256 key, an ECDSA signature over SHA-256 or
longer that verifies with that key. The agent id is derived from the key; the request's
subject and any extensions it asks for are ignored (the CA writes its own).
"""

from __future__ import annotations

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509.oid import SignatureAlgorithmOID

from sonde.identity import agent_id_from_public_key
from sonde.server.errors import InvalidArgument

MAX_CSR_BYTES = 8192
SIGNATURE_ALGORITHMS = frozenset(
    {
        SignatureAlgorithmOID.ECDSA_WITH_SHA256,
        SignatureAlgorithmOID.ECDSA_WITH_SHA384,
        SignatureAlgorithmOID.ECDSA_WITH_SHA512,
    }
)


def check_agent_request(csr_der: bytes) -> str:
    """The agent id the request's key stands for, or InvalidArgument saying what is wrong."""
    if not csr_der:
        raise InvalidArgument("the enrollment carries no certificate request")
    if len(csr_der) > MAX_CSR_BYTES:
        raise InvalidArgument(
            f"the certificate request is {len(csr_der):,} bytes; the limit is {MAX_CSR_BYTES:,}"
        )
    try:
        csr = x509.load_der_x509_csr(csr_der)
        public_key = csr.public_key()
    except (ValueError, UnsupportedAlgorithm):
        raise InvalidArgument("the certificate request is not a DER PKCS#10 request") from None
    if not isinstance(public_key, ec.EllipticCurvePublicKey) or not isinstance(
        public_key.curve, ec.SECP256R1
    ):
        raise InvalidArgument(f"the agent key must be ECDSA P-256, not {_key_kind(public_key)}")
    if csr.signature_algorithm_oid not in SIGNATURE_ALGORITHMS:
        raise InvalidArgument(
            "the certificate request must be signed with ECDSA over SHA-256, -384 or -512, "
            f"not {csr.signature_algorithm_oid.dotted_string}"
        )
    if not csr.is_signature_valid:
        raise InvalidArgument("the certificate request's signature does not verify")
    return agent_id_from_public_key(public_key)


def _key_kind(public_key: object) -> str:
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return f"ECDSA {public_key.curve.name}"
    if isinstance(public_key, rsa.RSAPublicKey):
        return f"RSA-{public_key.key_size}"
    if isinstance(public_key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return "an EdDSA key"
    return "this kind of key"
