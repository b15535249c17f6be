// fer's models in the browser: BlazeFace (front, then back on frames where front found no face,
// as fer.analyze does) and the expression classifier, both the package's own .tflite files, run
// by LiteRT.js (WebAssembly, vendored in fer/static/litert/ by scripts/fetch_web_runtime.py).
// The preprocessing is fer/static/faces.js. Used by the notebook widget (files arrive as widget
// messages) and by the page (files fetched from its own folder); nothing comes from a CDN.
//
//   const models = await loadModels(getFile, {classifier: "lite"});
//   const faces = await models.analyze(rgba, width, height);   // [{box, label, probs}]
//
// `getFile(name)` returns a Promise of an ArrayBuffer (or Uint8Array) for each name in
// RUNTIME_FILES and modelFiles(classifier); a missing or broken file rejects loadModels with
// an Error whose message names the file.

import {
  BLAZEFACE, CLASSES, anchors, crop, decodeFaces, detectorInput, largestFirst, modelInput, toGray,
} from "./faces.js";

/** The runtime's files, as fer/static/litert/ holds them. */
export const RUNTIME_FILES = ["litert-core.js", "wasm-utils.js", "litert_wasm_internal.js", "litert_wasm_internal.wasm"];
/** The classifiers the browser can run: their file in fer/weights/ and input crop (the cards'). */
export const CLASSIFIERS = {
  lite: { file: "lite.tflite", crop: 44 },
  main: { file: "main.tflite", crop: 40 },
};

export function modelFiles(classifier = "lite") {
  if (!CLASSIFIERS[classifier]) throw new Error(`unknown classifier ${classifier}: lite or main`);
  return [BLAZEFACE.front.file, BLAZEFACE.back.file, CLASSIFIERS[classifier].file];
}

const bytesOf = (data) => (data instanceof Uint8Array ? data : new Uint8Array(data));
const blobUrl = (data, type) => URL.createObjectURL(new Blob([data], { type }));

/** Load LiteRT.js once per page (it is a page-wide singleton) from the bytes of its files. */
function loadRuntime(getFile) {
  if (!globalThis.__ferLiteRt) {
    globalThis.__ferLiteRt = (async () => {
      const [core, utils, loader, wasm] = await Promise.all(RUNTIME_FILES.map(async (name) => {
        try {
          return bytesOf(await getFile(name));
        } catch (err) {
          throw new Error(`the browser runtime's file ${name} did not load (${err.message || err})`);
        }
      }));
      const decoder = new TextDecoder();
      const utilsUrl = blobUrl(utils, "text/javascript");
      // the one bare import of the vendored module, pointed at its vendored neighbour
      const source = decoder.decode(core).replace(/from\s*["']@litertjs\/wasm-utils["']/, `from "${utilsUrl}"`);
      const litert = await import(/* webpackIgnore: true */ blobUrl(source, "text/javascript"));
      // Emscripten takes the wasm bytes from Module.wasmBinary (no fetch); the loader is named by
      // a URL ending in .js (a fragment on the blob URL) so LiteRT.js loads exactly this file.
      globalThis.Module = { wasmBinary: wasm.buffer.slice(wasm.byteOffset, wasm.byteOffset + wasm.byteLength) };
      try {
        await litert.loadLiteRt(`${blobUrl(loader, "text/javascript")}#litert_wasm_internal.js`);
      } catch (err) {
        throw new Error(`LiteRT.js did not start in this browser (${err.message || err})`);
      }
      return litert;
    })();
    globalThis.__ferLiteRt.catch(() => { globalThis.__ferLiteRt = undefined; });
  }
  return globalThis.__ferLiteRt;
}

/** A copy of a .tflite file whose tensors' batch dimension is fixed at 1: the classifiers are
 * saved with a dynamic batch (shape_signature -1), which LiteRT.js's compiled models refuse. Reads
 * the flatbuffer (Model.subgraphs[0].tensors[i].shape_signature, schema fields 2, 0, 7) and
 * writes 1 over each -1 in place; weights and graph are untouched. */
export function fixedBatch(bytes) {
  const out = new Uint8Array(bytes);
  const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
  const field = (table, i) => {
    const vtable = table - view.getInt32(table, true);
    const at = 4 + 2 * i < view.getUint16(vtable, true) ? view.getUint16(vtable + 4 + 2 * i, true) : 0;
    return at ? table + at : 0;
  };
  const deref = (pos) => pos + view.getUint32(pos, true);
  const model = deref(0);
  const subgraphs = field(model, 2);
  if (!subgraphs) return out;
  const graphs = deref(subgraphs);
  for (let g = 0; g < view.getUint32(graphs, true); g += 1) {
    const tensorsAt = field(deref(graphs + 4 + 4 * g), 0);
    if (!tensorsAt) continue;
    const tensors = deref(tensorsAt);
    for (let t = 0; t < view.getUint32(tensors, true); t += 1) {
      const signature = field(deref(tensors + 4 + 4 * t), 7);
      if (!signature) continue;
      const dims = deref(signature);
      for (let d = 0; d < view.getUint32(dims, true); d += 1) {
        if (view.getInt32(dims + 4 + 4 * d, true) === -1) view.setInt32(dims + 4 + 4 * d, 1, true);
      }
    }
  }
  return out;
}

async function compile(litert, getFile, name) {
  let bytes;
  try {
    bytes = bytesOf(await getFile(name));
  } catch (err) {
    throw new Error(`the model file ${name} did not load (${err.message || err})`);
  }
  try {
    const model = await litert.loadAndCompile(fixedBatch(bytes), { accelerator: "wasm" });
    return { model, inputs: model.getInputDetails(), outputs: model.getOutputDetails() };
  } catch (err) {
    throw new Error(`the model file ${name} is not a model LiteRT.js can run (${err.message || err})`);
  }
}

async function run(litert, compiled, data, shape) {
  const input = new litert.Tensor(data, shape);
  const outputs = await compiled.model.run([input]);
  input.delete();
  const arrays = outputs.map((t) => {
    const a = Float32Array.from(t.toTypedArray());
    t.delete();
    return a;
  });
  return arrays;
}

/** Load the runtime, BlazeFace and `classifier` ("lite" or "main"); resolve to the analyser. */
export async function loadModels(getFile, { classifier = "lite" } = {}) {
  const started = performance.now();
  const files = modelFiles(classifier);
  const litert = await loadRuntime(getFile);
  const [front, back, clf] = await Promise.all(files.map((name) => compile(litert, getFile, name)));
  const detectors = [["front", front], ["back", back]].map(([name, compiled]) => {
    const { size, strides } = BLAZEFACE[name];
    // regressors (1, A, 16) and scores (1, A, 1): told apart by shape, as faces.py does
    const boxesAt = compiled.outputs.findIndex((o) => o.shape.at(-1) === 16);
    const scoresAt = compiled.outputs.findIndex((o) => o.shape.at(-1) === 1);
    return { name, compiled, size, boxesAt, scoresAt, anchorXY: anchors(size, strides) };
  });
  const side = CLASSIFIERS[classifier].crop;

  async function detectWith(d, rgba, width, height) {
    const { input, scale } = detectorInput(rgba, width, height, d.size);
    const out = await run(litert, d.compiled, input, [1, d.size, d.size, 3]);
    return decodeFaces(out[d.boxesAt], out[d.scoresAt], d.anchorXY, d.size, scale, width, height);
  }

  /** Every face in an RGBA frame, largest first, as fer.analyze returns them (plus `crop48`,
   * the 48x48 crop the classifier saw, when `keepCrops`). */
  async function analyze(rgba, width, height, { keepCrops = false } = {}) {
    let found = await detectWith(detectors[0], rgba, width, height);
    if (!found.length) found = await detectWith(detectors[1], rgba, width, height);
    if (!found.length) return [];
    found = largestFirst(found);
    const gray = toGray(rgba, width, height);
    const crops = found.map((f) => crop(gray, width, height, f));
    const probs = [];
    for (const c of crops) probs.push((await run(litert, clf, modelInput(c, side), [1, side, side, 1]))[0]); // batch 1: the files' static shape
    return found.map((f, i) => {
      const p = probs[i];
      const top = p.indexOf(Math.max(...p));
      const face = { box: f.box, label: CLASSES[top], probs: Object.fromEntries(CLASSES.map((c, k) => [c, p[k]])) };
      if (keepCrops) face.crop48 = Array.from(crops[i]);
      return face;
    });
  }

  return { analyze, classifier, loadMs: performance.now() - started, files: [...RUNTIME_FILES, ...files] };
}

/** The pixels of anything a canvas can draw (a video, an image, an ImageBitmap), at most
 * `maxSide` on its longer side, as {rgba, width, height}. */
export function framePixels(source, width, height, maxSide = Infinity, canvas = document.createElement("canvas")) {
  const scale = Math.min(1, maxSide / Math.max(width, height));
  canvas.width = Math.round(width * scale);
  canvas.height = Math.round(height * scale);
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(source, 0, 0, canvas.width, canvas.height);
  return { rgba: ctx.getImageData(0, 0, canvas.width, canvas.height).data, width: canvas.width, height: canvas.height };
}
