"""Run orders as a server makes them, for the agent's tests: a test's own catalog and
dispatch keys, catalog entries signed for real, orders signed (or not) as a test needs."""

from __future__ import annotations

import datetime
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from sonde.catalog.bundle import CatalogSource, sign_entries
from sonde.catalog.envelope import sign_order
from sonde.v1 import agent_pb2, remediation_pb2
from tests.integration.agent.fake_server import FakeServer, run_agent_command
from tests.support.catalog_bundles import manifest_text

SCRIPTS = Path(__file__).resolve().parents[3] / "scripts"


def raw(key: ed25519.Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def agent_id_of(state: Path) -> str:
    return str(json.loads((state / "agent.json").read_text())["agent_id"])


async def enrolled_with_keys(
    fake_server: FakeServer, agent_command: list[str], state: Path
) -> OrderMaker:
    """`state` enrolled by the real `sonde-agent enroll` with a server that sends a new
    OrderMaker's catalog and dispatch keys; that maker, with the agent's id."""
    maker = OrderMaker()
    fake_server.enrollment.catalog_public_key = raw(maker.catalog_key)
    fake_server.enrollment.dispatch_public_key = raw(maker.dispatch_key)
    code, _, err = await run_agent_command(
        agent_command, "enroll", fake_server.enrollment_string(), "--state", str(state)
    )
    assert code == 0, err
    maker.agent_id = agent_id_of(state)
    return maker


def signed_entry(
    catalog_key: ed25519.Ed25519PrivateKey, manifest: bytes, script: bytes
) -> remediation_pb2.CatalogEntry:
    (entry,) = sign_entries(catalog_key, [CatalogSource(manifest, script)]).entries
    return remediation_pb2.CatalogEntry(
        id=entry.id,
        version=entry.version,
        manifest=entry.manifest,
        script=entry.script,
        catalog_key_id=entry.key_id,
        catalog_signature=entry.signature,
    )


def own_script(
    catalog_key: ed25519.Ed25519PrivateKey,
    script_id: str,
    body: str,
    *,
    risk: str = "low",
    parameters: str = "",
) -> remediation_pb2.CatalogEntry:
    """A bash catalog script of the test's own, signed by the test's catalog key."""
    manifest = manifest_text(script_id, risk=risk, parameters=parameters).encode()
    return signed_entry(catalog_key, manifest, f"#!/bin/bash\n{body}\n".encode())


def real_script(
    catalog_key: ed25519.Ed25519PrivateKey, script_id: str
) -> remediation_pb2.CatalogEntry:
    """A script of scripts/linux, exactly as it is in the repository."""
    folder = SCRIPTS / "linux"
    manifest = (folder / f"{script_id}.toml").read_bytes()
    script = (folder / f"{script_id}.sh").read_bytes()
    return signed_entry(catalog_key, manifest, script)


@dataclass
class OrderMaker:
    """The server's side of a run order: keys the agent pinned and the agent's id."""

    catalog_key: ed25519.Ed25519PrivateKey = field(
        default_factory=ed25519.Ed25519PrivateKey.generate
    )
    dispatch_key: ed25519.Ed25519PrivateKey = field(
        default_factory=ed25519.Ed25519PrivateKey.generate
    )
    agent_id: str = ""

    def order(
        self,
        entry: remediation_pb2.CatalogEntry,
        *,
        parameters: dict[str, str] | None = None,
        agent_id: str | None = None,
        expires_in: datetime.timedelta = datetime.timedelta(hours=1),
        dry_run: bool = False,
        command_id: str | None = None,
    ) -> remediation_pb2.RunScriptOrder:
        now = datetime.datetime.now(datetime.UTC)
        order = remediation_pb2.RunScriptOrder(
            command_id=command_id or uuid.uuid4().hex,
            agent_id=self.agent_id if agent_id is None else agent_id,
            parameters=parameters or {},
            dry_run=dry_run,
            requested_by="alice",
        )
        order.entry.CopyFrom(entry)
        order.issued_at.FromDatetime(now - datetime.timedelta(minutes=1))
        order.expires_at.FromDatetime(now + expires_in)
        return order

    def sign(
        self,
        order: remediation_pb2.RunScriptOrder,
        key: ed25519.Ed25519PrivateKey | None = None,
    ) -> remediation_pb2.SignedRunScript:
        return sign_order(key or self.dispatch_key, order)


def run_message(signed: remediation_pb2.SignedRunScript) -> agent_pb2.ServerMessage:
    message = agent_pb2.ServerMessage()
    message.run_script.CopyFrom(signed)
    return message
