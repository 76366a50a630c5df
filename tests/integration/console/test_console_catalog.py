"""PublishCatalog, ListScripts and GetScript through a real gRPC server on SQLite and
PostgreSQL: a bundle is verified against the pinned key and published whole or not at all,
versions are immutable, and the list follows the caller's scripts.run.<risk>."""

from __future__ import annotations

import json

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy import func, select

from sonde.catalog.bundle import key_id, signed_message
from sonde.server.storage.tables import audit_log, catalog_scripts
from sonde.v1 import console_pb2 as pb
from tests.integration.console.harness import Console
from tests.support.catalog_bundles import signed_bundle, source

ADMIN, ANN, BOB = Console.as_user("admin"), Console.as_user("ann"), Console.as_user("bob")
SECRET_PARAMETER = """
[[parameters]]
name = "password"
type = "string"
pattern = ".{1,64}"
description = "The account's new password."
secret = true
default = "hunter2"

[[parameters]]
name = "days"
type = "int"
minimum = 1
maximum = 30
description = "How many days of logs to keep."
default = 7
"""


def three_tiers(key: ed25519.Ed25519PrivateKey) -> bytes:
    return signed_bundle(
        key,
        source("flush-dns", title="Flush the DNS cache"),
        source("restart-unit", risk="medium"),
        source("reset-network", risk="high", platform="windows", interpreter="powershell"),
    )


async def rows(console: Console) -> int:
    count = select(func.count()).select_from(catalog_scripts)
    return int(await console.services.db.read(lambda c: c.execute(count).scalar_one()))


async def publish(console: Console, bundle: bytes) -> pb.PublishCatalogResponse:
    request = pb.PublishCatalogRequest(bundle=bundle)
    response: pb.PublishCatalogResponse = await console.stub.PublishCatalog(request, metadata=ADMIN)
    return response


async def refused(console: Console, bundle: bytes) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await publish(console, bundle)
    return caught.value


async def test_a_signed_bundle_is_published_and_each_role_lists_what_it_may_run(
    console: Console,
) -> None:
    published = await publish(console, three_tiers(console.catalog_key))
    assert published.key_id == key_id(console.catalog_key.public_key())
    assert [(s.script_id, s.added) for s in published.scripts] == [
        ("flush-dns", True),
        ("reset-network", True),
        ("restart-unit", True),
    ]
    expected = {
        ANN: ["flush-dns"],
        BOB: ["flush-dns", "restart-unit"],
        ADMIN: ["flush-dns", "reset-network", "restart-unit"],
    }
    for who, ids in expected.items():
        listed = await console.stub.ListScripts(pb.ListScriptsRequest(), metadata=who)
        assert [s.script.id for s in listed.scripts] == ids, who
        assert all(s.may_run for s in listed.scripts)
    everything = await console.stub.ListScripts(pb.ListScriptsRequest(all_risks=True), metadata=ANN)
    assert [(s.script.id, s.may_run) for s in everything.scripts] == [
        ("flush-dns", True),
        ("reset-network", False),
        ("restart-unit", False),
    ]
    windows = await console.stub.ListScripts(
        pb.ListScriptsRequest(platform="windows"), metadata=ADMIN
    )
    assert [s.script.id for s in windows.scripts] == ["reset-network"]
    first = (await console.stub.ListScripts(pb.ListScriptsRequest(), metadata=ANN)).scripts[0]
    assert first.script.title == "Flush the DNS cache"
    assert first.script.risk == "low"
    assert first.script.published_by == "admin"
    assert first.versions == 1


async def test_publishing_is_audited_in_its_transaction(console: Console) -> None:
    await publish(console, three_tiers(console.catalog_key))
    query = select(audit_log.c.actor, audit_log.c.detail, audit_log.c.result).where(
        audit_log.c.action == "catalog.publish"
    )
    (actor, detail, result), *_ = await console.services.db.read(lambda c: c.execute(query).all())
    assert (actor, result) == ("admin", "ok")
    assert json.loads(detail)["added"] == "flush-dns 1.0.0, reset-network 1.0.0, restart-unit 1.0.0"


async def test_every_version_is_kept_and_show_gives_the_signed_bytes(console: Console) -> None:
    key = console.catalog_key
    await publish(console, signed_bundle(key, source("flush-dns", parameters=SECRET_PARAMETER)))
    await publish(console, signed_bundle(key, source("flush-dns", "1.10.0")))
    await publish(console, signed_bundle(key, source("flush-dns", "1.2.0")))
    shown = await console.stub.GetScript(pb.GetScriptRequest(script_id="flush-dns"), metadata=ANN)
    # Newest by number, not by text or by when it was published.
    assert [v.version for v in shown.versions] == ["1.10.0", "1.2.0", "1.0.0"]
    assert shown.script.version == "1.10.0"
    assert shown.body == source("flush-dns", "1.10.0").script
    assert shown.manifest == source("flush-dns", "1.10.0").manifest
    key.public_key().verify(
        shown.signature,
        signed_message(shown.manifest, shown.body),
    )
    old = await console.stub.GetScript(
        pb.GetScriptRequest(script_id="flush-dns", version="1.0.0"), metadata=ANN
    )
    parameters = {p.name: p for p in old.script.parameters}
    assert parameters["password"].secret
    assert parameters["password"].default == "***"
    assert (parameters["days"].minimum, parameters["days"].maximum) == (1, 30)
    assert parameters["days"].default == "7"
    listed = await console.stub.ListScripts(pb.ListScriptsRequest(), metadata=ANN)
    assert [(s.script.version, s.versions) for s in listed.scripts] == [("1.10.0", 3)]


async def test_an_identical_republish_is_a_no_op_and_changed_bytes_are_refused(
    console: Console,
) -> None:
    key = console.catalog_key
    await publish(console, three_tiers(key))
    again = await publish(console, three_tiers(key))
    assert [s.added for s in again.scripts] == [False, False, False]
    assert await rows(console) == 3
    changed = signed_bundle(key, source("flush-dns", title="Another title"), source("new-one"))
    error = await refused(console, changed)
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "flush-dns 1.0.0 is published already with other bytes" in (error.details() or "")
    assert await rows(console) == 3  # and new-one, in the same bundle, is not published either


async def test_a_bundle_with_one_badly_signed_entry_is_refused_whole_naming_it(
    console: Console,
) -> None:
    good = json.loads(three_tiers(console.catalog_key))
    rogue = json.loads(signed_bundle(ed25519.Ed25519PrivateKey.generate(), source("evil-one")))
    good["entries"].append(rogue["entries"][0])
    error = await refused(console, json.dumps(good).encode())
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "evil-one 1.0.0: signed with another key" in (error.details() or "")
    assert await rows(console) == 0
    unsigned = json.loads(three_tiers(console.catalog_key))
    del unsigned["entries"][1]["signature"]
    error = await refused(console, json.dumps(unsigned).encode())
    assert "reset-network 1.0.0: the entry is not signed" in (error.details() or "")
    tampered = json.loads(three_tiers(console.catalog_key))
    tampered["entries"][0]["script"] = "ZWNobyBwd25lZAo="  # "echo pwned"
    error = await refused(console, json.dumps(tampered).encode())
    assert "flush-dns 1.0.0: the signature does not verify" in (error.details() or "")
    assert await rows(console) == 0


async def test_unknown_scripts_versions_and_platforms_are_refused_by_name(
    console: Console,
) -> None:
    await publish(console, three_tiers(console.catalog_key))
    for request, says in (
        (pb.GetScriptRequest(script_id="nope"), "no script 'nope' is published"),
        (
            pb.GetScriptRequest(script_id="flush-dns", version="3.0.0"),
            "flush-dns has no version '3.0.0' (published: 1.0.0)",
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await console.stub.GetScript(request, metadata=ANN)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        assert says in (caught.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await console.stub.ListScripts(pb.ListScriptsRequest(platform="amiga"), metadata=ANN)
    assert "unknown platform 'amiga'" in (caught.value.details() or "")


async def test_a_refused_bundle_is_audited_as_refused_naming_the_entry(console: Console) -> None:
    rogue = signed_bundle(ed25519.Ed25519PrivateKey.generate(), source("evil-one"))
    await refused(console, rogue)
    query = select(audit_log.c.actor, audit_log.c.result).where(
        audit_log.c.action == "catalog.publish"
    )
    found = await console.services.db.read(lambda c: c.execute(query).all())
    assert [actor for actor, _ in found] == ["admin"]
    assert found[0][1].startswith("refused: InvalidArgument: the bundle is refused")
    assert "evil-one 1.0.0: signed with another key" in found[0][1]
