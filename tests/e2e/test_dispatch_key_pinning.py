"""The dispatch key's public half end to end, with the real programs: `sonde-server init`
writes pki/dispatch.pub beside dispatch.key; an enrolled agent pins it (owner-only) and
--force takes another server's; a data folder from before dispatch.pub has it written at the
start; a damaged dispatch.pub refuses the start in one line."""

from __future__ import annotations

import stat
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from tests.support.deployment import Deployment, deployment, run


def public_pem_of_private(path: Path) -> bytes:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(key, ed25519.Ed25519PrivateKey)
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def test_an_enrolled_agent_pins_the_servers_dispatch_key_and_force_takes_anothers(
    sonde: Deployment, tmp_path: Path
) -> None:
    pki = sonde.data / "pki"
    assert (pki / "dispatch.pub").read_bytes() == public_pem_of_private(pki / "dispatch.key")
    state = tmp_path / "agent" / "state"
    sonde.enroll_agent(state)
    pinned = state / "dispatch.pub"
    assert pinned.read_bytes() == (pki / "dispatch.pub").read_bytes()
    assert stat.S_IMODE(pinned.stat().st_mode) == 0o600
    with deployment(tmp_path / "other", own_keys=True) as other:
        done = run("sonde-agent", "enroll", other.enrollment(), "--state", str(state), "--force")
        assert done.returncode == 0, done.stderr
        assert pinned.read_bytes() == (other.data / "pki" / "dispatch.pub").read_bytes()
        assert pinned.read_bytes() != (pki / "dispatch.pub").read_bytes()


def test_a_missing_dispatch_pub_is_written_at_the_start_and_a_damaged_one_refuses_it(
    tmp_path: Path,
) -> None:
    sonde = Deployment(tmp_path)
    sonde.init()
    public = sonde.data / "pki" / "dispatch.pub"
    public.write_bytes(b"-----BEGIN PUBLIC KEY-----\nbroken\n-----END PUBLIC KEY-----\n")
    refused = run("sonde-server", "run", "--data", str(sonde.data), timeout=60)
    assert refused.returncode == 1
    assert refused.stderr.splitlines() == [
        f"sonde-server: refusing to start: {public} is not an Ed25519 public key (PEM); "
        "delete it and start the server again to write it from dispatch.key"
    ]
    public.unlink()  # a data folder from before dispatch.pub
    sonde.start_server()
    try:
        expected = public_pem_of_private(sonde.data / "pki" / "dispatch.key")
        assert public.read_bytes() == expected
        assert stat.S_IMODE(public.stat().st_mode) == 0o600
        state = tmp_path / "agent" / "state"
        sonde.enroll_agent(state)
        assert (state / "dispatch.pub").read_bytes() == expected
    finally:
        sonde.stop()
