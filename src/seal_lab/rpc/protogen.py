"""Regenerate the Python stubs of proto/seal/v1 into src/seal/v1 (`make protos`).

`--check` regenerates into a temporary folder and fails if the committed stubs differ, so CI catches
stubs that drifted from their .proto files. Needs grpcio-tools (a dev dependency).
"""

from __future__ import annotations

import argparse
import filecmp
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
PROTO_DIR = ROOT / "proto"
OUT_DIR = ROOT / "src"
PACKAGE = Path("seal") / "v1"


def generate(out_dir: Path) -> list[Path]:
    """Run protoc for every .proto of the package; return the generated files."""
    import grpc_tools
    from grpc_tools import protoc

    protos = sorted((PROTO_DIR / PACKAGE).glob("*.proto"))
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    (out_dir / PACKAGE).mkdir(parents=True, exist_ok=True)
    args = [
        "protoc",
        f"-I{PROTO_DIR}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *(str(p.relative_to(PROTO_DIR)) for p in protos),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    return sorted(
        p for p in (out_dir / PACKAGE).iterdir() if p.suffix in (".py", ".pyi") and "_pb2" in p.name
    )


def stale_files() -> list[str]:
    """Names of stubs that differ from a fresh generation (missing or extra files included)."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = {p.name: p for p in generate(Path(tmp))}
        committed = {p.name: p for p in (OUT_DIR / PACKAGE).glob("*_pb2*.py*")}
        names = sorted(set(fresh) | set(committed))
        return [
            n
            for n in names
            if n not in fresh or n not in committed or not filecmp.cmp(fresh[n], committed[n], shallow=False)
        ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if the committed stubs are stale")
    args = parser.parse_args()
    if args.check:
        stale = stale_files()
        if stale:
            sys.exit(f"stale gRPC stubs: {', '.join(stale)}; run `make protos`")
        print("gRPC stubs are up to date")
        return
    for path in generate(OUT_DIR):
        print(path.relative_to(ROOT))


if __name__ == "__main__":
    main()
