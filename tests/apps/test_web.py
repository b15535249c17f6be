"""The browser mode without a browser: the vendored runtime against its pins, the files the
browser may ask for, the static demo's folder, the widget's file and report messages, the server's
model route and ``python -m fer export --web``. The browser itself: tests/e2e/test_browser_*.py."""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import shutil

import pytest
import traitlets

from fer import cli
from fer.apps import web, webcam
from fer.apps.serve import create_app
from fer.config import CLASSES, PROJECT_DIR, WEIGHTS_DIR


def _fetch_script():
    spec = importlib.util.spec_from_file_location("fetch_web_runtime", PROJECT_DIR / "scripts" / "fetch_web_runtime.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_vendored_runtime_matches_its_pinned_checksums():
    fetch = _fetch_script()
    assert fetch.check() == []
    record = json.loads((web.RUNTIME_DIR / "SOURCE.json").read_text())
    assert record == fetch.source_record()  # the committed record is the script's own
    assert set(web.RUNTIME_FILES) == {f for p in fetch.PINNED.values() for f, _ in p["files"].values()}
    assert "Apache License" in (web.RUNTIME_DIR / "LICENSE").read_text()


def test_a_changed_runtime_file_is_caught(tmp_path):
    fetch = _fetch_script()
    shutil.copytree(web.RUNTIME_DIR, tmp_path / "litert")
    (tmp_path / "litert" / "litert-core.js").write_text("// replaced")
    (tmp_path / "litert" / "wasm-utils.js").unlink()
    problems = fetch.check(tmp_path / "litert")
    assert len(problems) == 2 and "litert-core.js does not match" in problems[0] and "wasm-utils.js is missing" in problems[1]


def test_the_browser_gets_only_the_files_of_the_browser_mode():
    assert web.asset_path("lite.tflite") == WEIGHTS_DIR / "lite.tflite"
    assert web.asset_path("litert_wasm_internal.wasm").parent == web.RUNTIME_DIR
    for name in ("../config.py", "lite.keras", "SOURCE.json", "/etc/passwd"):
        with pytest.raises(web.WebAssetError, match="not a file of the browser mode"):
            web.asset_path(name)
    with pytest.raises(web.WebAssetError, match="unknown classifier"):
        web.model_names("huge")


def test_export_web_writes_a_folder_any_static_host_serves(tmp_path):
    written = web.export_web(tmp_path / "site", ("lite",))
    site = tmp_path / "site"
    assert {"index.html", "static/browser.js", "static/faces.js", "static/litert/litert_wasm_internal.wasm",
            "static/litert/LICENSE", "models/lite.tflite", "models/face_detection_front.tflite"} <= set(written)
    assert not (site / "models" / "main.tflite").exists()
    assert (site / "models" / "lite.tflite").read_bytes() == (WEIGHTS_DIR / "lite.tflite").read_bytes()
    page = (site / "index.html").read_text()
    assert 'data-runtime="browser"' in page and 'href="static/style.css"' in page and 'src="static/app.js"' in page
    assert "/api/predict" not in page and "healthz" not in page and 'id="runtime"' not in page  # no server behind it
    assert "https://" not in page.replace("https://github.com", "")  # nothing from a CDN
    web.export_web(site, ("lite",))  # again into the folder it wrote: fine
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(web.WebAssetError, match="other files in it"):
        web.export_web(tmp_path / "other")


def test_cli_export_web(tmp_path, capsys):
    assert cli.main(["export", "--web", str(tmp_path / "demo"), "--web-models", "lite"]) == 0
    out = capsys.readouterr().out
    assert "python -m http.server" in out and (tmp_path / "demo" / "index.html").is_file()
    assert cli.main(["export", "--web", str(tmp_path / "demo2"), "--web-models", "huge"]) == 2
    assert "unknown classifier" in capsys.readouterr().err


def test_the_widget_sends_files_as_buffers_or_base64_and_refuses_others():
    cam = webcam.Webcam()
    reply, buffers = cam.file_reply({"type": "file", "id": "v:file:1", "name": "lite.tflite", "mode": "buffers"})
    data = (WEIGHTS_DIR / "lite.tflite").read_bytes()
    assert reply["mode"] == "buffers" and reply["size"] == len(data) and buffers == [data] and "error" not in reply
    reply, buffers = cam.file_reply({"type": "file", "id": "v:file:2", "name": "wasm-utils.js", "mode": "base64"})
    assert buffers == [] and base64.b64decode(reply["data"]) == (web.RUNTIME_DIR / "wasm-utils.js").read_bytes()
    reply, buffers = cam.file_reply({"type": "file", "id": "v:file:3", "name": "../../secrets", "mode": "buffers"})
    assert buffers == [] and "not a file of the browser mode" in reply["error"] and reply["id"] == "v:file:3"


def test_browser_reports_set_faces_and_call_on_result():
    seen = []
    cam = webcam.Webcam(on_result=seen.append)
    probs = dict.fromkeys(CLASSES, 0.05) | {"happy": 0.7}
    cam.browser_result({"type": "faces", "faces": [{"box": [1.0, 2, 30, 40], "label": "happy", "probs": probs, "id": 0}]})
    assert cam.browser_reports == 1 and cam.faces[0]["box"] == [1, 2, 30, 40] and seen == [cam.faces]
    cam.browser_result({"type": "faces", "faces": [{"box": [1, 2, 3, 4]}]})  # malformed: ignored, logged
    assert cam.browser_reports == 1 and len(seen) == 1


def test_where_the_models_run_is_checked():
    assert webcam.Webcam().runtime == "auto" and webcam.Webcam(runtime="kernel").runtime == "kernel"
    assert webcam.Webcam(analyze=lambda im: []).runtime == "kernel"  # a custom analyze runs in the kernel
    with pytest.raises(ValueError, match="custom analyze runs in the kernel"):
        webcam.Webcam(analyze=lambda im: [], runtime="browser")
    for name, value in (("report_fps", 6), ("report_fps", 0), ("runtime", "gpu"), ("classifier", "huge")):
        with pytest.raises(traitlets.TraitError, match=name if name == "report_fps" else repr(value)):
            webcam.Webcam(**{name: value})
    assert {"runtime", "classifier", "smooth", "report_fps", "active_runtime", "runtime_error"} <= set(webcam.Webcam().keys)


def test_the_server_hands_out_the_models_and_the_runtime():
    client = create_app(analyze=lambda im: []).test_client()
    got = client.get("/models/lite.tflite")
    assert got.status_code == 200 and hashlib.sha256(got.data).hexdigest() == hashlib.sha256(
        (WEIGHTS_DIR / "lite.tflite").read_bytes()).hexdigest()
    assert client.get("/static/litert/litert_wasm_internal.wasm").status_code == 200
    for name in ("lite.keras", "litert-core.js", "..%2Fconfig.py"):
        bad = client.get(f"/models/{name}")
        assert bad.status_code == 404 and bad.is_json and bad.json["error"]
    page = client.get("/").get_data(as_text=True)
    assert 'id="runtime"' in page and 'value="browser"' in page and 'data-runtime="server"' in page
