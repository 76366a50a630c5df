"""Before the stream: is agent.key a private key, and are it and agent.crt this agent's?

gRPC core reads them only when it connects, and a damaged key then fails every handshake
(log lines and a reconnect loop for ever) or, when empty, aborts the process. So `run` checks
them first and refuses with one line naming the file. The check reads the DER itself, with the
standard library only: `run` keeps cryptography's ~8 MiB out (agent/cli.py). The key's public
half and the certificate's must both derive the agent id recorded in agent.json
(sonde/identity.py: SHA-256 over the SubjectPublicKeyInfo).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from pathlib import Path

_PEM = re.compile(rb"-----BEGIN ([A-Z ]+)-----\s*(.*?)\s*-----END \1-----", re.DOTALL)
_SEQUENCE, _INTEGER, _BIT_STRING, _OCTET_STRING = 0x30, 0x02, 0x03, 0x04
_PUBLIC_KEY_FIELD = 0xA1  # ECPrivateKey's [1] publicKey
_VERSION_FIELD = 0xA0  # TBSCertificate's [0] version


class DamagedCredentials(Exception):
    """A key or certificate in the state folder that cannot be this agent's; says which."""


class _Malformed(Exception):
    pass


def _element(data: bytes, at: int) -> tuple[int, int, int]:
    """(tag, start of contents, end) of the DER element at `at`."""
    if at + 2 > len(data):
        raise _Malformed
    tag, length, start = data[at], data[at + 1], at + 2
    if length & 0x80:
        size = length & 0x7F
        if not 1 <= size <= 4 or start + size > len(data):
            raise _Malformed
        length, start = int.from_bytes(data[start : start + size], "big"), start + size
    if start + length > len(data):
        raise _Malformed
    return tag, start, start + length


def _children(data: bytes, start: int, end: int) -> list[tuple[int, int, int, int]]:
    """(tag, element start, contents start, end) of each element between start and end."""
    found = []
    while start < end:
        tag, contents, after = _element(data, start)
        found.append((tag, start, contents, after))
        start = after
    if start != end:
        raise _Malformed
    return found


def _der(pem: bytes, labels: tuple[bytes, ...]) -> bytes | None:
    match = _PEM.search(pem)
    if match is None or match.group(1) not in labels:
        return None
    try:
        return base64.b64decode(b"".join(match.group(2).split()), validate=True)
    except binascii.Error:
        return None


def _agent_id(spki: bytes) -> str:
    digest = hashlib.sha256(spki).digest()
    return base64.b32encode(digest).decode("ascii").lower()[:26]


def key_agent_id(pem: bytes) -> str | None:
    """The agent id of a PKCS#8 EC key's public half; None when it is no such key."""
    der = _der(pem, (b"PRIVATE KEY",))
    if der is None:
        return None
    try:
        tag, start, end = _element(der, 0)
        fields = _children(der, start, end) if tag == _SEQUENCE and end == len(der) else []
        if len(fields) < 3 or fields[1][0] != _SEQUENCE or fields[2][0] != _OCTET_STRING:
            return None
        algorithm = der[fields[1][1] : fields[1][3]]
        tag, start, end = _element(der, fields[2][2])
        if tag != _SEQUENCE:
            return None
        for tag, _, contents, after in _children(der, start, end):
            if tag == _PUBLIC_KEY_FIELD:
                bit_tag, _, bit_end = _element(der, contents)
                if bit_tag != _BIT_STRING or bit_end != after:
                    return None
                public_key = der[contents:after]
                body = algorithm + public_key
                return _agent_id(bytes([_SEQUENCE]) + _length(len(body)) + body)
    except _Malformed:
        return None
    return None


def certificate_agent_id(pem: bytes) -> str | None:
    """The agent id of an X.509 certificate's public key; None when it is no certificate."""
    der = _der(pem, (b"CERTIFICATE",))
    if der is None:
        return None
    try:
        tag, start, end = _element(der, 0)
        if tag != _SEQUENCE or end != len(der):
            return None
        tbs_tag, tbs_start, tbs_end = _element(der, start)
        fields = _children(der, tbs_start, tbs_end) if tbs_tag == _SEQUENCE else []
        if fields and fields[0][0] == _VERSION_FIELD:
            fields = fields[1:]
        # serial, signature, issuer, validity, subject, subjectPublicKeyInfo
        if len(fields) < 6 or fields[0][0] != _INTEGER or fields[5][0] != _SEQUENCE:
            return None
        return _agent_id(der[fields[5][1] : fields[5][3]])
    except _Malformed:
        return None


def _length(size: int) -> bytes:
    if size < 0x80:
        return bytes([size])
    octets = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(octets)]) + octets


def check_credentials(
    agent_id: str, key_path: Path, key_pem: bytes, cert_path: Path, cert_pem: bytes
) -> None:
    """Refuse, naming the file, a key or certificate gRPC would fail on or that is another's."""
    fix = f"enroll again: sonde-agent enroll TOKEN --state {key_path.parent} --force"
    from_key = key_agent_id(key_pem)
    if from_key is None:
        what = "empty" if not key_pem.strip() else "not a PEM private key of a Sonde agent"
        raise DamagedCredentials(f"{key_path} is damaged ({what}); {fix}")
    if from_key != agent_id:
        raise DamagedCredentials(
            f"{key_path} is not this agent's key: it belongs to agent {from_key}, and "
            f"agent.json says {agent_id}; restore the right file from a backup, or {fix}"
        )
    from_certificate = certificate_agent_id(cert_pem)
    if from_certificate is None:
        what = "empty" if not cert_pem.strip() else "not a PEM certificate"
        raise DamagedCredentials(f"{cert_path} is damaged ({what}); {fix}")
    if from_certificate != agent_id:
        raise DamagedCredentials(
            f"{cert_path} is not this agent's certificate: it names agent {from_certificate}, "
            f"and agent.json says {agent_id}; restore the right file from a backup, or {fix}"
        )
