"""export-approved against what a hostile server could answer: a file name never comes from
the server's words, only from a manifest parsed here that names what was listed; nothing is
written outside DIR, and a link in DIR is never written through."""

from __future__ import annotations

from pathlib import Path

import pytest

from sonde.server.console.errors import CliError
from sonde.server.console.proposal_export import _target, _write
from sonde.v1 import console_pb2
from tests.support.catalog_bundles import manifest_text, script_text


def exported(script_id: str, platform: str, manifest: str) -> console_pb2.ExportedScript:
    return console_pb2.ExportedScript(
        proposal=console_pb2.ScriptProposal(
            id=7, script_id=script_id, version="1.0.0", platform=platform
        ),
        manifest=manifest.encode(),
        script=script_text("say-hello").encode(),
    )


def test_the_names_come_from_the_manifest_and_stay_in_the_folder(tmp_path: Path) -> None:
    manifest_path, script_path = _target(
        tmp_path, exported("say-hello", "linux", manifest_text("say-hello"))
    )
    assert manifest_path == tmp_path / "linux" / "say-hello.toml"
    assert script_path == tmp_path / "linux" / "say-hello.sh"


@pytest.mark.parametrize(
    ("script_id", "platform", "manifest", "says"),
    [
        ("../../.bashrc", "linux", manifest_text("say-hello"), "not what the server listed"),
        ("say-hello", "../../etc", manifest_text("say-hello"), "is refused"),
        ("say-hello", "windows", manifest_text("say-hello"), "not what the server listed"),
        ("say-hello", "linux", 'id = "../x"\n', "is refused, nothing written"),
    ],
)
def test_a_hostile_listing_is_refused(
    tmp_path: Path, script_id: str, platform: str, manifest: str, says: str
) -> None:
    with pytest.raises(CliError, match="proposal 7") as caught:
        _target(tmp_path, exported(script_id, platform, manifest))
    assert says in caught.value.message
    assert list(tmp_path.iterdir()) == []


def test_a_link_is_never_written_through(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.write_text("kept")
    link = tmp_path / "say-hello.sh"
    link.symlink_to(outside)
    for replace in (False, True):
        with pytest.raises(CliError):
            _write(link, b"echo pwned\n", replace=replace)
    assert outside.read_text() == "kept"
