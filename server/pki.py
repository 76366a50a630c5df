"""The Sonde CA: it signs the server's certificate and every agent's, and nothing else.

Keys are ECDSA P-256 for TLS; the dispatch and catalog keys are Ed25519 (they sign remediation
envelopes and catalog entries). The server reads only the catalog's public key, catalog.pub:
`init` makes catalog.key for the demo beside it, and in production the admin moves catalog.key
to the offline machine that signs the catalog (docs/remediation.md, "Signing and publishing").
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from sonde.ed25519_keys import NotAnEd25519Key, ed25519_public_key
from sonde.identity import agent_id_from_public_key
from sonde.private_files import write_private_file
from sonde.server.domain.clock import utc_now
from sonde.server.errors import InvalidArgument, Unauthenticated

CA_VALIDITY = dt.timedelta(days=3650)
SERVER_VALIDITY = dt.timedelta(days=825)
AGENT_VALIDITY = dt.timedelta(days=825)
# Certificates start a little in the past: a workstation whose clock lags still accepts them.
BACKDATE = dt.timedelta(minutes=5)


@dataclass(frozen=True)
class PkiPaths:
    """Where `sonde-server init` keeps the CA and the server's keys (every file owner-only)."""

    root: Path

    @property
    def ca_certificate(self) -> Path:
        return self.root / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.root / "ca.key"

    @property
    def server_certificate(self) -> Path:
        return self.root / "server.crt"

    @property
    def server_key(self) -> Path:
        return self.root / "server.key"

    @property
    def dispatch_key(self) -> Path:
        return self.root / "dispatch.key"

    @property
    def dispatch_public_key(self) -> Path:
        """The dispatch key's public half (PEM), sent to agents at enrollment: they pin it."""
        return self.root / "dispatch.pub"

    @property
    def catalog_key(self) -> Path:
        return self.root / "catalog.key"

    @property
    def catalog_public_key(self) -> Path:
        """The catalog's public key (PEM): all the server, and every replica, needs of it."""
        return self.root / "catalog.pub"

    @property
    def private_keys(self) -> tuple[Path, ...]:
        return (self.ca_key, self.server_key, self.dispatch_key, self.catalog_key)


def _pem_key(key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def fingerprint(certificate: x509.Certificate) -> str:
    """SHA-256 of the DER certificate, hex: what the agent registry stores."""
    return hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).hexdigest()


def _subject_alternative_names(hosts: list[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    seen: set[str] = set()
    for host in ["localhost", "127.0.0.1", "::1", *hosts]:
        if host in seen:
            continue
        seen.add(host)
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


@dataclass(frozen=True)
class CertificateAuthority:
    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def certificate_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    @property
    def certificate_der(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.DER)

    @classmethod
    def create(cls, name: str = "Sonde CA") -> CertificateAuthority:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = utc_now()
        certificate = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(now + CA_VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .sign(key, hashes.SHA256())
        )
        return cls(certificate, key)

    @classmethod
    def load(cls, paths: PkiPaths) -> CertificateAuthority:
        certificate = x509.load_pem_x509_certificate(paths.ca_certificate.read_bytes())
        key = serialization.load_pem_private_key(paths.ca_key.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{paths.ca_key} is not an ECDSA key")
        return cls(certificate, key)

    def _issue(
        self,
        subject: x509.Name,
        public_key: ec.EllipticCurvePublicKey,
        validity: dt.timedelta,
        usage: x509.ObjectIdentifier,
        alternative_names: list[x509.GeneralName],
    ) -> x509.Certificate:
        now = utc_now()
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.certificate.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(now + validity)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=True,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
        )
        if alternative_names:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(alternative_names), critical=False
            )
        return builder.sign(self.key, hashes.SHA256())

    def issue_server(self, hosts: list[str]) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sonde-server")])
        certificate = self._issue(
            subject,
            key.public_key(),
            SERVER_VALIDITY,
            ExtendedKeyUsageOID.SERVER_AUTH,
            _subject_alternative_names(hosts),
        )
        return certificate, key

    def sign_agent_request(self, csr_der: bytes) -> tuple[str, x509.Certificate]:
        """Check an agent's certificate request and sign it; the id comes from its public key."""
        try:
            csr = x509.load_der_x509_csr(csr_der)
        except ValueError:
            raise InvalidArgument("the certificate request is not a DER PKCS#10 request") from None
        if not csr.is_signature_valid:
            raise InvalidArgument("the certificate request's signature does not verify")
        public_key = csr.public_key()
        if not isinstance(public_key, ec.EllipticCurvePublicKey) or not isinstance(
            public_key.curve, ec.SECP256R1
        ):
            raise InvalidArgument("the agent key must be ECDSA P-256")
        agent_id = agent_id_from_public_key(public_key)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, agent_id)])
        certificate = self._issue(
            subject,
            public_key,
            AGENT_VALIDITY,
            ExtendedKeyUsageOID.CLIENT_AUTH,
            [x509.UniformResourceIdentifier(f"urn:sonde:agent:{agent_id}")],
        )
        return agent_id, certificate


def agent_id_from_certificate(pem: bytes) -> str:
    """The agent id a verified client certificate stands for.

    TLS has already checked that the certificate chains to our CA; the id is recomputed from the
    public key and must agree with the common name, so a certificate cannot claim another id.
    """
    certificate = x509.load_pem_x509_certificate(pem)
    public_key = certificate.public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        raise Unauthenticated("the client certificate does not carry an agent key")
    agent_id = agent_id_from_public_key(public_key)
    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(names) != 1 or names[0].value != agent_id:
        raise Unauthenticated("the client certificate's name does not match its key")
    return agent_id


def initialise(paths: PkiPaths, hosts: list[str]) -> CertificateAuthority:
    """Create the CA, the server certificate, and the dispatch and catalog keys."""
    paths.root.mkdir(mode=0o700, parents=True, exist_ok=True)
    authority = CertificateAuthority.create()
    write_private_file(paths.ca_key, _pem_key(authority.key))
    write_private_file(paths.ca_certificate, authority.certificate_pem)
    write_server_certificate(paths, authority, hosts)
    dispatch_key = ed25519.Ed25519PrivateKey.generate()
    write_private_file(paths.dispatch_key, _pem_key(dispatch_key))
    write_dispatch_public_key(paths, dispatch_key.public_key())
    catalog_key = ed25519.Ed25519PrivateKey.generate()
    write_private_file(paths.catalog_key, _pem_key(catalog_key))
    write_catalog_public_key(paths, catalog_key.public_key())
    return authority


def write_catalog_public_key(paths: PkiPaths, public_key: ed25519.Ed25519PublicKey) -> None:
    write_private_file(
        paths.catalog_public_key,
        public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    )


def write_dispatch_public_key(paths: PkiPaths, public_key: ed25519.Ed25519PublicKey) -> None:
    write_private_file(
        paths.dispatch_public_key,
        public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    )


class DispatchKeyDamaged(ValueError):
    """pki/dispatch.pub or dispatch.key is there but is not an Ed25519 key: says which file."""


def load_dispatch_public_key(paths: PkiPaths) -> ed25519.Ed25519PublicKey | None:
    """The dispatch public key agents pin (pki/dispatch.pub), or None when neither it nor
    dispatch.key exists. A data folder from before dispatch.pub has it written once from
    dispatch.key here, at the start, so the enrollment path never touches the private key."""
    path = paths.dispatch_public_key
    try:
        pem = path.read_bytes()
    except FileNotFoundError:
        try:
            private_pem = paths.dispatch_key.read_bytes()
        except FileNotFoundError:
            return None
        try:
            private = serialization.load_pem_private_key(private_pem, password=None)
        except (ValueError, TypeError):
            private = None
        if not isinstance(private, ed25519.Ed25519PrivateKey):
            raise DispatchKeyDamaged(
                f"{paths.dispatch_key} is not an Ed25519 private key (PEM)"
            ) from None
        write_dispatch_public_key(paths, private.public_key())
        return private.public_key()
    try:
        return ed25519_public_key(pem)
    except NotAnEd25519Key:
        raise DispatchKeyDamaged(
            f"{path} is not an Ed25519 public key (PEM); delete it and start the server again "
            f"to write it from {paths.dispatch_key.name}"
        ) from None


class CatalogKeyDamaged(ValueError):
    """pki/catalog.pub is there but is not an Ed25519 public key: says which file and how to
    write it again."""


def load_catalog_public_key(paths: PkiPaths) -> ed25519.Ed25519PublicKey | None:
    """The pinned catalog public key, or None when pki/catalog.pub is absent (a data folder
    from before it existed: the catalog cannot be published until the admin writes it).
    Never the private key, even when catalog.key is beside it."""
    path = paths.catalog_public_key
    try:
        pem = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        return ed25519_public_key(pem)
    except NotAnEd25519Key:
        raise CatalogKeyDamaged(
            f"{path} is not an Ed25519 public key (PEM); write it again with "
            f"`sonde-catalog public-key --key catalog.key > {path}`"
        ) from None


def write_server_certificate(
    paths: PkiPaths, authority: CertificateAuthority, hosts: list[str]
) -> None:
    certificate, key = authority.issue_server(hosts)
    write_private_file(paths.server_key, _pem_key(key))
    write_private_file(
        paths.server_certificate, certificate.public_bytes(serialization.Encoding.PEM)
    )
