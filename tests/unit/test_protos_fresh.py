"""The committed generated code must be what `python protos/generate.py` makes today."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load_generator() -> object:
    spec = importlib.util.spec_from_file_location("generate", ROOT / "protos" / "generate.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_code_is_fresh(tmp_path: Path) -> None:
    generator = load_generator()
    generated = generator.generate(tmp_path)  # type: ignore[attr-defined]
    assert generated, "the generator produced nothing"
    committed_dir = ROOT / "protos" / "sonde" / "v1"
    stale = []
    for path in generated:
        committed = committed_dir / path.name
        if not committed.exists() or committed.read_bytes() != path.read_bytes():
            stale.append(path.name)
    extra = {p.name for p in committed_dir.glob("*_pb2*")} - {p.name for p in generated}
    if stale or extra:
        pytest.fail(
            f"generated code is stale ({sorted(stale)}) or orphaned ({sorted(extra)}): "
            "run `python protos/generate.py` and commit the result"
        )


def test_every_enum_starts_unspecified() -> None:
    from sonde.v1 import agent_pb2, console_pb2, diagnostics_pb2, enrollment_pb2

    for module in (agent_pb2, console_pb2, diagnostics_pb2, enrollment_pb2):
        for enum in module.DESCRIPTOR.enum_types_by_name.values():
            assert enum.values[0].number == 0
            assert enum.values[0].name.endswith("_UNSPECIFIED"), enum.full_name


def test_every_rpc_has_its_own_request_and_response() -> None:
    from sonde.v1 import console_pb2

    seen: set[str] = set()
    for method in console_pb2.DESCRIPTOR.services_by_name["ConsoleService"].methods:
        assert method.input_type.name == f"{method.name}Request"
        assert method.output_type.name == f"{method.name}Response"
        assert method.input_type.full_name not in seen
        seen.add(method.input_type.full_name)


@pytest.mark.parametrize("generator", ["grpcio-tools", "mypy-protobuf"])
def test_the_generators_are_the_pinned_ones(generator: str) -> None:
    """Otherwise the freshness test above would fail for a generator's release, not a change."""
    import re
    import tomllib
    from importlib.metadata import version

    test_extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]["test"]
    pins: dict[str, str] = {}
    for spec in test_extra:
        if match := re.fullmatch(r"([\w-]+)==(.+)", spec):
            pins[match.group(1)] = match.group(2)
    assert generator in pins, f"pyproject.toml's test extra must pin {generator}==VERSION"
    assert version(generator) == pins[generator], (
        f"{generator} {version(generator)} is installed, the protos were made with "
        f"{pins[generator]}: pip install -e '.[dev]'"
    )
