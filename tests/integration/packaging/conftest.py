"""Windows MSIs built once per session: the stand-in service's 1.0.0 and 2.0.0 (for Wine),
and one with pywin32's service host (the layout a real build ships)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.packaging.windows_inputs import (
    MINGW,
    TOOLS,
    Built,
    build,
    require,
    standin_runtime,
    standin_service,
    standin_wheels,
)


@dataclass(frozen=True)
class WindowsBuilds:
    inputs: Path
    runtime: Path
    wheels: Path
    service_v1: Path
    v1: Built
    v2: Built
    pythonservice: Built


@pytest.fixture(scope="session")
def windows_builds(tmp_path_factory: pytest.TempPathFactory) -> WindowsBuilds:
    require(*TOOLS, MINGW)
    inputs = tmp_path_factory.mktemp("windows-inputs")
    runtime = standin_runtime(inputs)
    wheels = standin_wheels(inputs / "wheels")
    service_v1 = standin_service(inputs, "1.0.0")
    service_v2 = standin_service(inputs, "2.0.0")
    out = tmp_path_factory.mktemp("windows-msi")
    v1 = build(out / "v1.msi", runtime, wheels, "1.0.0", "--service-program", str(service_v1))
    v2 = build(out / "v2.msi", runtime, wheels, "2.0.0", "--service-program", str(service_v2))
    pythonservice = build(out / "pythonservice.msi", runtime, wheels, "1.0.0")
    return WindowsBuilds(inputs, runtime, wheels, service_v1, v1, v2, pythonservice)
