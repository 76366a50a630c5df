"""A remote credential's secret, sealed with AES-256-GCM under pki/credentials.key.

The secret (a password, or an SSH private key's text and its passphrase) is sealed with a
random 96-bit nonce; the associated data is everything that decides where the secret may be
sent (the credential's id, name, kind, user and hosts), so a ciphertext copied onto another
row, or a row whose hosts were widened in the database, does not open. Nothing here writes
files: server/credential_key.py reads and makes the key file.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from sonde.server.errors import InvalidArgument

CREDENTIAL_KEY_BYTES = 32
NONCE_BYTES = 12
_AD_VERSION = "sonde.credential.v1"
_KEY_ID_LABEL = b"sonde: credentials key id"
# The private keys an SSH login can use (paramiko's): DSA is gone from OpenSSH.
_SSH_KEY_TYPES = (ed25519.Ed25519PrivateKey, ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)


class CredentialSecret:
    """A decrypted secret: its repr and str never show it; `text()` and `passphrase()` do,
    for the transport that logs in with it and for nothing else."""

    __slots__ = ("_passphrase", "_text")

    def __init__(self, text: str, passphrase: str = "") -> None:
        self._text = text
        self._passphrase = passphrase

    def text(self) -> str:
        """The password, or the private key's text (OpenSSH or PEM)."""
        return self._text

    def passphrase(self) -> str:
        """The private key's passphrase; "" for none (and for passwords)."""
        return self._passphrase

    def __repr__(self) -> str:
        return "CredentialSecret(***)"

    __str__ = __repr__

    def __reduce__(self) -> str:
        raise TypeError("a credential's secret is not pickled")

    def plaintext(self) -> bytes:
        return json.dumps({"text": self._text, "passphrase": self._passphrase}).encode()

    @classmethod
    def from_plaintext(cls, plaintext: bytes) -> CredentialSecret:
        values = json.loads(plaintext)
        return cls(str(values["text"]), str(values.get("passphrase", "")))


class CredentialKey:
    """The 32-byte key credentials are sealed with; its repr never shows it."""

    __slots__ = ("_aead", "key_id")

    def __init__(self, secret: bytes) -> None:
        if len(secret) != CREDENTIAL_KEY_BYTES:
            raise ValueError(f"a credentials key is {CREDENTIAL_KEY_BYTES} bytes")
        self._aead = AESGCM(secret)
        # A public handle (HMAC of a label): a row says which key sealed it, never the key.
        self.key_id = hmac.new(secret, _KEY_ID_LABEL, hashlib.sha256).hexdigest()[:16]

    def __repr__(self) -> str:
        return f"CredentialKey(id={self.key_id})"


@dataclass(frozen=True)
class Binding:
    """What a sealed secret belongs to: changing any of it in the row makes it not open."""

    credential_id: str
    name: str
    kind: str
    user: str
    hosts: Sequence[str]

    def associated_data(self) -> bytes:
        fields = [_AD_VERSION, self.credential_id, self.name, self.kind, self.user, *self.hosts]
        return json.dumps(fields, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Sealed:
    nonce: bytes
    ciphertext: bytes  # with GCM's 16-byte tag at its end
    key_id: str


class NotOpened(Exception):
    """The sealed secret does not open with this key and this binding."""


def seal(key: CredentialKey, secret: CredentialSecret, binding: Binding) -> Sealed:
    nonce = os.urandom(NONCE_BYTES)
    ciphertext = key._aead.encrypt(nonce, secret.plaintext(), binding.associated_data())
    return Sealed(nonce, ciphertext, key.key_id)


def open_sealed(key: CredentialKey, sealed: Sealed, binding: Binding) -> CredentialSecret:
    """The secret, or NotOpened: another key, or a nonce, ciphertext or binding changed."""
    if len(sealed.nonce) != NONCE_BYTES:
        raise NotOpened("the nonce is not 12 bytes")
    try:
        plaintext = key._aead.decrypt(sealed.nonce, sealed.ciphertext, binding.associated_data())
    except InvalidTag:
        raise NotOpened("the authentication tag does not verify") from None
    return CredentialSecret.from_plaintext(plaintext)


def private_key_fingerprint(key_text: str, passphrase: str) -> str:
    """`SHA256:...` of the key's public half, as `ssh-keygen -l` prints it; InvalidArgument,
    never quoting the key, when it is not a private key or the passphrase does not open it."""
    data = key_text.encode()
    password = passphrase.encode() or None
    private: object
    try:
        if b"BEGIN OPENSSH PRIVATE KEY" in data:
            private = serialization.load_ssh_private_key(data, password)
        else:
            private = serialization.load_pem_private_key(data, password)
    except TypeError:
        if password is None:
            raise InvalidArgument(
                "the private key is encrypted: give its passphrase "
                "(SONDE_CREDENTIAL_SECRET, or the prompt)"
            ) from None
        raise InvalidArgument(
            "the private key is not encrypted, but a passphrase was given: give none"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        wrong = " or the passphrase is wrong" if password is not None else ""
        raise InvalidArgument(
            "the key file is not an OpenSSH or PEM private key that can be read" + wrong
        ) from None
    if not isinstance(private, _SSH_KEY_TYPES):
        raise InvalidArgument("an SSH private key is Ed25519, ECDSA or RSA; this one is none")
    public = private.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    blob = base64.b64decode(public.split()[1])
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    return f"SHA256:{digest}"
