// fer's preprocessing in the browser: the same steps, numbers and rounding as Python's
// fer/inference/faces.py and fer/inference/preprocess.py, so that the browser's models see the
// pixels fer.analyze gives them (tests/e2e/test_browser_parity.py compares the two on real photos
// and video frames). One module for the widget and the page; it runs no model (fer/static/
// browser.js does) and touches no DOM: frames come in as RGBA pixel arrays.
//
// What each step matches:
// - detector input: letterbox to the model's square (keep the aspect ratio, pad right/bottom with
//   -1), shrunk with OpenCV's INTER_AREA (a box filter with fractional edge weights) or enlarged
//   with INTER_LINEAR, then scaled to [-1, 1] (BlazeFace.detect);
// - BlazeFace's SSD anchors, box/keypoint decoding and MediaPipe's weighted NMS (faces.anchors,
//   _weighted_nms), MIN_SCORE 0.5, NMS_IOU 0.3;
// - the crop: OpenCV's BGR2GRAY fixed-point weights, side = larger box side x (1 + MARGIN), centre
//   moved by SHIFT x side, eyes levelled with getRotationMatrix2D, warpAffine (bilinear, border
//   replicated), then INTER_AREA (or INTER_LINEAR) to 48x48 (faces.crop);
// - the model input: the centre crop to the model's input size, float 0-255 (preprocess.model_input).

export const CLASSES = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"];
export const IMAGE_SIZE = 48;
export const MIN_SCORE = 0.5;
export const NMS_IOU = 0.3;
export const MARGIN = 0.2;
export const SHIFT = -0.05;
/** BlazeFace variants as fer.inference.faces.BLAZEFACE lists them: input size, anchor strides. */
export const BLAZEFACE = {
  front: { file: "face_detection_front.tflite", size: 128, strides: [8, 16, 16, 16] },
  back: { file: "face_detection_back.tflite", size: 256, strides: [16, 32, 32, 32] },
};

/** Python's round(): halves go to the even neighbour (OpenCV's cvRound does the same). */
export function roundEven(v) {
  const r = Math.round(v);
  return Math.abs(v % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** RGBA pixels → one 8-bit grey channel with OpenCV's COLOR_BGR2GRAY fixed-point weights. */
export function toGray(rgba, width, height) {
  const gray = new Uint8Array(width * height);
  for (let i = 0, j = 0; i < gray.length; i += 1, j += 4) {
    gray[i] = (rgba[j] * 4899 + rgba[j + 1] * 9617 + rgba[j + 2] * 1868 + 8192) >> 14;
  }
  return gray;
}

/** Weights of OpenCV's INTER_AREA (`shrink`) or INTER_LINEAR along one axis, flat: output
 * pixel d reads source indices idx[offs[d]..offs[d + 1]) with weights wts[...]. */
function resizeTable(src, dst, shrink) {
  const scale = src / dst;
  const idx = [];
  const wts = [];
  const offs = new Int32Array(dst + 1);
  for (let d = 0; d < dst; d += 1) {
    if (shrink) { // a box filter with fractional edge weights (OpenCV's computeResizeAreaTab)
      const f0 = d * scale;
      const f1 = f0 + scale;
      const s0 = Math.ceil(f0);
      const s1 = Math.floor(f1);
      if (s0 - f0 > 1e-3) { idx.push(s0 - 1); wts.push((s0 - f0) / scale); }
      for (let k = s0; k < s1; k += 1) { idx.push(k); wts.push(1 / scale); }
      if (f1 - s1 > 1e-3 && s1 < src) { idx.push(s1); wts.push(Math.min(1, f1 - s1) / scale); }
    } else { // half-pixel centres, edges clamped
      let f = (d + 0.5) * scale - 0.5;
      let k = Math.floor(f);
      f -= k;
      if (k < 0) { k = 0; f = 0; }
      if (k >= src - 1) { k = src - 1; f = 0; }
      idx.push(k); wts.push(1 - f);
      if (f !== 0) { idx.push(k + 1); wts.push(f); }
    }
    offs[d + 1] = idx.length;
  }
  return { offs, idx: Int32Array.from(idx), wts: Float64Array.from(wts) };
}

/** Resize 8-bit pixels with `channels` interleaved as cv2.resize does: INTER_AREA when shrinking,
 * INTER_LINEAR when enlarging (the choice faces.py makes). Keeps the first `keep` channels
 * (3 of RGBA: the alpha is not needed). Returns a Uint8Array of outW x outH x keep. */
export function resize(pixels, width, height, channels, outW, outH, keep = channels) {
  const shrink = outW < width || outH < height;
  const tx = resizeTable(width, outW, shrink);
  const ty = resizeTable(height, outH, shrink);
  const rows = new Float32Array(height * outW * keep); // horizontal pass
  for (let y = 0; y < height; y += 1) {
    const base = y * width * channels;
    for (let x = 0; x < outW; x += 1) {
      const o = (y * outW + x) * keep;
      if (keep === 3) { // the detector's case, unrolled
        let r = 0;
        let g = 0;
        let b = 0;
        for (let k = tx.offs[x]; k < tx.offs[x + 1]; k += 1) {
          const at = base + tx.idx[k] * channels;
          const w = tx.wts[k];
          r += pixels[at] * w; g += pixels[at + 1] * w; b += pixels[at + 2] * w;
        }
        rows[o] = r; rows[o + 1] = g; rows[o + 2] = b;
        continue;
      }
      for (let k = tx.offs[x]; k < tx.offs[x + 1]; k += 1) {
        const at = base + tx.idx[k] * channels;
        const w = tx.wts[k];
        for (let c = 0; c < keep; c += 1) rows[o + c] += pixels[at + c] * w;
      }
    }
  }
  const out = new Uint8Array(outW * outH * keep);
  const line = outW * keep;
  for (let y = 0; y < outH; y += 1) {
    const acc = new Float32Array(line);
    for (let k = ty.offs[y]; k < ty.offs[y + 1]; k += 1) {
      const at = ty.idx[k] * line;
      const w = ty.wts[k];
      for (let i = 0; i < line; i += 1) acc[i] += rows[at + i] * w;
    }
    for (let i = 0; i < line; i += 1) out[y * line + i] = Math.min(255, Math.max(0, roundEven(acc[i])));
  }
  return out;
}

/** An RGBA frame → BlazeFace's float input (size x size x 3 in [-1, 1], letterboxed) and the
 * scale that maps the model's square back to the frame. */
export function detectorInput(rgba, width, height, size) {
  const scale = size / Math.max(width, height);
  const rw = Math.max(1, roundEven(width * scale));
  const rh = Math.max(1, roundEven(height * scale));
  const small = resize(rgba, width, height, 4, rw, rh, 3);
  const input = new Float32Array(size * size * 3).fill(-1);
  for (let y = 0; y < rh; y += 1) {
    for (let i = 0; i < rw * 3; i += 1) input[y * size * 3 + i] = small[y * rw * 3 + i] * (2 / 255) - 1;
  }
  return { input, scale };
}

/** SSD anchor centres as fer.inference.faces.anchors makes them: Float32Array of (x, y) pairs. */
export function anchors(size, strides) {
  const out = [];
  let i = 0;
  while (i < strides.length) {
    let j = i;
    while (j < strides.length && strides[j] === strides[i]) j += 1;
    const repeats = strides.length > 1 ? 2 * (j - i) : 1;
    const n = Math.floor(size / strides[i]);
    for (let y = 0; y < n; y += 1) {
      for (let x = 0; x < n; x += 1) {
        for (let r = 0; r < repeats; r += 1) out.push((x + 0.5) / n, (y + 0.5) / n);
      }
    }
    i = j;
  }
  return Float32Array.from(out);
}

function boxIou(a, b) {
  const iw = Math.max(0, Math.min(a[2], b[2]) - Math.max(a[0], b[0]));
  const ih = Math.max(0, Math.min(a[3], b[3]) - Math.max(a[1], b[1]));
  const inter = iw * ih;
  const area = (r) => Math.max(0, r[2] - r[0]) * Math.max(0, r[3] - r[1]);
  return inter / (area(a) + area(b) - inter + 1e-9);
}

/** BlazeFace's raw outputs → faces [{box: [x, y, w, h], score, keypoints: [[x, y] x 6]}] in frame
 * pixels (BlazeFace.detect): sigmoid scores above MIN_SCORE, decoded against the anchors,
 * merged by MediaPipe's weighted NMS, clipped to the frame, rounded as Python rounds. */
export function decodeFaces(regressors, logits, anchorXY, size, scale, width, height) {
  const threshold = Math.log(MIN_SCORE / (1 - MIN_SCORE));
  const found = [];
  for (let a = 0; a < logits.length; a += 1) {
    const logit = Math.min(80, Math.max(-80, logits[a]));
    if (!(logit > threshold)) continue;
    const r = regressors.subarray(a * 16, a * 16 + 16);
    const ax = anchorXY[2 * a];
    const ay = anchorXY[2 * a + 1];
    const cx = r[0] / size + ax;
    const cy = r[1] / size + ay;
    const hw = r[2] / size / 2;
    const hh = r[3] / size / 2;
    const kps = [];
    for (let k = 0; k < 6; k += 1) kps.push([r[4 + 2 * k] / size + ax, r[5 + 2 * k] / size + ay]);
    found.push({ box: [cx - hw, cy - hh, cx + hw, cy + hh], score: 1 / (1 + Math.exp(-logit)), kps });
  }
  found.sort((p, q) => q.score - p.score);
  const alive = found.map(() => true);
  const faces = [];
  const unit = size / scale;
  for (let i = 0; i < found.length; i += 1) {
    if (!alive[i]) continue;
    const box = [0, 0, 0, 0];
    const kps = found[i].kps.map(() => [0, 0]);
    let total = 0;
    for (let j = 0; j < found.length; j += 1) {
      if (!alive[j] || !(boxIou(found[i].box, found[j].box) > NMS_IOU)) continue;
      alive[j] = false;
      const w = found[j].score;
      total += w;
      for (let c = 0; c < 4; c += 1) box[c] += found[j].box[c] * w;
      found[j].kps.forEach(([x, y], k) => { kps[k][0] += x * w; kps[k][1] += y * w; });
    }
    let [x0, y0, x1, y1] = box.map((v) => (v / total) * unit);
    x0 = Math.max(0, x0); y0 = Math.max(0, y0);
    x1 = Math.min(width, x1); y1 = Math.min(height, y1);
    if (x1 - x0 < 2 || y1 - y0 < 2) continue;
    faces.push({
      box: [roundEven(x0), roundEven(y0), roundEven(x1 - x0), roundEven(y1 - y0)],
      score: found[i].score,
      keypoints: kps.map(([x, y]) => [(x / total) * unit, (y / total) * unit]),
    });
  }
  return faces;
}

/** Largest face first, as fer.inference.faces.detect orders them (a stable sort, like Python's). */
export function largestFirst(faces) {
  return [...faces].sort((a, b) => b.box[2] * b.box[3] - a.box[2] * a.box[3]);
}

/** The affine map of faces.crop: rotate about the face centre so the eyes are level and move
 * the centre to the middle of an n x n patch. Returns {m: [a, b, c, d, e, f], n}. */
export function cropTransform(face, margin = MARGIN, shift = SHIFT) {
  const [x, y, w, h] = face.box;
  const side = Math.max(w, h) * (1 + margin);
  const cx = x + w / 2;
  const cy = y + h / 2 + shift * side;
  let angle = 0;
  if (face.keypoints) {
    const [p, q] = face.keypoints.slice(0, 2).sort((u, v) => u[0] - v[0] || u[1] - v[1]);
    angle = (Math.atan2(q[1] - p[1], q[0] - p[0]) * 180) / Math.PI;
  }
  const rad = (angle * Math.PI) / 180;
  const alpha = Math.cos(rad);
  const beta = Math.sin(rad);
  const m = [alpha, beta, (1 - alpha) * cx - beta * cy + (side / 2 - cx),
    -beta, alpha, beta * cx + (1 - alpha) * cy + (side / 2 - cy)];
  return { m, n: Math.max(1, roundEven(side)) };
}

/** cv2.warpAffine(gray, m, (n, n), INTER_LINEAR, BORDER_REPLICATE): each output pixel samples
 * the source at the inverse map, bilinearly, with source coordinates clamped to the image. */
export function warpAffine(gray, width, height, m, n) {
  const det = m[0] * m[4] - m[1] * m[3];
  const k = det !== 0 ? 1 / det : 0;
  const i00 = m[4] * k;
  const i01 = -m[1] * k;
  const i10 = -m[3] * k;
  const i11 = m[0] * k;
  const i02 = -i00 * m[2] - i01 * m[5];
  const i12 = -i10 * m[2] - i11 * m[5];
  const out = new Uint8Array(n * n);
  const clampX = (v) => (v < 0 ? 0 : v >= width ? width - 1 : v);
  const clampY = (v) => (v < 0 ? 0 : v >= height ? height - 1 : v);
  for (let y = 0; y < n; y += 1) {
    for (let x = 0; x < n; x += 1) {
      const sx = i00 * x + i01 * y + i02;
      const sy = i10 * x + i11 * y + i12;
      const x0 = Math.floor(sx);
      const y0 = Math.floor(sy);
      const fx = sx - x0;
      const fy = sy - y0;
      const xa = clampX(x0);
      const xb = clampX(x0 + 1);
      const ya = clampY(y0) * width;
      const yb = clampY(y0 + 1) * width;
      const top = gray[ya + xa] * (1 - fx) + gray[ya + xb] * fx;
      const bottom = gray[yb + xa] * (1 - fx) + gray[yb + xb] * fx;
      out[y * n + x] = Math.min(255, Math.max(0, roundEven(top * (1 - fy) + bottom * fy)));
    }
  }
  return out;
}

/** A face's FER2013-framed 48x48 uint8 crop from the frame's grey pixels (faces.crop). */
export function crop(gray, width, height, face, size = IMAGE_SIZE) {
  const { m, n } = cropTransform(face);
  const patch = warpAffine(gray, width, height, m, n);
  return n === size ? patch : resize(patch, n, n, 1, size, size);
}

/** The centre crop of a 48x48 face to the model's input (preprocess.model_input): float 0-255. */
export function modelInput(face48, crop, size = IMAGE_SIZE) {
  const top = Math.floor((size - crop) / 2);
  const out = new Float32Array(crop * crop);
  for (let y = 0; y < crop; y += 1) {
    for (let x = 0; x < crop; x += 1) out[y * crop + x] = face48[(top + y) * size + top + x];
  }
  return out;
}

/** Greedy IoU tracking and an exponential moving average of each track's probabilities, as
 * fer.inference.overlay.Smoother does for the kernel's answers: a steady label per person. */
export class Smoother {
  constructor(alpha = 0.3, matchIou = 0.3, maxMissed = 10) {
    Object.assign(this, { alpha, matchIou, maxMissed, tracks: [], nextId: 0 });
  }

  update(faces) {
    const iou = ([ax, ay, aw, ah], [bx, by, bw, bh]) => {
      const iw = Math.max(0, Math.min(ax + aw, bx + bw) - Math.max(ax, bx));
      const ih = Math.max(0, Math.min(ay + ah, by + bh) - Math.max(ay, by));
      return (iw * ih) / (aw * ah + bw * bh - iw * ih + 1e-9);
    };
    const free = [...this.tracks];
    const out = faces.map((face) => {
      const p = CLASSES.map((c) => face.probs[c]);
      let best = null;
      for (const t of free) if (!best || iou(t.box, face.box) > iou(best.box, face.box)) best = t;
      let track;
      if (best && iou(best.box, face.box) >= this.matchIou) {
        free.splice(free.indexOf(best), 1);
        best.probs = best.probs.map((v, i) => this.alpha * p[i] + (1 - this.alpha) * v);
        Object.assign(best, { box: face.box, missed: 0 });
        track = best;
      } else {
        track = { id: this.nextId++, box: face.box, probs: p, missed: 0 };
        this.tracks.push(track);
      }
      const top = track.probs.indexOf(Math.max(...track.probs));
      return { ...face, id: track.id, label: CLASSES[top],
        probs: Object.fromEntries(CLASSES.map((c, i) => [c, track.probs[i]])) };
    });
    for (const t of free) t.missed += 1;
    this.tracks = this.tracks.filter((t) => t.missed <= this.maxMissed);
    return out;
  }
}
