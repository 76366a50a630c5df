"""Fixtures for the agent runtime's unit tests: a throwaway CA and the agent command."""

from __future__ import annotations

import datetime
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def make_ca(name: str = "Test CA") -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, certificate


CA = tuple[ec.EllipticCurvePrivateKey, x509.Certificate]


@pytest.fixture(scope="session")
def ca_factory() -> Callable[[str], CA]:
    """Makes a fresh self-signed CA (key, certificate) with the given name."""
    return make_ca


@pytest.fixture(scope="session")
def test_ca() -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    return make_ca()


@pytest.fixture(scope="session")
def ca_der(test_ca: tuple[ec.EllipticCurvePrivateKey, x509.Certificate]) -> bytes:
    return test_ca[1].public_bytes(serialization.Encoding.DER)


@pytest.fixture(scope="session")
def agent_command() -> list[str]:
    """The installed `sonde-agent` console script (falls back to `python -m agent.cli`)."""
    script = Path(sys.executable).parent / "sonde-agent"
    if script.exists():
        return [str(script)]
    found = shutil.which("sonde-agent")
    return [found] if found else [sys.executable, "-m", "sonde.agent.cli"]
