"""Check the gRPC contract with buf: ``buf lint`` (STANDARD and COMMENTS, ``buf.yaml``) and
``buf breaking`` against the frozen v1 (``proto/nba-v1.image.json``).

    python -m harness.buf            # lint + breaking (make proto-check; part of make test)
    python -m harness.buf --freeze   # rewrite the frozen image: only for a deliberate new version

buf comes from the npm registry (``@bufbuild/buf``, pinned below), installed under ``.tools/``
on first use; ``BUF=/path/to/buf`` uses another. The contract imports ``google/rpc/status.proto``,
which buf cannot fetch here (no Buf Schema Registry): it is copied from the installed
googleapis-common-protos into ``.proto-deps/`` (git-ignored), a module ``buf.yaml`` names.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

from google.rpc import status_pb2

REPO = Path(__file__).resolve().parent.parent
BUF_VERSION = "1.75.0"
TOOLS = REPO / ".tools"
DEPS = REPO / ".proto-deps"
FROZEN = REPO / "proto" / "nba-v1.image.json"
IMPORTS = ("google/rpc/status.proto",)


def buf_command() -> str:
    """The buf executable: $BUF, else .tools/ (installed from npm if missing)."""
    if os.environ.get("BUF"):
        return os.environ["BUF"]
    local = TOOLS / "node_modules" / ".bin" / "buf"
    if not local.exists():
        npm = shutil.which("npm")
        if npm is None:
            raise SystemExit("buf is needed to check the contract: install Node.js's npm, or set BUF=/path/to/buf")
        print(f"installing @bufbuild/buf@{BUF_VERSION} into {TOOLS.relative_to(REPO)}/ (npm)", flush=True)
        subprocess.run([npm, "install", "--silent", "--no-audit", "--no-fund", "--prefix", str(TOOLS),
                        f"@bufbuild/buf@{BUF_VERSION}"], check=True)
    return str(local)


def copy_imports() -> None:
    """google/rpc/*.proto from googleapis-common-protos into .proto-deps/."""
    source = Path(status_pb2.__file__).parents[2]
    for name in IMPORTS:
        target = DEPS / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / name, target)


def run(*args: str) -> int:
    print("$ buf " + " ".join(args), flush=True)
    return subprocess.run([buf_command(), *args], cwd=REPO).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--freeze", action="store_true", help=f"write {FROZEN.relative_to(REPO)} from proto/")
    args = parser.parse_args(argv)
    copy_imports()
    if args.freeze:
        return run("build", "proto", "-o", str(FROZEN.relative_to(REPO)))
    failed = run("lint")
    if not FROZEN.exists():
        print(f"{FROZEN.relative_to(REPO)} is missing: nothing to check breaking changes against", file=sys.stderr)
        return 1
    failed |= run("breaking", "proto", "--against", str(FROZEN.relative_to(REPO)))
    if not failed:
        print("contract: buf lint clean, no breaking change against the frozen v1")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
