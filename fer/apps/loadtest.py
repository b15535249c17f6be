"""HTTP load on a running web app: concurrent clients posting one photo, for a bounded time.

``python -m fer bench --url http://127.0.0.1:5000`` (and ``benchmarks/serve_load.py``, and a
test) run :func:`load`: ``clients`` threads, each with its own keep-alive connection, post the
same JPEG to ``/api/predict`` back to back for ``seconds`` and count requests per second,
latency percentiles and every failure (a refused connection, a timeout, a non-200 answer or a
body without ``faces``). Plain ``http.client`` threads: the client is a small share of the CPU
next to the server it measures, which matters when both share a 2-core machine.
"""

from __future__ import annotations

import http.client
import threading
import time
import urllib.parse
from collections import Counter

import numpy as np

BOUNDARY = "fer-loadtest-boundary"


def request_body(image: bytes, raw: bool = False, content_type: str = "image/jpeg") -> tuple[bytes, dict[str, str]]:
    """The body and headers of one POST: multipart field ``image``, or the raw image."""
    if raw:
        return image, {"Content-Type": content_type}
    body = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"photo.jpg\"\r\n"
            f"Content-Type: {content_type}\r\n\r\n").encode() + image + f"\r\n--{BOUNDARY}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}


def load(url: str, image: bytes, clients: int = 8, seconds: float = 30.0, raw: bool = False,
         timeout: float = 10.0, token: str | None = None) -> dict:
    """Post ``image`` to ``url`` (the app's root or its ``/api/predict``) from ``clients``
    threads for ``seconds``; requests/s, p50/p95/p99 latency in ms, errors by kind. A server
    that asks for an access token (``fer.apps.access``) gets ``token``, or the ``?token=`` of
    the URL ``python -m fer serve`` printed, as ``Authorization: Bearer``."""
    parts = urllib.parse.urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"{url}: give an http:// address, e.g. http://127.0.0.1:5000")
    path = parts.path if parts.path.endswith("/api/predict") else parts.path.rstrip("/") + "/api/predict"
    body, headers = request_body(image, raw)
    token = token or urllib.parse.parse_qs(parts.query).get("token", [None])[0]
    if token:
        headers["Authorization"] = f"Bearer {token}"
    ms: list[float] = []
    faces: list[int] = []
    errors: Counter = Counter()
    start = time.monotonic()
    stop_at = start + seconds

    def client() -> None:
        conn = None
        while time.monotonic() < stop_at:
            if conn is None:
                conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout)
            began = time.perf_counter()
            try:
                conn.request("POST", path, body, headers)
                response = conn.getresponse()
                data = response.read()
            except (OSError, http.client.HTTPException) as err:
                errors[type(err).__name__] += 1
                conn.close()
                conn = None
                time.sleep(0.01)  # a refused connection fails at once: do not spin
                continue
            took = (time.perf_counter() - began) * 1000
            if response.status != 200 or b'"faces"' not in data:
                errors[f"HTTP {response.status}"] += 1
            else:
                ms.append(took)
                faces.append(data.count(b'"label"'))
            if response.will_close:
                conn.close()
                conn = None
        if conn is not None:
            conn.close()

    threads = [threading.Thread(target=client, name=f"load-client-{i}") for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    out = {"clients": clients, "seconds": round(elapsed, 2), "requests": len(ms),
           "errors": sum(errors.values()), "error_kinds": dict(errors),
           "requests_per_s": len(ms) / elapsed, "faces_per_response": float(np.mean(faces)) if faces else 0.0}
    for q in (50, 95, 99):
        out[f"p{q}_ms"] = float(np.percentile(ms, q)) if ms else float("nan")
    return out


def sample_jpeg() -> bytes:
    """A 640x480 JPEG with one real face (the astronaut the package ships), what the load posts by default."""
    import cv2

    from fer.inference.faces import sample_photo

    face = sample_photo()[0:360, 60:420]
    canvas = np.full((480, 640, 3), 128, np.uint8)
    canvas[60:420, 140:500] = face
    ok, buf = cv2.imencode(".jpg", canvas, [cv2.IMWRITE_JPEG_QUALITY, 85])
    return buf.tobytes()


def report(r: dict) -> str:
    kinds = ", ".join(f"{k} x{v}" for k, v in r["error_kinds"].items())
    return (f"{r['clients']} clients for {r['seconds']:.1f} s: {r['requests']} answers, {r['requests_per_s']:.1f} "
            f"requests/s; p50 {r['p50_ms']:.1f} ms, p95 {r['p95_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms; "
            f"{r['errors']} errors{f' ({kinds})' if kinds else ''}; {r['faces_per_response']:.2f} faces per answer")
