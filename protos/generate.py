"""Regenerate the Python code and typed stubs for protos/sonde/v1/*.proto.

Usage: python protos/generate.py [--out DIR]

Needs the `dev` extra (grpcio-tools, mypy-protobuf). The generated files are committed;
tests/unit/test_protos_fresh.py fails when they are stale.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

PROTO_ROOT = Path(__file__).resolve().parent
PACKAGE_DIR = PROTO_ROOT / "sonde" / "v1"


def proto_files() -> list[Path]:
    return sorted(PACKAGE_DIR.glob("*.proto"))


def generate(out_root: Path) -> list[Path]:
    """Generate into out_root/sonde/v1 and return the generated files."""
    plugin_dir = Path(sys.executable).parent
    protoc_gen_mypy = shutil.which("protoc-gen-mypy", path=str(plugin_dir)) or shutil.which(
        "protoc-gen-mypy"
    )
    protoc_gen_mypy_grpc = shutil.which(
        "protoc-gen-mypy_grpc", path=str(plugin_dir)
    ) or shutil.which("protoc-gen-mypy_grpc")
    if not protoc_gen_mypy or not protoc_gen_mypy_grpc:
        raise SystemExit("mypy-protobuf is not installed: pip install '.[dev]'")
    (out_root / "sonde" / "v1").mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"--proto_path={PROTO_ROOT}",
        f"--python_out={out_root}",
        f"--grpc_python_out={out_root}",
        f"--plugin=protoc-gen-mypy={protoc_gen_mypy}",
        f"--plugin=protoc-gen-mypy_grpc={protoc_gen_mypy_grpc}",
        f"--mypy_out={out_root}",
        f"--mypy_grpc_out={out_root}",
        *(str(p.relative_to(PROTO_ROOT)) for p in proto_files()),
    ]
    subprocess.run(command, check=True, cwd=PROTO_ROOT)
    return sorted((out_root / "sonde" / "v1").glob("*_pb2*"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=PROTO_ROOT)
    args = parser.parse_args()
    for path in generate(args.out):
        print(path.relative_to(args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
