"""Fetch LiteRT.js, the browser runtime of the webcam widget's and the web demo's browser mode,
from the npm registry into ``fer/static/litert/``, checking every byte against pinned checksums.

The files are committed (they are part of the package); this script is how they got there and
how to check or refresh them. Nothing else fetches npm packages: not the build, not CI, not the
page (which loads them from its own folder, so it works offline).

Pinned: each npm tarball's ``integrity`` (sha512, as the registry publishes it) and the sha256
of each file taken from it. Only the variant the browser mode needs is vendored: the
single-threaded relaxed-SIMD build (``litert_wasm_internal``). The threaded one needs
cross-origin isolation, which notebooks and static hosts do not give; JSPI is for WebGPU.

Usage:
    python scripts/fetch_web_runtime.py            # fetch, check, write fer/static/litert/
    python scripts/fetch_web_runtime.py --check    # check the committed files only (offline)
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import sys
import tarfile
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEST = ROOT / "fer" / "static" / "litert"
REGISTRY = "https://registry.npmjs.org"

#: npm package → version, the registry's integrity of its tarball, and the files taken from it:
#: path inside the tarball → (name written, sha256).
PINNED = {
    "@litertjs/core": {
        "version": "2.5.3",
        "integrity": "sha512-PlGmbMOq9WitX7FO0jhbdJw9GthatsyuCQXjTt/wJZo0FLaw48q4tz8IwqgqCIkviYGr9OFDL1kCnN4nzWoyJQ==",
        "files": {
            "package/dist/index.js": ("litert-core.js", "e7daccc3a31eef890848a737ccb863ded5f046a6b40c3fdc0556495adeb5d9b3"),
            "package/wasm/litert_wasm_internal.js": (
                "litert_wasm_internal.js", "68efb69f770e3f76aff36a377de629ca496c131b86ac0f0f4b592a1543a898eb"),
            "package/wasm/litert_wasm_internal.wasm": (
                "litert_wasm_internal.wasm", "7280cf4471774867e385e6c3cd53e2b45e2975b80fea338fff4ef359b0865614"),
        },
    },
    "@litertjs/wasm-utils": {
        "version": "2.5.3",
        "integrity": "sha512-4fJiw6tBQnIs+0jH/OQ16nYOiSl8/+zZnn5h2ul8aTKHi05sVqZW580Tmk78pC2kT39A9OYBVdFawteZ/sI1kQ==",
        "files": {
            "package/dist/index.js": ("wasm-utils.js", "e0e20bc28ab001ac732cf40d15b6eebd24fb0deaeb95eeba5100f51eebf015f2"),
        },
    },
}
#: Both packages are Apache-2.0 (their package.json) and ship no licence file: the licence text
#: is written beside them from the copy the package already holds for MediaPipe's models.
LICENSE_SOURCE = ROOT / "fer" / "weights" / "blazeface" / "LICENSE-mediapipe-Apache-2.0"


def tarball_url(name: str, version: str) -> str:
    return f"{REGISTRY}/{name}/-/{name.split('/')[-1]}-{version}.tgz"


def integrity(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fetch(name: str, pin: dict) -> dict[str, bytes]:
    """The pinned files of one package, each checked; raises SystemExit on any mismatch."""
    url = tarball_url(name, pin["version"])
    with urllib.request.urlopen(url, timeout=120) as response:
        data = response.read()
    if integrity(data) != pin["integrity"]:
        sys.exit(f"{url}: integrity {integrity(data)} is not the pinned {pin['integrity']}; refusing it")
    out = {}
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for member, (target, digest) in pin["files"].items():
            handle = tar.extractfile(member)
            if handle is None:
                sys.exit(f"{url} has no file {member}")
            content = handle.read()
            if sha256(content) != digest:
                sys.exit(f"{url}: {member} has sha256 {sha256(content)}, not the pinned {digest}")
            out[target] = content
    return out


def source_record() -> dict:
    return {
        "what": "LiteRT.js (Google, Apache License 2.0): the WebAssembly runtime of fer's browser mode",
        "fetched_by": "scripts/fetch_web_runtime.py (checks the registry's integrity and each file's sha256)",
        "packages": {name: {"version": pin["version"], "tarball": tarball_url(name, pin["version"]),
                            "integrity": pin["integrity"],
                            "files": {target: {"from": member, "sha256": digest}
                                      for member, (target, digest) in pin["files"].items()}}
                     for name, pin in PINNED.items()},
        "license": "LICENSE (Apache-2.0)",
    }


def check(dest: Path = DEST) -> list[str]:
    """Problems with the committed files (missing or changed); [] when all match their pins."""
    problems = []
    for pin in PINNED.values():
        for target, digest in pin["files"].values():
            path = dest / target
            if not path.is_file():
                problems.append(f"{path} is missing")
            elif sha256(path.read_bytes()) != digest:
                problems.append(f"{path} does not match its pinned sha256 {digest}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only check the files already in fer/static/litert")
    args = parser.parse_args(argv)
    if args.check:
        problems = check()
        for p in problems:
            print(p, file=sys.stderr)
        print("fer/static/litert: " + ("FAILED" if problems else "every file matches its pinned sha256"))
        return 1 if problems else 0
    files = {}
    for name, pin in PINNED.items():
        files |= fetch(name, pin)
    DEST.mkdir(parents=True, exist_ok=True)
    for target, content in files.items():
        (DEST / target).write_bytes(content)
    (DEST / "LICENSE").write_bytes(LICENSE_SOURCE.read_bytes())
    (DEST / "SOURCE.json").write_text(json.dumps(source_record(), indent=2) + "\n")
    total = sum(len(c) for c in files.values())
    print(f"wrote {len(files)} files ({total / 1e6:.2f} MB) to {DEST.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
