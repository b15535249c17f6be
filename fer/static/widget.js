// fer.webcam.Webcam's front end (anywidget). fer/webcam.py serves this file appended to live.js as
// one ES module (anywidget loads a single module, and no CDN or bundler is needed), so
// mountLive is in scope here.
//
// Transport: each frame is a custom widget message {type: "frame", id, width, height, mode} whose
// JPEG travels as a binary buffer. Some widget managers (Colab's, on some paths) drop buffers; the
// kernel then answers {type: "no-buffers"} and, with transport "auto", this view re-sends that
// frame and all later ones as base64 text. transport "base64" forces the text path.

const LOST_AFTER_MS = 20000; // a frame unanswered this long is given up (kernel restarted); the loop sends a new one

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

    function onMessage(msg) {
      if (!msg || typeof msg.id !== "string" || !msg.id.startsWith(`${viewKey}:`)) return;
      if (msg.type === "result") settle(msg.id, (f) => f.resolve(msg));
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

    const follow = {
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
      live.destroy();
    };
  },
};
