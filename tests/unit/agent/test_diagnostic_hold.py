"""The test hook that holds a diagnostic at its start: off unless asked, and released on cue."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from sonde.agent import diagnostic_hold


async def test_without_the_variable_nothing_is_held(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(diagnostic_hold.HOLD_VARIABLE, raising=False)
    (tmp_path / diagnostic_hold.HOLD_FILE).touch()
    await asyncio.wait_for(diagnostic_hold.wait_while_held("c1"), timeout=10)
    assert list(tmp_path.iterdir()) == [tmp_path / diagnostic_hold.HOLD_FILE]


async def test_without_the_hold_file_nothing_is_held(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(diagnostic_hold.HOLD_VARIABLE, str(tmp_path))
    await asyncio.wait_for(diagnostic_hold.wait_while_held("c1"), timeout=10)
    assert list(tmp_path.iterdir()) == []


async def test_a_held_diagnostic_marks_its_start_and_waits_for_the_release(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(diagnostic_hold.HOLD_VARIABLE, str(tmp_path))
    hold = tmp_path / diagnostic_hold.HOLD_FILE
    hold.touch()
    held = asyncio.create_task(diagnostic_hold.wait_while_held("0af3-c_2"))
    started = Path(diagnostic_hold.started_marker(str(tmp_path), "0af3-c_2"))
    for _ in range(500):
        if started.exists():
            break
        await asyncio.sleep(0.02)
    assert started.exists()
    assert not held.done()
    hold.unlink()
    await asyncio.wait_for(held, timeout=10)


async def test_a_command_id_that_is_not_a_plain_name_is_never_held(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(diagnostic_hold.HOLD_VARIABLE, str(tmp_path))
    (tmp_path / diagnostic_hold.HOLD_FILE).touch()
    await asyncio.wait_for(diagnostic_hold.wait_while_held("../escape"), timeout=10)
    assert list(tmp_path.iterdir()) == [tmp_path / diagnostic_hold.HOLD_FILE]
