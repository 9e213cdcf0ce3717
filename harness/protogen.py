"""Generate the gRPC stubs for ``proto/nba/v1/*.proto`` into the ``nba`` package.

Run ``make proto`` after editing a .proto; ``tests/test_contract_stubs.py`` fails when the
committed stubs differ from a fresh generation.
"""

from __future__ import annotations

import sys
from pathlib import Path

import grpc_tools
from google.rpc import status_pb2
from grpc_tools import protoc

REPO = Path(__file__).resolve().parent.parent
PROTO_ROOT = REPO / "proto"


def proto_files(root: Path = PROTO_ROOT) -> list[Path]:
    return sorted(root.glob("nba/v1/*.proto"))


def include_dirs() -> list[Path]:
    """Where the contract's imports are: protobuf's well-known types (grpcio-tools) and
    google/rpc/status.proto (googleapis-common-protos, which grpcio-status installs)."""
    return [Path(grpc_tools.__file__).parent / "_proto", Path(status_pb2.__file__).parents[2]]


def generate(out_dir: Path, root: Path = PROTO_ROOT) -> list[Path]:
    """Generate ``*_pb2.py``, ``*_pb2.pyi`` and ``*_pb2_grpc.py`` under ``out_dir/nba/v1``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = [str(p.relative_to(root)) for p in proto_files(root)]
    rc = protoc.main([
        "grpc_tools.protoc",
        f"-I{root}",
        *(f"-I{d}" for d in include_dirs()),
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *files,
    ])
    if rc != 0:
        raise RuntimeError(f"protoc failed with exit code {rc} on {files}")
    return sorted((out_dir / "nba" / "v1").glob("*_pb2*.py*"))


def main() -> int:
    written = generate(REPO)
    for pkg in (REPO / "nba", REPO / "nba" / "v1"):
        init = pkg / "__init__.py"
        if not init.exists():
            init.write_text('"""Generated gRPC stubs (see proto/). Do not edit."""\n')
    for path in written:
        print(f"wrote {path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
