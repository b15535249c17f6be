// fer-study web app: send a photo or webcam frames to /api/predict, draw what comes back.
// Webcam frames go one at a time (the next only after the answer), at most FRAME_FPS per
// second, so a slow CPU never builds a queue of stale frames.
"use strict";

const CLASSES = window.FER_CLASSES;
const FRAME_FPS = 4;
const MAX_SIDE = 640; // frames are scaled down before upload: faces stay findable, uploads small

const canvas = document.getElementById("canvas");
const ctx = canvas.getContext("2d");
const video = document.getElementById("video");
const statusEl = document.getElementById("status");
const facesEl = document.getElementById("faces");
const hint = document.getElementById("hint");
const cameraButton = document.getElementById("camera");
let stream = null;

const color = (name) =>
  getComputedStyle(document.documentElement).getPropertyValue(`--${name}`).trim() || "#4f46e5";

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

// Draw `source` (an image or the video) scaled to at most MAX_SIDE; return the scale used.
function drawSource(source, width, height) {
  const scale = Math.min(1, MAX_SIDE / Math.max(width, height));
  canvas.width = Math.round(width * scale);
  canvas.height = Math.round(height * scale);
  ctx.drawImage(source, 0, 0, canvas.width, canvas.height);
  hint.hidden = true;
  return scale;
}

function drawFaces(faces) {
  const line = Math.max(2, Math.round(canvas.width / 240));
  ctx.font = `600 ${Math.max(14, line * 7)}px system-ui, sans-serif`;
  faces.forEach((face, i) => {
    const [x, y, w, h] = face.box;
    const c = color(face.label);
    ctx.lineWidth = line;
    ctx.strokeStyle = c;
    ctx.strokeRect(x, y, w, h);
    const text = `${i + 1} ${face.label} ${Math.round(100 * face.probs[face.label])}%`;
    const tw = ctx.measureText(text).width + 10;
    const th = line * 7 + 8;
    const ty = y - th >= 0 ? y - th : y + h;
    ctx.fillStyle = c;
    ctx.fillRect(x - line / 2, ty, tw, th);
    ctx.fillStyle = "#fff";
    ctx.fillText(text, x + 4, ty + th - 6);
  });
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

// Server boxes are in uploaded-image pixels; the canvas shows the image at canvas size.
function show(data) {
  const sx = canvas.width / data.width;
  const sy = canvas.height / data.height;
  const faces = data.faces.map((f) => ({
    ...f,
    box: [f.box[0] * sx, f.box[1] * sy, f.box[2] * sx, f.box[3] * sy],
  }));
  drawFaces(faces);
  listFaces(data.faces);
  return faces.length;
}

async function analyseFile(file) {
  if (!file) return;
  stopCamera();
  const img = new Image();
  img.src = URL.createObjectURL(file);
  try {
    await img.decode();
  } catch {
    setStatus(`${file.name} is not an image this browser can show.`, true);
    return;
  }
  drawSource(img, img.naturalWidth, img.naturalHeight);
  setStatus("Analysing…");
  try {
    // very large photos go as the scaled-down canvas instead of being refused by the server
    const upload = file.size > 8 * 2 ** 20
      ? await new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.92))
      : file;
    const data = await predict(upload);
    const n = show(data);
    setStatus(`${n} face${n === 1 ? "" : "s"} in ${data.ms} ms.`);
  } catch (err) {
    setStatus(err.message, true);
  } finally {
    URL.revokeObjectURL(img.src);
  }
}

async function cameraLoop() {
  while (stream) {
    const started = performance.now();
    drawSource(video, video.videoWidth, video.videoHeight);
    const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.85));
    try {
      const data = await predict(blob);
      if (!stream) break;
      drawSource(video, video.videoWidth, video.videoHeight);
      const n = show(data);
      setStatus(`Live: ${n} face${n === 1 ? "" : "s"}, ${data.ms} ms per frame.`);
    } catch (err) {
      setStatus(err.message, true);
    }
    const wait = 1000 / FRAME_FPS - (performance.now() - started);
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  }
}

async function startCamera() {
  if (!navigator.mediaDevices?.getUserMedia) {
    setStatus("This browser cannot use a webcam here (it needs http://127.0.0.1 or https).", true);
    return;
  }
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: false });
  } catch (err) {
    setStatus(`No webcam: ${err.message}. Allow camera access, or upload a photo instead.`, true);
    return;
  }
  video.srcObject = stream;
  await video.play();
  cameraButton.textContent = "Stop webcam";
  cameraButton.classList.add("live");
  cameraLoop();
}

function stopCamera() {
  if (!stream) return;
  stream.getTracks().forEach((t) => t.stop());
  stream = null;
  video.srcObject = null;
  cameraButton.textContent = "Start webcam";
  cameraButton.classList.remove("live");
  setStatus("Webcam off.");
}

document.getElementById("file").addEventListener("change", (e) => analyseFile(e.target.files[0]));
cameraButton.addEventListener("click", () => (stream ? stopCamera() : startCamera()));
const drop = document.getElementById("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("dragging"); });
drop.addEventListener("dragleave", () => drop.classList.remove("dragging"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("dragging");
  analyseFile(e.dataTransfer.files[0]);
});
