"""Regenerate the checked-in Python modules for the ``.proto`` files under ``proto/``.

Usage::

    python -m policy._protogen            # write policy/v1/*_pb2*.py(i) into the source tree
    python -m policy._protogen --check    # exit 1, naming the stale files, if regeneration differs
    python -m policy._protogen --out DIR  # write (or check) under DIR instead

Runs ``grpc_tools.protoc`` with three include paths: ``proto/``, grpcio-tools'
bundled well-known types (so they match the compiler) and the directory that
holds googleapis-common-protos' ``google/rpc/*.proto``. Needs the ``proto``
extra (grpcio-tools, googleapis-common-protos); the generated code does not.

The outputs depend on the grpcio-tools version (it stamps the protobuf and
grpcio versions the code needs), so regenerate with the version that produced
the checked-in files, or update ``setup.cfg``'s pins when changing it.
"""

from __future__ import annotations

import argparse
import importlib.resources
import importlib.util
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

#: The repository root: the parent of the ``policy`` package.
ROOT = Path(__file__).resolve().parent.parent
#: Where the ``.proto`` sources live; also the first include path.
PROTO_DIR = ROOT / "proto"


class ProtogenError(RuntimeError):
    """protoc failed, or a needed include directory could not be found."""


def proto_files(proto_dir: Path = PROTO_DIR) -> list[str]:
    """List the ``.proto`` files to compile, relative to ``proto_dir``, sorted."""
    return sorted(p.relative_to(proto_dir).as_posix() for p in proto_dir.rglob("*.proto"))


def googleapis_include() -> Path:
    """Return the directory holding ``google/rpc/status.proto`` (googleapis-common-protos)."""
    spec = importlib.util.find_spec("google")
    for location in (spec.submodule_search_locations or []) if spec else []:
        if (Path(location) / "rpc" / "status.proto").is_file():
            return Path(location).parent
    raise ProtogenError(
        "google/rpc/status.proto not found: install googleapis-common-protos"
        " (pip install -e '.[proto]')"
    )


def include_paths(proto_dir: Path = PROTO_DIR) -> list[Path]:
    """Return protoc's include paths, in lookup order."""
    import grpc_tools  # noqa: F401  (fail early with an ImportError naming the package)

    bundled = Path(str(importlib.resources.files("grpc_tools") / "_proto"))
    return [proto_dir, bundled, googleapis_include()]


def generate(out_dir: Path, proto_dir: Path = PROTO_DIR) -> list[Path]:
    """Compile every proto into ``out_dir``; return the written files relative to it, sorted."""
    from grpc_tools import protoc

    out_dir.mkdir(parents=True, exist_ok=True)
    args = ["grpc_tools.protoc", *(f"-I{path}" for path in include_paths(proto_dir))]
    args += [f"--python_out={out_dir}", f"--pyi_out={out_dir}", f"--grpc_python_out={out_dir}"]
    files = proto_files(proto_dir)
    if not files:
        raise ProtogenError(f"no .proto files under {proto_dir}")
    code = protoc.main(args + files)
    if code != 0:
        raise ProtogenError(f"protoc exited with {code} compiling {', '.join(files)}")
    return sorted(p.relative_to(out_dir) for p in out_dir.rglob("*") if p.is_file())


def stale_files(out_dir: Path = ROOT, proto_dir: Path = PROTO_DIR) -> list[Path]:
    """Return the generated files under ``out_dir`` that are missing or differ from a fresh run."""
    with tempfile.TemporaryDirectory(prefix="protogen-") as tmp:
        fresh = Path(tmp)
        return [
            rel
            for rel in generate(fresh, proto_dir)
            if not (out_dir / rel).is_file()
            or (out_dir / rel).read_bytes() != (fresh / rel).read_bytes()
        ]


def write(out_dir: Path = ROOT, proto_dir: Path = PROTO_DIR) -> list[Path]:
    """Regenerate into ``out_dir``, rewriting only files whose bytes change; return those."""
    with tempfile.TemporaryDirectory(prefix="protogen-") as tmp:
        fresh = Path(tmp)
        changed = []
        for rel in generate(fresh, proto_dir):
            data = (fresh / rel).read_bytes()
            target = out_dir / rel
            if not target.is_file() or target.read_bytes() != data:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
                changed.append(rel)
        return changed


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the process exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m policy._protogen", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--check", action="store_true", help="exit 1 if generated files are stale")
    parser.add_argument("--out", type=Path, default=ROOT, help="output root (default: source tree)")
    options = parser.parse_args(argv)
    try:
        if options.check:
            stale = stale_files(options.out)
            for rel in stale:
                print(f"stale: {options.out / rel}", file=sys.stderr)
            if stale:
                print("regenerate with: python -m policy._protogen", file=sys.stderr)
            return 1 if stale else 0
        for rel in write(options.out):
            print(f"wrote {options.out / rel}")
    except (ProtogenError, ImportError) as error:
        print(f"protogen: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
