"""A signed catalog for a benchmark: the bench's own catalog key, as production keeps one
offline, and a bundle of one tiny low-risk Linux script published to a LocalServer."""

from __future__ import annotations

import grpc
from cryptography.hazmat.primitives.asymmetric import ed25519

from bench.local_server import LocalServer
from sonde.catalog.bundle import CatalogSource, encode_bundle, sign_entries
from sonde.server.pki import PkiPaths, write_catalog_public_key
from sonde.v1 import console_pb2, console_pb2_grpc

SCRIPT_ID = "bench-say-hello"
CALL_TIMEOUT_S = 30.0

MANIFEST = f"""id = "{SCRIPT_ID}"
version = "1.0.0"
title = "Say hello"
description = "Prints one line: the dispatch benchmark's script."
platforms = ["linux"]
interpreter = "sh"
risk = "low"
timeout_s = 60
needs_admin = false
disruptive = false
reboot_required = false
idempotent = true
fixes = []
"""
SCRIPT = f'#!/bin/sh\necho "{SCRIPT_ID} ran"\n'


def set_up_catalog(server: LocalServer) -> ed25519.Ed25519PrivateKey:
    """The bench's own catalog key; the server keeps only its public half, as in production."""
    key = ed25519.Ed25519PrivateKey.generate()
    paths = PkiPaths(server.data / "pki")
    write_catalog_public_key(paths, key.public_key())
    paths.catalog_key.unlink()
    return key


def publish(server: LocalServer, key: ed25519.Ed25519PrivateKey) -> None:
    bundle = encode_bundle(sign_entries(key, [CatalogSource(MANIFEST.encode(), SCRIPT.encode())]))
    with grpc.secure_channel(server.console_address, server.console_credentials()) as channel:
        reply = console_pb2_grpc.ConsoleServiceStub(channel).PublishCatalog(
            console_pb2.PublishCatalogRequest(bundle=bundle), timeout=CALL_TIMEOUT_S
        )
    if [s.script_id for s in reply.scripts] != [SCRIPT_ID]:
        raise RuntimeError(f"the catalog was not published as expected: {reply}")
