// fer.webcam.Webcam's front end (anywidget). fer/webcam.py serves this file appended to live.js as
// one ES module (anywidget loads a single module, and no CDN or bundler is needed), so
// mountLive, loadModels (browser.js) and Smoother (faces.js) are in scope here.
//
// Where the models run (the `runtime` trait): "kernel" sends frames to the kernel, as below;
// "browser" runs BlazeFace and the classifier in this page (browser.js, LiteRT.js), on every new
// video frame, and reports the latest faces to the kernel at most `report_fps` times a second so
// that `cam.faces` and `on_result` keep working; "auto" runs in the browser when its runtime
// loads here and falls back to the kernel otherwise, saying why in the bar. The runtime's and the
// models' bytes come from the kernel as custom messages {type: "file", name} answered with one
// binary buffer (base64 text where buffers do not arrive): no file server, works offline.
//
// Transport: each frame is a custom widget message {type: "frame", id, width, height, mode} whose
// JPEG travels as a binary buffer. Some widget managers (Colab's, on some paths) drop buffers; the
// kernel then answers {type: "no-buffers"} and, with transport "auto", this view re-sends that
// frame and all later ones as base64 text. transport "base64" forces the text path.

const LOST_AFTER_MS = 20000; // a frame unanswered this long is given up (kernel restarted); the loop sends a new one
const FILE_TIMEOUT_MS = 120000; // a runtime or model file not sent by then fails the browser mode

function fromBase64(text) {
  const raw = atob(text);
  const bytes = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i += 1) bytes[i] = raw.charCodeAt(i);
  return bytes;
}

function asBytes(buffer) {
  if (buffer instanceof ArrayBuffer) return new Uint8Array(buffer);
  return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength); // a DataView or typed array
}

function toBase64(bytes) {
  const view = new Uint8Array(bytes);
  let text = "";
  for (let i = 0; i < view.length; i += 0x8000) text += String.fromCharCode.apply(null, view.subarray(i, i + 0x8000));
  return btoa(text);
}

export default {
  render({ model, el }) {
    const viewKey = Math.random().toString(36).slice(2, 8); // answers reach every view; each takes its own
    const pending = new Map();
    let mode = model.get("transport") === "base64" ? "base64" : "buffers";

    function send(id) {
      const frame = pending.get(id);
      if (!frame) return;
      const content = { type: "frame", id, width: frame.meta.width, height: frame.meta.height, mode };
      if (mode === "buffers") model.send(content, undefined, [frame.bytes]);
      else model.send({ ...content, data: toBase64(frame.bytes) });
    }

    function settle(id, fn) {
      const frame = pending.get(id);
      if (!frame) return;
      pending.delete(id);
      clearTimeout(frame.timer);
      fn(frame);
    }

    // ---- the browser mode's files, asked of the kernel one at a time by name
    const files = new Map();
    let fileSeq = 0;
    let fileMode = model.get("transport") === "base64" ? "base64" : "buffers";
    function getFile(name) {
      return new Promise((resolve, reject) => {
        const id = `${viewKey}:file:${++fileSeq}`;
        const timer = setTimeout(() => { files.delete(id); reject(new Error("the kernel did not send it")); }, FILE_TIMEOUT_MS);
        files.set(id, { name, resolve, reject, timer });
        model.send({ type: "file", id, name, mode: fileMode });
      });
    }
    function onFile(msg, buffers) {
      const wait = files.get(msg.id);
      if (!wait) return;
      if (msg.mode === "buffers" && !msg.error && !buffers?.length) { // dropped on the way: ask again as text
        fileMode = "base64";
        model.send({ type: "file", id: msg.id, name: wait.name, mode: fileMode });
        return;
      }
      files.delete(msg.id);
      clearTimeout(wait.timer);
      if (msg.error) wait.reject(new Error(msg.error));
      else wait.resolve(msg.mode === "base64" ? fromBase64(msg.data) : asBytes(buffers[0]));
    }

    function onMessage(msg, buffers) {
      if (!msg || typeof msg.id !== "string" || !msg.id.startsWith(`${viewKey}:`)) return;
      if (msg.type === "file") onFile(msg, buffers);
      else if (msg.type === "result") settle(msg.id, (f) => f.resolve(msg));
      else if (msg.type === "error") settle(msg.id, (f) => f.reject(new Error(msg.message)));
      else if (msg.type === "no-buffers") {
        if (model.get("transport") === "auto" && mode === "buffers") {
          mode = "base64";
          el.dataset.transport = mode;
          send(msg.id);
        } else {
          settle(msg.id, (f) => f.reject(new Error("the frame's binary buffer did not reach the kernel; use transport='base64' (or 'auto')")));
        }
      }
    }
    model.on("msg:custom", onMessage);

    async function predict(blob, meta) {
      const bytes = await blob.arrayBuffer();
      const id = `${viewKey}:${meta.id}`;
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => settle(id, (f) => f.reject(new Error("the kernel did not answer this frame"))), LOST_AFTER_MS);
        pending.set(id, { bytes, meta, resolve, reject, timer });
        send(id);
      });
    }

    // ---- the browser mode: models here, the latest faces reported to the kernel (throttled)
    let smoother = new Smoother();
    let lastReport = 0;
    let loaded = null; // a Promise of the analyser once the browser mode is tried
    async function analyzeHere(pixels, meta) {
      const models = await loaded;
      const started = performance.now();
      let faces = await models.analyze(pixels.rgba, pixels.width, pixels.height);
      if (model.get("smooth")) faces = smoother.update(faces);
      const ms = performance.now() - started;
      const now = performance.now();
      if (now - lastReport >= 1000 / model.get("report_fps")) {
        lastReport = now;
        model.send({ type: "faces", id: `${viewKey}:faces:${meta.id}`, faces, width: meta.width, height: meta.height,
          ms: Math.round(ms * 100) / 100 });
      }
      return { faces, kernel_ms: ms };
    }
    function setRuntime(active, why = "") {
      el.dataset.runtime = active;
      const label = active === "browser" ? `in the browser (${model.get("classifier")})`
        : active === "kernel" ? `in the kernel${why ? ` (${why})` : ""}` : "loading the models into the browser…";
      live.set({ analyze: active === "kernel" ? null : (pixels, meta) => analyzeHere(pixels, meta), where: label });
      if (model.get("active_runtime") !== active || model.get("runtime_error") !== why) {
        model.set({ active_runtime: active, runtime_error: why });
        model.save_changes();
      }
    }
    function chooseRuntime() {
      const wanted = model.get("runtime");
      if (wanted === "kernel") { setRuntime("kernel"); return; }
      smoother = new Smoother();
      setRuntime("loading");
      loaded = loadModels(getFile, { classifier: model.get("classifier") });
      loaded.then(() => setRuntime("browser"), (err) => {
        const why = `the browser runtime did not load: ${err.message || err}`;
        if (wanted === "auto") setRuntime("kernel", why);
        else live.set({ where: `not running: ${why}; use runtime='kernel'` });
      });
    }

    let lastStats = 0;
    let lastSent = "";
    const live = mountLive(el, {
      predict,
      context: "notebook",
      mirror: model.get("mirror"),
      maxFps: model.get("max_fps"),
      maxSide: model.get("max_side"),
      jpegQuality: model.get("jpeg_quality"),
      deviceId: model.get("device_id"),
      onRunning(on) {
        if (model.get("running") !== on) { model.set("running", on); model.save_changes(); }
      },
      onSettings(s) {
        model.set({ mirror: s.mirror, max_fps: s.maxFps, device_id: s.deviceId });
        model.save_changes();
      },
      onStats(s) { // to Python's `stats` trait: at most once a second, and only when it changed
        const now = performance.now();
        const next = { ...s, transport: mode };
        const text = JSON.stringify(next);
        if ((now - lastStats < 1000 && s.running) || text === lastSent) return;
        lastStats = now;
        lastSent = text;
        model.set("stats", next);
        model.save_changes();
      },
      onMessage(problem) {
        model.set("error", problem ? `${problem.title} ${problem.next || ""}`.trim() : "");
        model.save_changes();
      },
    });
    el.dataset.transport = mode;
    chooseRuntime();

    const follow = {
      "change:runtime": chooseRuntime,
      "change:classifier": chooseRuntime,
      "change:running": () => (model.get("running") ? live.start() : live.stop()),
      "change:mirror": () => live.set({ mirror: model.get("mirror") }),
      "change:max_fps": () => live.set({ maxFps: model.get("max_fps") }),
      "change:max_side": () => live.set({ maxSide: model.get("max_side") }),
      "change:jpeg_quality": () => live.set({ jpegQuality: model.get("jpeg_quality") }),
      "change:device_id": () => live.set({ deviceId: model.get("device_id") }),
      "change:transport": () => { mode = model.get("transport") === "base64" ? "base64" : "buffers"; el.dataset.transport = mode; },
    };
    for (const [event, fn] of Object.entries(follow)) model.on(event, fn);
    if (model.get("running")) live.start();

    return () => {
      for (const [event, fn] of Object.entries(follow)) model.off(event, fn);
      model.off("msg:custom", onMessage);
      for (const id of [...pending.keys()]) settle(id, (f) => f.reject(new Error("view closed")));
      for (const wait of files.values()) { clearTimeout(wait.timer); wait.reject(new Error("view closed")); }
      live.destroy();
    };
  },
};
