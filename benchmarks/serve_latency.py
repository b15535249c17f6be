"""What a web-app user waits for: POST /api/predict on each shared/media photo, in-process.

Goes through Flask's test client (multipart parsing, decoding, fer.analyze, JSON) without a
network, so it measures the app, not the loopback. Reports the median over ``--repeats``
requests after one warm-up, both the model time the API returns (``ms``) and the whole request.
Usage: python benchmarks/serve_latency.py [--repeats 6] [PHOTO ...]
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def measure(client, raw: bytes, repeats: int) -> dict:
    analyze_ms, request_ms = [], []
    for i in range(repeats + 1):
        start = time.perf_counter()
        response = client.post("/api/predict", data={"image": (io.BytesIO(raw), "photo.jpg")},
                               content_type="multipart/form-data")
        body = response.get_json()
        if response.status_code != 200:
            raise SystemExit(f"HTTP {response.status_code}: {body}")
        if i:  # the first request also loads the model and detector
            request_ms.append((time.perf_counter() - start) * 1000)
            analyze_ms.append(body["ms"])
    return {"size": f"{body['width']}x{body['height']}", "faces": len(body["faces"]),
            "label": body["faces"][0]["label"] if body["faces"] else "-",
            "analyze_ms": statistics.median(analyze_ms), "request_ms": statistics.median(request_ms)}


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from fer.apps import serve
    from fer.config import SHARED_DIR

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photos", nargs="*", type=Path)
    parser.add_argument("--repeats", type=int, default=6)
    args = parser.parse_args()
    photos = args.photos or sorted((SHARED_DIR / "media").glob("*.jpg"))
    if not photos:
        raise SystemExit(f"no photos given and none in {SHARED_DIR / 'media'}")
    client = serve.create_app().test_client()
    print(f"{'photo':<18}{'size':>10}{'faces':>7}  {'label':<10}{'analyze ms':>11}{'request ms':>12}")
    for photo in photos:
        r = measure(client, photo.read_bytes(), args.repeats)
        print(f"{photo.name:<18}{r['size']:>10}{r['faces']:>7}  {r['label']:<10}{r['analyze_ms']:>11.1f}{r['request_ms']:>12.1f}")


if __name__ == "__main__":
    main()
