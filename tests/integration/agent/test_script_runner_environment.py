"""What a script starts with: an environment built from scratch (nothing of the agent's), its
values as SONDE_PARAM_<NAME>, a private folder that is gone afterwards, and the interpreter
its manifest names; what the runner refuses before anything starts."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest

from sonde.agent.remediation import ScriptCannotRun, run
from sonde.agent.remediation.environment import MINIMAL_PATH
from tests.unit.agent.remediation.manifests import manifest, string_parameter

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX scripts")

TYPED = """
[[parameters]]
name = "days"
type = "int"
minimum = 1
maximum = 90
default = 7
description = "how old"

[[parameters]]
name = "force"
type = "bool"
description = "even if in use"
"""


def test_the_environment_is_built_from_scratch(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SONDE_AGENT_SECRET", "must-not-leak")
    monkeypatch.setenv("LD_PRELOAD", "/nonexistent/evil.so")
    monkeypatch.setenv("BASH_ENV", str(tmp_path / "sourced"))
    (tmp_path / "sourced").write_text(f"touch {tmp_path / 'bash-env-ran'}\n")
    entry = manifest("shows-environment", parameters=string_parameter("service_name") + TYPED)
    values = entry.check_values({"service_name": "cups", "force": "yes"}, dry_run=True)
    outcome = asyncio.run(run(entry, b"env -0\n", values, home=tmp_path))
    assert outcome.exit_code == 0, outcome.stderr
    environment = dict(item.split("=", 1) for item in outcome.stdout.decode().split("\0") if item)
    mark = environment.pop("SONDE_RUN_MARK")
    assert len(mark) == 32
    for set_by_bash in ("PWD", "SHLVL", "_", "OLDPWD"):
        environment.pop(set_by_bash, None)
    assert environment == {
        "PATH": MINIMAL_PATH,
        "HOME": str(tmp_path),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "SONDE_PARAM_SERVICE_NAME": "cups",
        "SONDE_PARAM_DAYS": "7",
        "SONDE_PARAM_FORCE": "1",
        "SONDE_DRY_RUN": "1",
    }
    assert not (tmp_path / "bash-env-ran").exists()


def test_the_run_folder_is_private_and_removed_afterwards(tmp_path: Path) -> None:
    entry = manifest("shows-folder")
    script = b'echo "$PWD"; stat -c %a "$PWD" "$0"; echo left-behind > work-file\n'
    outcome = asyncio.run(run(entry, script, entry.check_values({}), work_root=tmp_path))
    folder, folder_mode, script_mode = outcome.stdout.decode().split()
    assert Path(folder).parent == tmp_path
    assert Path(folder).name.startswith("sonde-run-")
    assert (folder_mode, script_mode) == ("700", "600")
    assert not Path(folder).exists()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("interpreter", "script"),
    [
        ("sh", b'printf \'%s %s %s\' "$SONDE_PARAM_DAYS" "$SONDE_PARAM_FORCE" "$SONDE_DRY_RUN"\n'),
        (
            "python",
            b"import os\nprint(os.environ['SONDE_PARAM_DAYS'], os.environ['SONDE_PARAM_FORCE'],"
            b" os.environ['SONDE_DRY_RUN'], end='')\n",
        ),
    ],
)
def test_each_interpreter_reads_its_values(interpreter: str, script: bytes) -> None:
    if (
        shutil.which("python3" if interpreter == "python" else interpreter, path=MINIMAL_PATH)
        is None
    ):
        pytest.skip(f"no {interpreter} on this machine")
    entry = manifest(f"reads-values-{interpreter}", interpreter=interpreter, parameters=TYPED)
    values = entry.check_values({"days": "30", "force": "false"})
    outcome = asyncio.run(run(entry, script, values))
    assert outcome.exit_code == 0, outcome.stderr
    assert outcome.stdout == b"30 0 0"


def test_the_exit_code_is_the_script_s() -> None:
    entry = manifest("fails-on-purpose")
    outcome = asyncio.run(run(entry, b"echo nope >&2; exit 3\n", entry.check_values({})))
    assert outcome.exit_code == 3
    assert not outcome.succeeded
    assert outcome.stderr == b"nope\n"


def test_a_script_for_another_platform_is_refused(tmp_path: Path) -> None:
    entry = manifest("windows-only", interpreter="powershell", platforms=("windows",))
    with pytest.raises(ScriptCannotRun, match="windows-only is for windows, not linux"):
        asyncio.run(run(entry, b"Write-Output hi\n", entry.check_values({}), work_root=tmp_path))
    assert list(tmp_path.iterdir()) == []


def test_a_missing_interpreter_is_named(tmp_path: Path) -> None:
    if shutil.which("pwsh", path=MINIMAL_PATH):
        pytest.skip("this machine has pwsh")
    entry = manifest("needs-pwsh", interpreter="powershell", platforms=("linux",))
    with pytest.raises(ScriptCannotRun, match="powershell scripts need pwsh, which is not in"):
        asyncio.run(run(entry, b"Write-Output hi\n", entry.check_values({}), work_root=tmp_path))
    assert list(tmp_path.iterdir()) == []


def test_output_is_bytes_as_written() -> None:
    entry = manifest("prints-bytes")
    outcome = asyncio.run(run(entry, b"printf '\\377\\000caf\\303\\251'\n", entry.check_values({})))
    assert outcome.stdout == b"\xff\x00caf\xc3\xa9"
