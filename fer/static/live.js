// fer live camera view: the browser's camera, frames to a predictor one at a time, an overlay drawn
// from the latest answer. One implementation for the web page (fer/templates/index.html: frames go
// to POST /api/predict) and the notebook widget (fer.webcam.Webcam: frames go to the kernel as
// widget messages; fer/static/widget.js). Each caller passes `predict(blob, frame)`, or, for the
// browser mode (the models run in this page: fer/static/browser.js), `analyze(pixels, frame)`,
// which gets each new video frame's pixels instead of a JPEG.
//
// Why it is shaped like this:
// - the <video> plays the camera stream itself, so it runs at the camera's rate and never waits
//   for a prediction; a transparent <canvas> on top holds only the boxes, redrawn when an answer
//   arrives, so boxes stay up between answers instead of blinking off;
// - one frame in flight: the next frame is grabbed only when the previous answer came back, so the
//   rate follows the predictor (a busy kernel gets fewer frames, never a queue of stale ones);
// - every failure is a message inside the view that says what to do next.

export const COLORS = {
  angry: "#dc2626", disgust: "#16a34a", fear: "#9333ea", happy: "#d97706",
  neutral: "#64748b", sad: "#2563eb", surprise: "#db2777",
};
export const color = (label) => COLORS[label] || "#4f46e5";

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Draw each face's box, label and top probabilities as bars on `ctx`.
 * Boxes are in the frame's pixels; `sx`, `sy` map them to the canvas; `mirror` flips x (the
 * video is shown mirrored) while the text stays readable. */
export function drawFaces(ctx, faces, { sx = 1, sy = 1, mirror = false, width = ctx.canvas.width, top = 3 } = {}) {
  const line = Math.max(2, Math.round(Math.min(ctx.canvas.width, ctx.canvas.height) / 220));
  const font = Math.max(12, line * 6);
  faces.forEach((face, i) => {
    let [x, y, w, h] = face.box;
    x *= sx; y *= sy; w *= sx; h *= sy;
    if (mirror) x = width - x - w;
    const c = color(face.label);
    ctx.lineWidth = line;
    ctx.strokeStyle = c;
    ctx.strokeRect(x, y, w, h);
    // label tab above the box (inside it when the box touches the top edge)
    ctx.font = `600 ${font}px system-ui, sans-serif`;
    const p = face.probs?.[face.label] ?? 0;
    const text = `${faces.length > 1 ? `${i + 1} ` : ""}${face.label} ${Math.round(100 * p)}%`;
    const tw = ctx.measureText(text).width + 10;
    const th = font + 8;
    const ty = y - th >= 0 ? y - th : y;
    ctx.fillStyle = c;
    ctx.fillRect(x - line / 2, ty, tw, th);
    ctx.fillStyle = "#fff";
    ctx.fillText(text, x + 4, ty + th - 6);
    // the top probabilities as bars, right of the box when there is room, else left of it
    const ranked = Object.entries(face.probs || {}).sort((a, b) => b[1] - a[1]).slice(0, top);
    const small = Math.max(11, Math.round(font * 0.75));
    const barW = Math.max(60, w * 0.45);
    const labelW = small * 4.6;
    const rowH = small + 6;
    const right = x + w + 6;
    const bx = right + labelW + barW <= ctx.canvas.width ? right : Math.max(0, x - labelW - barW - 6);
    ctx.font = `500 ${small}px system-ui, sans-serif`;
    ranked.forEach(([name, value], r) => {
      const ry = y + r * rowH;
      ctx.fillStyle = "rgba(15, 23, 42, 0.72)";
      ctx.fillRect(bx, ry, labelW + barW, rowH - 2);
      ctx.fillStyle = "#fff";
      ctx.fillText(name, bx + 4, ry + small);
      ctx.fillStyle = color(name);
      ctx.fillRect(bx + labelW, ry + 3, Math.max(1, barW * value - 4), rowH - 8);
    });
  });
}

/** What stops the camera from opening here, before trying: {title, next} or null. */
export function cameraBlocker(context = "page") {
  const where = window.location;
  if (where.protocol.startsWith("vscode-webview") || /vscode-cdn|vscode-resource/.test(where.href)) {
    return {
      code: "vscode",
      title: "VS Code's notebook view gives widgets no camera.",
      next: "Use the camera through the kernel, which runs on this computer: " +
        "fer.webcam.KernelCamera(0). Or open the notebook in JupyterLab (jupyter lab) in a browser.",
    };
  }
  if (!window.isSecureContext || !navigator.mediaDevices?.getUserMedia) {
    const port = where.port || (where.protocol === "https:" ? "443" : "80");
    return {
      code: "insecure",
      title: `The browser hides the camera from this page (plain http from ${where.hostname}).`,
      next: "Browsers give a camera only to https:// pages and to localhost. Open it over https, " +
        `or tunnel it: ssh -L ${port}:localhost:${port} ${where.hostname}, then open ` +
        `http://localhost:${port}${context === "page" ? "/" : " and this notebook there"}.`,
    };
  }
  return null;
}

/** A getUserMedia error → {code, title, next}. */
export function cameraProblem(err, context = "page") {
  const fallback = context === "page"
    ? "or upload a photo instead."
    : "or run a video file through the kernel: fer.webcam.KernelCamera(\"clip.mp4\").";
  switch (err?.name) {
    case "NotAllowedError":
    case "SecurityError":
    case "PermissionDeniedError":
      return {
        code: "denied", title: "Camera permission was denied.",
        next: "Allow the camera for this page (the camera icon in the address bar, or the site " +
          `settings), then press Start camera; ${fallback}`,
      };
    case "NotFoundError":
    case "OverconstrainedError":
    case "DevicesNotFoundError":
      return { code: "none", title: "No camera was found.", next: `Connect a camera and press Start camera, ${fallback}` };
    case "NotReadableError":
    case "TrackStartError":
    case "AbortError":
      return {
        code: "busy", title: "The camera is in use or could not start.",
        next: "Close other programs or tabs that use it (video calls), then press Start camera.",
      };
    default:
      return { code: "error", title: `The camera failed: ${err?.name || "Error"}: ${err?.message || err}.`, next: "Press Start camera to try again." };
  }
}

function el(tag, attrs = {}, children = []) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else node.setAttribute(k, v);
  }
  node.append(...children);
  return node;
}

function percentile(sorted, q) {
  if (!sorted.length) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

/** Mount the live view in `root` and return its controller.
 *
 * options:
 *   predict(blob, {id, width, height}) → Promise<{faces, kernel_ms?, received?}>   (or:)
 *   analyze({rgba, width, height}, {id, width, height}) → Promise<{faces, kernel_ms?}>: the browser
 *     mode; it runs on every new video frame (up to the camera's rate), not at maxFps
 *   where: what the bar says runs the models ("in the browser", "in the kernel"; set() changes it)
 *   context: "page" | "notebook"  (chooses the next steps in messages)
 *   mirror, maxFps, maxSide, jpegQuality, deviceId: the starting settings
 *   toggle: show the Start/Stop button (the page has its own)
 *   slowAfterMs: a prediction outstanding this long is reported as "not answering"
 *   onResult(result, frame), onStats(stats), onRunning(bool), onSettings(settings), onMessage(message|null)
 */
export function mountLive(root, options) {
  const opts = { context: "page", mirror: true, maxFps: 10, maxSide: 640, jpegQuality: 0.8,
    deviceId: "", toggle: true, slowAfterMs: 4000, where: "", ...options };
  const settings = { mirror: opts.mirror, maxFps: opts.maxFps, maxSide: opts.maxSide,
    jpegQuality: opts.jpegQuality, deviceId: opts.deviceId, where: opts.where, analyze: opts.analyze };

  const toggle = el("button", { class: "fer-live-toggle", type: "button", text: "Start camera" });
  const mirrorBox = el("input", { type: "checkbox", class: "fer-live-mirror" });
  const cameraSelect = el("select", { class: "fer-live-camera", "aria-label": "camera" },
    [el("option", { value: "", text: "default camera" })]);
  const fpsInput = el("input", { type: "number", class: "fer-live-fps", min: "1", max: "30", step: "1", "aria-label": "maximum predictions per second" });
  const statsEl = el("span", { class: "fer-live-stats", role: "status", text: "camera off" });
  const bar = el("div", { class: "fer-live-bar" }, [
    ...(opts.toggle ? [toggle] : []),
    el("label", {}, [mirrorBox, " mirror"]),
    cameraSelect,
    el("label", {}, ["max ", fpsInput, " /s"]),
    statsEl,
  ]);
  const video = el("video", { class: "fer-live-video", playsinline: "", muted: "", autoplay: "" });
  video.muted = true;
  const overlay = el("canvas", { class: "fer-live-overlay", "aria-label": "detected faces" });
  const stage = el("div", { class: "fer-live-stage" }, [video, overlay]);
  const msgTitle = el("strong");
  const msgNext = el("span");
  const message = el("div", { class: "fer-live-message", role: "alert" }, [msgTitle, " ", msgNext]);
  message.hidden = true;
  const box = el("div", { class: "fer-live" }, [bar, stage, message]);
  root.append(box);
  mirrorBox.checked = settings.mirror;
  fpsInput.value = String(settings.maxFps);
  fpsInput.disabled = Boolean(settings.analyze);

  const work = document.createElement("canvas"); // the downscaled frame that is encoded and sent
  const workCtx = work.getContext("2d", { willReadFrequently: true });
  const ctx = overlay.getContext("2d");
  let stream = null;
  let session = 0;      // bumps on every start/stop so an old loop ends itself
  let frameId = 0;
  let latest = null;    // {faces, width, height}: what the overlay shows
  let inFlightSince = 0;
  let messageCode = null;
  const rtts = [];      // the last 100 round trips (grab, encode, predict, answer), ms
  const encodes = [];   // the last 100 grab + JPEG encode times, ms
  const answeredAt = []; // times of the answers in the last 3 s
  const stats = { predictions: 0, errors: 0, fps: 0, rtt_p50_ms: NaN, rtt_p95_ms: NaN, encode_p50_ms: NaN, kernel_ms: NaN, received: 0 };

  function showMessage(problem) {
    messageCode = problem ? problem.code : null;
    message.hidden = !problem;
    box.dataset.message = problem ? problem.code : "";
    if (problem) {
      msgTitle.textContent = problem.title;
      msgNext.textContent = problem.next || "";
    }
    opts.onMessage?.(problem);
  }

  function redraw() {
    const w = Math.round(overlay.clientWidth * devicePixelRatio);
    const h = Math.round(overlay.clientHeight * devicePixelRatio);
    if (overlay.width !== w || overlay.height !== h) { overlay.width = w; overlay.height = h; }
    ctx.clearRect(0, 0, overlay.width, overlay.height);
    // the latest answer, for scripts and tests: [{box: [x, y, w, h], label, probs}] in frame pixels
    overlay.dataset.faces = JSON.stringify(latest && stream
      ? latest.faces.map(({ box, label, probs }) => ({ box, label, probs })) : []);
    if (!latest || !stream) return;
    drawFaces(ctx, latest.faces, { sx: w / latest.width, sy: h / latest.height, mirror: settings.mirror, width: w });
  }
  const resize = new ResizeObserver(redraw);
  resize.observe(overlay);

  function applyMirror() {
    video.style.transform = settings.mirror ? "scaleX(-1)" : "";
    redraw();
  }

  function report() {
    const now = performance.now();
    while (answeredAt.length && now - answeredAt[0] > 3000) answeredAt.shift();
    const span = answeredAt.length > 1 ? (answeredAt.at(-1) - answeredAt[0]) / 1000 : 0;
    stats.fps = span > 0 ? (answeredAt.length - 1) / span : 0;
    const sorted = [...rtts].sort((a, b) => a - b);
    stats.rtt_p50_ms = percentile(sorted, 0.5);
    stats.rtt_p95_ms = percentile(sorted, 0.95);
    stats.encode_p50_ms = percentile([...encodes].sort((a, b) => a - b), 0.5);
    const round = (v) => (Number.isFinite(v) ? Math.round(v) : "–");
    const where = settings.where ? `${settings.where} · ` : "";
    statsEl.textContent = stream
      ? `${where}${stats.fps.toFixed(1)} predictions/s · ${settings.analyze ? "frame to overlay" : "round trip"} ` +
        `${round(stats.rtt_p50_ms)} ms (p95 ${round(stats.rtt_p95_ms)}) · model ${round(stats.kernel_ms)} ms`
      : `${where}camera off`;
    box.dataset.where = settings.where;
    for (const [k, v] of Object.entries(stats)) box.dataset[k.replace(/_([a-z0-9])/g, (_, c) => c.toUpperCase())] = String(v);
    box.dataset.running = String(Boolean(stream));
    opts.onStats?.({ ...stats, running: Boolean(stream) });
  }

  async function grab() {
    const vw = video.videoWidth;
    const vh = video.videoHeight;
    const scale = Math.min(1, settings.maxSide / Math.max(vw, vh));
    work.width = Math.round(vw * scale);
    work.height = Math.round(vh * scale);
    workCtx.drawImage(video, 0, 0, work.width, work.height);
    if (settings.analyze) {
      return { pixels: { rgba: workCtx.getImageData(0, 0, work.width, work.height).data, width: work.width, height: work.height },
        width: work.width, height: work.height };
    }
    const blob = await new Promise((resolve) => work.toBlob(resolve, "image/jpeg", settings.jpegQuality));
    return { blob, width: work.width, height: work.height };
  }

  // The browser mode analyses each video frame once: wait for the next one the camera delivers.
  // Counted by the video's decoded frames, not requestVideoFrameCallback, which follows the page's
  // compositor (about 18 a second on a busy headless Chromium while the camera sent 28).
  let lastFrameCount = -1;
  async function nextFrame() {
    const deadline = performance.now() + 250; // a paused or hidden video must not stall the loop
    while (performance.now() < deadline) {
      const count = video.getVideoPlaybackQuality ? video.getVideoPlaybackQuality().totalVideoFrames : -1;
      if (count < 0) { await sleep(1000 / 60); return; }
      if (count !== lastFrameCount) { lastFrameCount = count; return; }
      await sleep(4);
    }
  }

  async function loop(mine) {
    while (mine === session) {
      if (video.readyState < 2 || !video.videoWidth) { await sleep(30); continue; }
      if (settings.analyze) await nextFrame();
      if (mine !== session) return;
      const started = performance.now();
      const frame = await grab();
      if (mine !== session) return;
      encodes.push(performance.now() - started);
      if (encodes.length > 100) encodes.shift();
      const meta = { id: ++frameId, width: frame.width, height: frame.height };
      inFlightSince = performance.now();
      let result = null;
      try {
        result = settings.analyze ? await settings.analyze(frame.pixels, meta) : await opts.predict(frame.blob, meta);
      } catch (err) {
        inFlightSince = 0;
        if (mine !== session) return;
        stats.errors += 1;
        showMessage({ code: "predict", title: `No prediction: ${err.message || err}`,
          next: "The video stays live; the next frame is tried in a second." });
        report();
        await sleep(1000);
        continue;
      }
      inFlightSince = 0;
      if (mine !== session) return;
      const now = performance.now();
      rtts.push(now - started);
      if (rtts.length > 100) rtts.shift();
      answeredAt.push(now);
      stats.predictions += 1;
      if (Number.isFinite(result.kernel_ms)) stats.kernel_ms = result.kernel_ms;
      if (Number.isFinite(result.received)) stats.received = result.received;
      if (messageCode === "predict" || messageCode === "slow") showMessage(null);
      latest = { faces: result.faces || [], width: meta.width, height: meta.height };
      box.dataset.labels = latest.faces.map((f) => f.label).join(",");
      redraw();
      opts.onResult?.(result, meta);
      const wait = settings.analyze ? 0 : 1000 / Math.max(0.1, settings.maxFps) - (performance.now() - started);
      if (wait > 0) await sleep(wait);
    }
  }

  // A prediction outstanding too long: say so, keep the video playing, keep waiting.
  const watchdog = setInterval(() => {
    if (stream && inFlightSince && performance.now() - inFlightSince > opts.slowAfterMs) {
      const s = Math.round((performance.now() - inFlightSince) / 1000);
      showMessage(opts.context === "page"
        ? { code: "slow", title: `The server has not answered for ${s} s.`, next: "Is `python -m fer serve` still running? The video stays live; predictions resume when it answers." }
        : { code: "slow", title: `The kernel has not answered for ${s} s.`, next: "It is busy with another cell, or stopped (restart it and run the widget's cell again). The video stays live; predictions resume when it answers." });
    }
    report();
  }, 500);

  async function listCameras() {
    try {
      const devices = (await navigator.mediaDevices.enumerateDevices()).filter((d) => d.kind === "videoinput");
      const current = stream?.getVideoTracks()[0]?.getSettings().deviceId || settings.deviceId;
      cameraSelect.replaceChildren(...devices.map((d, i) =>
        el("option", { value: d.deviceId, text: d.label || `camera ${i + 1}` })));
      if (!devices.length) cameraSelect.append(el("option", { value: "", text: "no camera" }));
      cameraSelect.value = current || cameraSelect.value;
    } catch { /* the list is a convenience; the default camera still works */ }
  }

  async function start() {
    if (stream) return true;
    const blocked = cameraBlocker(opts.context);
    if (blocked) { showMessage(blocked); setRunning(false); return false; }
    const mine = ++session;
    toggle.disabled = true;
    let opened;
    try {
      opened = await navigator.mediaDevices.getUserMedia({
        audio: false,
        video: settings.deviceId ? { deviceId: { exact: settings.deviceId } } : { width: { ideal: 1280 }, height: { ideal: 720 } },
      });
    } catch (err) {
      toggle.disabled = false;
      if (mine === session) { showMessage(cameraProblem(err, opts.context)); setRunning(false); }
      return false;
    }
    toggle.disabled = false;
    if (mine !== session) { opened.getTracks().forEach((t) => t.stop()); return false; }
    stream = opened;
    stream.getVideoTracks()[0]?.addEventListener("ended", () => {
      if (stream === opened) { stop(); showMessage({ code: "ended", title: "The camera was disconnected.", next: "Press Start camera to try again." }); }
    });
    video.srcObject = stream;
    try { await video.play(); } catch { /* autoplay of a muted stream is allowed; play() races are harmless */ }
    showMessage(null);
    setRunning(true);
    listCameras();
    loop(mine);
    return true;
  }

  function stop() {
    session += 1;
    if (stream) stream.getTracks().forEach((t) => t.stop());
    stream = null;
    video.srcObject = null;
    latest = null;
    inFlightSince = 0;
    redraw();
    setRunning(false);
  }

  function setRunning(on) {
    toggle.textContent = on ? "Stop camera" : "Start camera";
    toggle.classList.toggle("live", on);
    box.classList.toggle("running", on);
    report();
    opts.onRunning?.(on);
  }

  function set(changes) {
    const before = settings.deviceId;
    Object.assign(settings, Object.fromEntries(Object.entries(changes).filter(([, v]) => v !== undefined)));
    mirrorBox.checked = settings.mirror;
    fpsInput.value = String(settings.maxFps);
    fpsInput.disabled = Boolean(settings.analyze); // the browser mode follows the camera's rate
    applyMirror();
    report();
    if (settings.deviceId !== before && stream) { stop(); start(); }
  }

  toggle.addEventListener("click", () => (stream ? stop() : start()));
  mirrorBox.addEventListener("change", () => { set({ mirror: mirrorBox.checked }); opts.onSettings?.({ ...settings }); });
  fpsInput.addEventListener("change", () => {
    const v = Number(fpsInput.value);
    if (Number.isFinite(v) && v >= 1 && v <= 30) set({ maxFps: v });
    else fpsInput.value = String(settings.maxFps);
    opts.onSettings?.({ ...settings });
  });
  cameraSelect.addEventListener("change", () => { set({ deviceId: cameraSelect.value }); opts.onSettings?.({ ...settings }); });
  applyMirror();
  report();

  return {
    start, stop, set, element: box,
    get running() { return Boolean(stream); },
    stats: () => ({ ...stats }),
    destroy() { stop(); clearInterval(watchdog); resize.disconnect(); box.remove(); },
  };
}
