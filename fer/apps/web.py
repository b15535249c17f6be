"""The models in the browser: the files the browser mode needs and the static demo.

The webcam widget (``Webcam(runtime="browser")``), the web app's page (``python -m fer serve``,
"in this browser") and the static demo (``python -m fer export --web DIR``) run the package's
own ``.tflite`` files in the browser under LiteRT.js (WebAssembly; ``fer/static/litert/``,
vendored by ``scripts/fetch_web_runtime.py`` with pinned checksums). The browser asks for files
by name; :func:`asset_path` is the one list of names it may have, so neither the widget nor the
server hands out anything else. Why LiteRT.js, measured: ``docs/performance.md`` ("Models in
the browser").
"""

from __future__ import annotations

import shutil
from pathlib import Path

from fer.config import CLASSES, MAX_UPLOAD_MB, PACKAGE_DIR, WEIGHTS_DIR

STATIC = PACKAGE_DIR / "static"
RUNTIME_DIR = STATIC / "litert"
#: The runtime's files (fer/static/litert/) the browser loads, in the order browser.js asks.
RUNTIME_FILES = ("litert-core.js", "wasm-utils.js", "litert_wasm_internal.js", "litert_wasm_internal.wasm")
#: The detector files (BlazeFace front, then back on frames without a face, as fer.analyze).
DETECTOR_FILES = ("face_detection_front.tflite", "face_detection_back.tflite")
#: The classifiers the browser can run: name → file in fer/weights (fer/static/browser.js agrees).
CLASSIFIERS = {"lite": "lite.tflite", "main": "main.tflite"}
#: The page's own files, copied by :func:`export_web` into ``static/``.
PAGE_FILES = ("app.js", "live.js", "faces.js", "browser.js", "style.css", "live.css")


class WebAssetError(ValueError):
    """A file the browser asked for is not one the browser mode serves, or is missing."""


def model_names(classifier: str = "lite") -> tuple[str, ...]:
    if classifier not in CLASSIFIERS:
        raise WebAssetError(f"unknown classifier {classifier!r} for the browser: choose one of {sorted(CLASSIFIERS)}")
    return (*DETECTOR_FILES, CLASSIFIERS[classifier])


def asset_path(name: str) -> Path:
    """The file behind a name the browser asks for: a runtime file or a model file."""
    if name in RUNTIME_FILES:
        path = RUNTIME_DIR / name
    elif name in DETECTOR_FILES:
        path = WEIGHTS_DIR / "blazeface" / name
    elif name in CLASSIFIERS.values():
        path = WEIGHTS_DIR / name
    else:
        raise WebAssetError(f"{name!r} is not a file of the browser mode (runtime: {', '.join(RUNTIME_FILES)}; "
                            f"models: {', '.join((*DETECTOR_FILES, *CLASSIFIERS.values()))})")
    if not path.is_file():
        raise WebAssetError(f"{path} is missing: the package is incomplete; reinstall fer-study "
                            "(in a checkout: python scripts/fetch_web_runtime.py, git checkout -- fer/weights)")
    return path


def render_page(runtime: str, classifier: str = "lite", **context) -> str:
    """``fer/templates/index.html`` for a folder with no server behind it: the browser mode only,
    every URL relative (``static/...``, ``models/...``), so it works from any path on any host."""
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    def url_for(endpoint: str, filename: str = "", **_kw) -> str:
        if endpoint != "static":
            raise WebAssetError(f"the static page has no {endpoint!r} route")
        return f"static/{filename}"

    env = Environment(loader=FileSystemLoader(PACKAGE_DIR / "templates"), autoescape=select_autoescape())
    return env.get_template("index.html").render(
        url_for=url_for, classes=CLASSES, max_mb=f"{MAX_UPLOAD_MB:g}", stream=None, runtime=runtime,
        classifier=classifier, web_only=True, **context)


def export_web(dest: str | Path, classifiers: tuple[str, ...] = ("lite", "main")) -> dict[str, int]:
    """Write the static demo into ``dest``: ``index.html``, ``static/`` (the page's JS and CSS,
    ``static/litert/`` the runtime with its licence and source record) and ``models/``.
    Any static host serves it (GitHub Pages, ``python -m http.server``); the camera needs https
    or localhost. Returns ``{relative path: bytes}`` of what was written."""
    dest = Path(dest)
    if dest.exists() and not dest.is_dir():
        raise WebAssetError(f"{dest} exists and is not a folder")
    if dest.is_dir() and any(dest.iterdir()) and not (dest / "index.html").is_file():
        raise WebAssetError(f"{dest} is a folder with other files in it: export --web writes into a new or "
                            "empty folder (or one it wrote before)")
    names = {n for c in classifiers for n in model_names(c)}
    plan = {f"static/{n}": STATIC / n for n in PAGE_FILES}
    plan |= {f"static/litert/{n}": asset_path(n) for n in RUNTIME_FILES}
    plan |= {f"static/litert/{n}": RUNTIME_DIR / n for n in ("LICENSE", "SOURCE.json")}
    plan |= {f"models/{n}": asset_path(n) for n in sorted(names)}
    plan["models/LICENSE-mediapipe-Apache-2.0"] = WEIGHTS_DIR / "blazeface" / "LICENSE-mediapipe-Apache-2.0"
    written = {}
    for rel, src in plan.items():
        out = dest / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, out)
        written[rel] = out.stat().st_size
    page = render_page("browser", classifier="lite", classifiers=list(classifiers))
    (dest / "index.html").write_text(page, encoding="utf-8")
    written["index.html"] = len(page.encode())
    return written
