"""Which WebAssembly runtime runs the shipped models in the browser: LiteRT.js (the same .tflite
files) against ONNX Runtime Web (the same models converted to ONNX by tf2onnx), in Debian's chromium.

    npm pack onnxruntime-web@1.31.1 && tar xzf onnxruntime-web-1.31.1.tgz   # gives ./package
    flock /tmp/fer-heavy.lock .venv/bin/python benchmarks/web_runtimes.py --ort package [--runs 200]

For each runtime: the bytes a page must load (the runtime's JS and its one wasm variant), the time
to start it and compile the models, and the median time of one call of BlazeFace front (1x128x128x3)
and of the lite classifier (1x44x44x1) over ``--runs`` calls after 20 warm-up calls, the two runtimes
alternating call by call (so both see the same load), single-threaded
(threads need cross-origin isolation, which notebooks and static hosts do not give). Both runtimes'
outputs are compared (max |difference|) so that the two are timed doing the same work. Needs the
``export`` extra (tf2onnx) for the conversion.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

import browser  # noqa: E402

MODELS = {"front": (ROOT / "fer/weights/blazeface/face_detection_front.tflite", [1, 128, 128, 3]),
          "lite": (ROOT / "fer/weights/lite.tflite", [1, 44, 44, 1])}
ORT_FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")

PAGE = """<!doctype html><html><body>
<script type="importmap">{"imports": {"@litertjs/wasm-utils": "./litert/wasm-utils.js"}}</script>
<script type="module">
import { loadModels, RUNTIME_FILES, fixedBatch } from "./browser.js";
window.bench = async (models, runs) => {
  const med = (a) => a.sort((x, y) => x - y)[a.length >> 1];
  const inputs = Object.fromEntries(Object.entries(models).map(([k, shape]) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    for (let i = 0; i < n; i += 1) data[i] = ((i * 7919) % 255) / (k === "front" ? 127.5 : 1) - (k === "front" ? 1 : 0);
    return [k, { shape, data }];
  }));
  const out = { litert: {}, ort: {} };
  // LiteRT.js: start the runtime, compile both models
  let t = performance.now();
  const get = async (name) => (await fetch(RUNTIME_FILES.includes(name) ? `litert/${name}` : name)).arrayBuffer();
  const core = await import("./litert/litert-core.js");
  globalThis.Module = { wasmBinary: await get("litert_wasm_internal.wasm") };
  await core.loadLiteRt("litert/litert_wasm_internal.js");
  const lt = {};
  for (const k of Object.keys(models)) lt[k] = await core.loadAndCompile(fixedBatch(new Uint8Array(await get(`${k}.tflite`))), { accelerator: "wasm" });
  out.litert.start_ms = performance.now() - t;
  // ONNX Runtime Web: the same
  t = performance.now();
  const ort = await import("./ort/ort.wasm.min.mjs");
  ort.env.wasm.numThreads = 1;
  ort.env.wasm.wasmPaths = new URL("./ort/", location.href).href;
  const os = {};
  for (const k of Object.keys(models)) os[k] = await ort.InferenceSession.create(`${k}.onnx`, { executionProviders: ["wasm"] });
  out.ort.start_ms = performance.now() - t;
  const runLt = async (k) => {
    const x = new core.Tensor(inputs[k].data, inputs[k].shape);
    const y = await lt[k].run([x]);
    const arrays = y.map((v) => Float32Array.from(v.toTypedArray()));
    y.forEach((v) => v.delete()); x.delete();
    return arrays;
  };
  const runOrt = async (k) => {
    const res = await os[k].run({ [os[k].inputNames[0]]: new ort.Tensor("float32", inputs[k].data, inputs[k].shape) });
    return os[k].outputNames.map((name) => res[name].data);
  };
  let maxDiff = 0;
  for (const k of Object.keys(models)) {
    const a = await runLt(k);
    const b = await runOrt(k);
    b.forEach((v) => { const w = a.find((u) => u.length === v.length); for (let q = 0; q < v.length; q += 1) maxDiff = Math.max(maxDiff, Math.abs(v[q] - w[q])); });
    const times = { litert: [], ort: [] };
    for (let i = 0; i < runs + 20; i += 1) { // alternating, call by call: both see the same load
      let s = performance.now();
      await runLt(k);
      if (i >= 20) times.litert.push(performance.now() - s);
      s = performance.now();
      await runOrt(k);
      if (i >= 20) times.ort.push(performance.now() - s);
    }
    out.litert[`${k}_ms`] = med(times.litert);
    out.ort[`${k}_ms`] = med(times.ort);
  }
  out.max_abs_output_difference = maxDiff;
  return out;
};
window.ready = true;
</script></body></html>"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ort", required=True, type=Path, help="an unpacked onnxruntime-web npm package (its folder 'package')")
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        site = Path(tmp)
        shutil.copytree(ROOT / "fer/static/litert", site / "litert")
        for name in ("browser.js", "faces.js"):
            shutil.copy(ROOT / "fer/static" / name, site / name)
        (site / "ort").mkdir()
        for name in ORT_FILES:
            shutil.copy(args.ort / "dist" / name, site / "ort" / name)
        for key, (path, _shape) in MODELS.items():
            shutil.copy(path, site / f"{key}.tflite")
            subprocess.run([sys.executable, "-m", "tf2onnx.convert", "--tflite", str(path), "--output",
                            str(site / f"{key}.onnx"), "--opset", "17"], check=True, capture_output=True)
        (site / "index.html").write_text(PAGE)
        sizes = {"litert": sum((site / "litert" / n).stat().st_size for n in
                               ("litert-core.js", "wasm-utils.js", "litert_wasm_internal.js", "litert_wasm_internal.wasm")),
                 "ort": sum((site / "ort" / n).stat().st_size for n in ORT_FILES),
                 "tflite_models": sum((site / f"{k}.tflite").stat().st_size for k in MODELS),
                 "onnx_models": sum((site / f"{k}.onnx").stat().st_size for k in MODELS)}
        port = browser.free_port()
        cmd = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(site)]
        with browser.server(cmd, f"http://127.0.0.1:{port}", site / "server.log", ready="/index.html") as url, \
                sync_playwright() as p:
            b = p.chromium.launch(executable_path=browser.chromium_path(), headless=True, args=["--no-sandbox"])
            page = b.new_page()
            page.goto(url + "/index.html")
            page.wait_for_function("window.ready")
            result = page.evaluate("([m, r]) => bench(m, r)", [{k: s for k, (_, s) in MODELS.items()}, args.runs])
            b.close()
    print(json.dumps({"bytes": sizes, **result}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
