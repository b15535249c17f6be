// fer-study web app: send a photo to /api/predict and draw what comes back; the webcam view is
// fer/static/live.js, the same capture/overlay module the notebook widget uses (frames go one at
// a time, the next only after the answer, at most 10 a second; boxes stay drawn between answers).
// With `python -m fer serve --source ...` the page also shows the server's own annotated video
// (GET /video_feed, MJPEG) and its state from GET /healthz, polled every 2 s.
//
// The browser mode runs the models in this page instead (fer/static/browser.js: LiteRT.js and the
// package's .tflite files, fetched from static/litert/ and models/ beside the page): the page
// `python -m fer export --web DIR` writes has only that mode; the server's page offers it as
// "models run: in this browser". The latest answer is kept as JSON in the `data-faces` attribute
// of the overlay element (the live view's canvas, or the photo's).

import { RUNTIME_FILES, framePixels, loadModels } from "./browser.js";
import { Smoother } from "./faces.js";
import { color, drawFaces, mountLive } from "./live.js";

const CLASSES = window.FER_CLASSES;
const MAX_SIDE = 640; // very large photos go scaled down instead of being refused by the server

const canvas = document.getElementById("canvas");
const ctx = canvas.getContext("2d");
const drop = document.getElementById("drop");
const liveEl = document.getElementById("live");
const statusEl = document.getElementById("status");
const facesEl = document.getElementById("faces");
const hint = document.getElementById("hint");
const cameraButton = document.getElementById("camera");
const runtimeSelect = document.getElementById("runtime"); // absent on the static page: browser only
const classifierSelect = document.getElementById("classifier");
const PHOTO_MAX_SIDE = 1920; // the browser mode analyses photos at up to this side
let runtime = document.body.dataset.runtime;
let models = null; // a Promise of the browser's analyser (fer/static/browser.js), once asked for
let smoother = new Smoother();

async function getFile(name) {
  const url = new URL(RUNTIME_FILES.includes(name) ? `static/litert/${name}` : `models/${name}`, document.baseURI);
  const response = await fetch(url);
  if (!response.ok) throw new Error(`HTTP ${response.status} for ${url.pathname}`);
  return response.arrayBuffer();
}

function loadBrowserModels(classifier) {
  const started = performance.now();
  document.body.dataset.ready = "loading";
  setStatus(`Loading the ${classifier} model into this browser…`);
  smoother = new Smoother();
  models = loadModels(getFile, { classifier }).then((loaded) => {
    const ms = performance.now() - started;
    Object.assign(document.body.dataset, { ready: "true", loadMs: String(Math.round(ms)), classifier,
      readyAt: String(Math.round(performance.now())) }); // ms since the page's navigation started
    setStatus(`Models ready in this browser (${classifier}, LiteRT.js), loaded in ${(ms / 1000).toFixed(1)} s. ` +
      "Nothing is uploaded.");
    return loaded;
  }, (err) => {
    document.body.dataset.ready = "error";
    setStatus(`The models did not load in this browser: ${err.message}. ` + (runtimeSelect
      ? "Choose “models run on the server” to run them there."
      : "Serve the whole folder that python -m fer export --web wrote (or export it again)."), true);
    throw err;
  });
  models.catch(() => {}); // shown above; each use awaits it and shows its own failure
  return models;
}

/** The browser mode's answer for pixels, in the server's shape: {faces, width, height, ms}. */
async function analyzeHere(pixels, smooth) {
  const loaded = await models;
  const started = performance.now();
  const found = await loaded.analyze(pixels.rgba, pixels.width, pixels.height);
  const ms = Math.round(performance.now() - started);
  return { faces: smooth ? smoother.update(found) : found, width: pixels.width, height: pixels.height, ms, kernel_ms: ms };
}
const where = () => (runtime === "browser" ? `in this browser (${document.body.dataset.classifier || classifierSelect.value})` : "on the server");

function setStatus(text, isError = false) {
  statusEl.textContent = text;
  statusEl.classList.toggle("error", isError);
}

async function predict(blob) {
  const body = new FormData();
  body.append("image", blob, "frame.jpg");
  const response = await fetch("/api/predict", { method: "POST", body });
  const data = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
  if (!response.ok) throw new Error(data.error || `HTTP ${response.status}`);
  return data;
}

function listFaces(faces) {
  facesEl.replaceChildren();
  if (!faces.length) {
    facesEl.innerHTML = '<li class="empty">No face found. Try a well-lit, frontal face.</li>';
    return;
  }
  faces.forEach((face, i) => {
    const li = document.createElement("li");
    const title = document.createElement("div");
    title.className = "face-title";
    title.innerHTML = `<span>Face ${i + 1}</span><span style="color:${color(face.label)}">${face.label}</span>`;
    li.append(title);
    for (const name of CLASSES) {
      const p = face.probs[name] ?? 0;
      const row = document.createElement("div");
      row.className = "bar";
      row.innerHTML = `<span>${name}</span><span class="track"><span class="fill" style="width:${(100 * p).toFixed(1)}%;background:${color(name)}"></span></span><span class="pct">${(100 * p).toFixed(0)}%</span>`;
      li.append(row);
    }
    facesEl.append(li);
  });
}

const live = mountLive(liveEl, {
  context: "page",
  toggle: false, // the page's own button starts and stops it
  async predict(blob) {
    const data = await predict(blob);
    return { ...data, kernel_ms: data.ms };
  },
  analyze: runtime === "browser" ? (pixels) => analyzeHere(pixels, true) : undefined,
  where: where(),
  onResult(result) {
    listFaces(result.faces);
    const n = result.faces.length;
    setStatus(`Live: ${n} face${n === 1 ? "" : "s"}, ${result.ms} ms a frame ${where()}.`);
  },
  onRunning(on) {
    cameraButton.textContent = on ? "Stop webcam" : "Start webcam";
    cameraButton.classList.toggle("live", on);
    if (!on && !liveEl.querySelector(".fer-live-message:not([hidden])")) setStatus("Webcam off.");
  },
  onMessage(problem) {
    if (problem) setStatus(problem.title, true);
  },
});

function showPhotoStage() {
  live.stop();
  liveEl.hidden = true;
  drop.hidden = false;
}

async function startWebcam() {
  drop.hidden = true;
  liveEl.hidden = false;
  setStatus("Opening the webcam…");
  if (!(await live.start())) return; // the live view shows why, with what to do next
  setStatus("Live.");
}

async function analyseFile(file) {
  if (!file) return;
  showPhotoStage();
  const img = new Image();
  img.src = URL.createObjectURL(file);
  try {
    await img.decode();
  } catch {
    setStatus(`${file.name} is not an image this browser can show.`, true);
    return;
  }
  const scale = Math.min(1, MAX_SIDE / Math.max(img.naturalWidth, img.naturalHeight));
  canvas.width = Math.round(img.naturalWidth * scale);
  canvas.height = Math.round(img.naturalHeight * scale);
  ctx.drawImage(img, 0, 0, canvas.width, canvas.height);
  hint.hidden = true;
  setStatus("Analysing…");
  try {
    let data;
    if (runtime === "browser") {
      data = await analyzeHere(framePixels(img, img.naturalWidth, img.naturalHeight, PHOTO_MAX_SIDE), false);
    } else {
      const upload = file.size > 8 * 2 ** 20
        ? await new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.92))
        : file;
      data = await predict(upload);
    }
    canvas.dataset.faces = JSON.stringify(data.faces.map(({ box, label, probs }) => ({ box, label, probs })));
    drawFaces(ctx, data.faces, { sx: canvas.width / data.width, sy: canvas.height / data.height, top: 0 });
    listFaces(data.faces);
    const n = data.faces.length;
    setStatus(`${n} face${n === 1 ? "" : "s"} in ${data.ms} ms ${where()}.`);
  } catch (err) {
    setStatus(err.message, true);
  } finally {
    URL.revokeObjectURL(img.src);
  }
}

function chooseRuntime(next) {
  runtime = next;
  document.body.dataset.runtime = next;
  document.getElementById("classifier-choice").hidden = next !== "browser";
  if (next === "browser" && !models) loadBrowserModels(classifierSelect.value);
  live.set({ analyze: next === "browser" ? (pixels) => analyzeHere(pixels, true) : null, where: where() });
}
if (runtime === "browser") loadBrowserModels(classifierSelect.value);
runtimeSelect?.addEventListener("change", () => chooseRuntime(runtimeSelect.value));
classifierSelect.addEventListener("change", () => {
  document.body.dataset.classifier = classifierSelect.value;
  loadBrowserModels(classifierSelect.value);
  live.set({ where: where() });
});

document.getElementById("file").addEventListener("change", (e) => analyseFile(e.target.files[0]));
cameraButton.addEventListener("click", () => (live.running ? showPhotoStage() : startWebcam()));
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("dragging"); });
drop.addEventListener("dragleave", () => drop.classList.remove("dragging"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("dragging");
  analyseFile(e.dataTransfer.files[0]);
});

// ------------------------------------------------------------------ the server's video (--source)

const POLL_MS = 2000;
const RETRY_MS = 5000;

function watchServerStream(panel) {
  const img = document.getElementById("stream");
  const statusLine = document.getElementById("stream-status");
  const healthz = panel.dataset.healthz;
  const feed = panel.dataset.feed;
  let broken = panel.dataset.state === "error" || panel.dataset.state === "stopped";
  let paused = false; // the tab is hidden: the video is let go, so the server stops analysing it
  let retryAt = 0;

  function show(text, isError = false) {
    if (statusLine.textContent !== text) statusLine.textContent = text; // no repeats for screen readers
    statusLine.classList.toggle("error", isError);
  }

  function connect() {
    broken = false;
    img.hidden = false;
    img.src = `${feed}?t=${Date.now()}`; // a fresh request, never a cached frame
  }

  function describe(s) {
    const fps = Math.round(s.fps);
    const viewers = `${s.viewers} viewer${s.viewers === 1 ? "" : "s"}`;
    switch (s.state) {
      case "live": return `Live, ${fps > 0 ? `${fps} frames/s, ` : ""}${viewers}.`;
      case "idle": return `Waiting for the first frame of ${s.source}…`;
      case "starting": return `Opening ${s.source}…`;
      default: return s.state;
    }
  }

  async function poll() {
    let body;
    try {
      const response = await fetch(healthz, { cache: "no-store", signal: AbortSignal.timeout(POLL_MS * 2) });
      body = await response.json();
    } catch {
      show("The server is not answering: is `python -m fer serve` still running?", true);
      broken = true;
      img.hidden = true;
      return;
    }
    const s = body.stream;
    if (!s) return;
    panel.dataset.state = s.state;
    if (s.state === "error" || s.state === "stopped") {
      img.hidden = true;
      img.removeAttribute("src");
      broken = true;
      show(s.error || `${s.source} has stopped.`, true);
      return;
    }
    if (broken) {
      // the source is fine but this page's video failed (the server restarted, or too many viewers)
      if (paused || performance.now() < retryAt) return;
      connect();
    }
    show(describe(s));
  }

  async function failed() {
    if (paused || !img.getAttribute("src")) return;
    broken = true;
    img.hidden = true;
    retryAt = performance.now() + RETRY_MS;
    await poll();
    if (broken && !statusLine.classList.contains("error")) {
      show(`The video from the server did not load; trying again in ${RETRY_MS / 1000} s.`, true);
    }
  }
  img.addEventListener("error", failed);

  // a hidden tab lets the video go (the server analyses only while someone watches); back in
  // view, the next poll reconnects unless the source failed meanwhile
  document.addEventListener("visibilitychange", () => {
    paused = document.hidden;
    if (paused) {
      broken = true;
      retryAt = 0;
      img.removeAttribute("src");
    } else {
      poll();
    }
  });

  // the template's src starts loading before this module runs: it may have failed already
  if (!broken && img.complete && img.naturalWidth === 0) failed();
  else if (!broken) poll();
  setInterval(poll, POLL_MS);
}

const streamPanel = document.getElementById("server-stream");
if (streamPanel) watchServerStream(streamPanel);
