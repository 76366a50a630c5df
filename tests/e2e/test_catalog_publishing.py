"""The catalog key ceremony end to end, with the real programs: `sonde-server init` makes the
demo's catalog key and its public half; the key moves "offline" (out of the data folder) and
the server, restarted, still publishes what it signs; `sonde-catalog sign` and `verify`;
`sonde catalog publish`; `sonde scripts` as l1, l2 and admin; a tampered bundle and one signed
by another key are refused whole; an enrolled agent pins the server's catalog public key."""

from __future__ import annotations

import base64
import json
import shutil
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from sonde.catalog.bundle import key_id, load_private_key, load_public_key
from tests.support.catalog_bundles import source, write_catalog_folder
from tests.support.deployment import Deployment, deployment, run

TIERS = {
    "flush-dns": source("flush-dns", title="Flush the DNS cache"),
    "restart-unit": source("restart-unit", risk="medium"),
    "reboot-now": source("reboot-now", risk="high"),
}


def sign(key: Path, folder: Path, out: Path) -> dict[str, Any]:
    done = run("sonde-catalog", "sign", "--key", str(key), str(folder), "--out", str(out), "--json")
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def sonde_cli(sonde: Deployment, token: str, *args: str) -> tuple[int, dict[str, Any]]:
    done = run("sonde", *args, "--json", env=sonde.cli_env(token))
    return done.returncode, json.loads(done.stdout)


def listed_ids(sonde: Deployment, token: str) -> list[str]:
    code, listed = sonde_cli(sonde, token, "scripts")
    assert code == 0, listed
    return [entry["script"]["id"] for entry in listed.get("scripts", [])]


def test_init_writes_the_catalog_public_key_and_says_where_the_private_key_is(
    tmp_path: Path,
) -> None:
    data = tmp_path / "server"
    done = run("sonde-server", "init", "--data", str(data), "--listen", "127.0.0.1:0",
               "--agent-listen", "127.0.0.1:0")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"catalog key    : {data / 'pki' / 'catalog.key'}" in done.stdout
    assert "In production move catalog.key to an offline machine" in done.stdout
    public = data / "pki" / "catalog.pub"
    key = load_private_key((data / "pki" / "catalog.key").read_bytes())
    assert key_id(load_public_key(public.read_bytes())) == key_id(key.public_key())
    shown = run("sonde-catalog", "public-key", "--key", str(data / "pki" / "catalog.key"))
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.encode() == public.read_bytes()


def test_sign_offline_publish_and_list_by_role(sonde: Deployment, tmp_path: Path) -> None:
    # The ceremony: catalog.key leaves the data folder; the server restarts without it.
    offline = tmp_path / "offline"
    offline.mkdir(mode=0o700)
    key = offline / "catalog.key"
    shutil.move(sonde.data / "pki" / "catalog.key", key)
    sonde.stop()
    sonde.start_server()
    folder = write_catalog_folder(tmp_path / "catalog", TIERS)
    bundle = tmp_path / "catalog.bundle"
    signed = sign(key, folder, bundle)
    assert [e["id"] for e in signed["entries"]] == sorted(TIERS)
    verified = run(
        "sonde-catalog", "verify", "--public-key", str(sonde.data / "pki" / "catalog.pub"),
        str(bundle),
    )  # fmt: skip
    assert verified.returncode == 0, verified.stderr
    assert "3 scripts, every one signed by key" in verified.stdout

    l1, l2 = sonde.add_user("lena", "l1"), sonde.add_user("lars", "l2")
    code, refused = sonde_cli(sonde, l2, "catalog", "publish", str(bundle))
    assert code == 1
    assert refused["error"]["message"].startswith(
        "`sonde catalog publish` needs the catalog.manage permission (admin)"
    )
    code, published = sonde_cli(sonde, sonde.admin_token, "catalog", "publish", str(bundle))
    assert code == 0, published
    assert [s.get("added") for s in published["scripts"]] == [True] * 3
    again = run("sonde", "catalog", "publish", str(bundle), env=sonde.cli_env())
    assert again.returncode == 0, again.stderr
    assert "published 0 of 3 scripts" in again.stdout
    assert "3 unchanged: published before with the same bytes" in again.stdout

    assert listed_ids(sonde, l1) == ["flush-dns"]
    assert listed_ids(sonde, l2) == ["flush-dns", "restart-unit"]
    assert listed_ids(sonde, sonde.admin_token) == ["flush-dns", "reboot-now", "restart-unit"]
    table = run("sonde", "scripts", "--all", env=sonde.cli_env(l1))
    assert table.returncode == 0, table.stderr
    assert "reboot-now" in table.stdout
    code, shown = sonde_cli(sonde, l1, "scripts", "show", "flush-dns")
    assert code == 0, shown
    assert base64.b64decode(shown["body"]) == TIERS["flush-dns"].script
    assert shown["script"]["title"] == "Flush the DNS cache"
    people = run("sonde", "scripts", "show", "flush-dns", env=sonde.cli_env(l1))
    assert "flush-dns 1.0.0: Flush the DNS cache" in people.stdout


def test_a_tampered_bundle_and_another_keys_are_refused_whole(
    sonde: Deployment, tmp_path: Path
) -> None:
    folder = write_catalog_folder(tmp_path / "catalog", TIERS)
    bundle = tmp_path / "catalog.bundle"
    sign(sonde.data / "pki" / "catalog.key", folder, bundle)
    document = json.loads(bundle.read_bytes())
    document["entries"][0]["script"] = base64.b64encode(b"#!/bin/sh\ntouch /tmp/pwned\n").decode()
    tampered = tmp_path / "tampered.bundle"
    tampered.write_text(json.dumps(document))
    public = str(sonde.data / "pki" / "catalog.pub")
    checked = run("sonde-catalog", "verify", "--public-key", public, str(tampered))
    assert checked.returncode == 1
    assert checked.stderr.startswith(
        "sonde-catalog: flush-dns 1.0.0: the signature does not verify"
    )
    published = run("sonde", "catalog", "publish", str(tampered), env=sonde.cli_env())
    assert published.returncode == 1
    assert "flush-dns 1.0.0: the signature does not verify" in published.stderr
    assert "nothing published" in published.stderr

    rogue_key = tmp_path / "rogue.key"
    rogue_key.write_bytes(
        ed25519.Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    rogue = tmp_path / "rogue.bundle"
    sign(rogue_key, folder, rogue)
    published = run("sonde", "catalog", "publish", str(rogue), env=sonde.cli_env())
    assert published.returncode == 1
    assert "signed with another key" in published.stderr
    assert listed_ids(sonde, sonde.admin_token) == []


def test_an_enrolled_agent_pins_the_servers_catalog_key_and_force_takes_anothers(
    sonde: Deployment, tmp_path: Path
) -> None:
    state = tmp_path / "agent" / "state"
    sonde.enroll_agent(state)
    pinned = state / "catalog.pub"
    assert pinned.read_bytes() == (sonde.data / "pki" / "catalog.pub").read_bytes()
    assert stat.S_IMODE(pinned.stat().st_mode) == 0o600
    with deployment(tmp_path / "other", own_keys=True) as other:
        refused = run("sonde-agent", "enroll", other.enrollment(), "--state", str(state))
        assert refused.returncode != 0
        assert "already holds an enrollment; pass --force" in refused.stderr
        assert pinned.read_bytes() == (sonde.data / "pki" / "catalog.pub").read_bytes()
        done = run("sonde-agent", "enroll", other.enrollment(), "--state", str(state), "--force")
        assert done.returncode == 0, done.stderr
        assert pinned.read_bytes() == (other.data / "pki" / "catalog.pub").read_bytes()


def test_the_real_catalog_folder_signs_and_publishes(sonde: Deployment, tmp_path: Path) -> None:
    scripts = Path(__file__).resolve().parents[2] / "scripts"
    if not scripts.is_dir():
        pytest.skip("scripts/ (the catalog) is not in this tree yet")
    bundle = tmp_path / "catalog.bundle"
    signed = sign(sonde.data / "pki" / "catalog.key", scripts, bundle)
    code, published = sonde_cli(sonde, sonde.admin_token, "catalog", "publish", str(bundle))
    assert code == 0, published
    assert len(published["scripts"]) == len(signed["entries"])
    assert listed_ids(sonde, sonde.admin_token) == sorted(e["id"] for e in signed["entries"])


def test_a_damaged_catalog_pub_refuses_the_start_and_a_missing_one_refuses_bundles(
    tmp_path: Path,
) -> None:
    sonde = Deployment(tmp_path)
    sonde.init()
    public = sonde.data / "pki" / "catalog.pub"
    genuine = public.read_bytes()
    public.write_bytes(b"-----BEGIN PUBLIC KEY-----\nbroken\n-----END PUBLIC KEY-----\n")
    refused = run("sonde-server", "run", "--data", str(sonde.data), timeout=60)
    assert refused.returncode == 1
    assert refused.stderr.splitlines() == [
        f"sonde-server: refusing to start: {public} is not an Ed25519 public key (PEM); "
        f"write it again with `sonde-catalog public-key --key catalog.key > {public}`"
    ]
    public.unlink()  # a data folder from before catalog.pub
    folder = write_catalog_folder(tmp_path / "catalog", TIERS)
    bundle = tmp_path / "catalog.bundle"
    sign(sonde.data / "pki" / "catalog.key", folder, bundle)
    sonde.start_server()
    try:
        published = run("sonde", "catalog", "publish", str(bundle), env=sonde.cli_env())
        assert published.returncode == 1
        assert "this server has no catalog public key (pki/catalog.pub)" in published.stderr
        shown = run("sonde-catalog", "public-key", "--key", str(sonde.data / "pki" / "catalog.key"))
        assert shown.stdout.encode() == genuine
    finally:
        sonde.stop()
