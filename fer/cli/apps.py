"""The commands that use models: ``predict``, ``annotate``, ``export``, ``bench``, ``serve``, ``cards``."""

from __future__ import annotations

import errno
import json
import os
import sys

from fer.cli import CLIError

# --------------------------------------------------------------------------- inference


def add_predict(sub) -> None:
    p = sub.add_parser("predict", help="find the faces in photos and classify their expressions", description=(
        "Detect every face in each image (BlazeFace), crop it FER2013-style and classify it with "
        "the bundled model (or --model: .keras, .tflite or .onnx). Prints a table, or JSON."))
    p.add_argument("images", nargs="+", metavar="IMG", help="image files (JPEG, PNG, ...)")
    p.add_argument("--json", action="store_true", help="print JSON: [{image, faces: [{box, label, probs}]}]")
    p.add_argument("--model", help="model file (default: the bundled one)")
    p.add_argument("--tta", choices=["flip", "tencrop"], help="test-time augmentation")
    p.add_argument("--detector", default="auto", help="auto, blazeface-front/back/full or haar (default: auto)")
    p.set_defaults(handler=cmd_predict)


def _read_image(path: str):
    import cv2
    import numpy as np

    if not os.path.exists(path):
        raise CLIError(f"{path}: no such file.")
    if os.path.isdir(path):
        raise CLIError(f"{path} is a folder; pass image files (e.g. {path}/*.jpg).")
    image = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        raise CLIError(f"{path}: not an image OpenCV can read (use JPEG, PNG, BMP or WebP).")
    if image.dtype != np.uint8:  # 16-bit PNG/TIFF
        image = (image / 257).astype(np.uint8) if image.dtype == np.uint16 else image.astype(np.uint8)
    return image


def cmd_predict(args) -> int:
    from fer import CLASSES
    from fer.inference import predict

    images = [(path, _read_image(path)) for path in args.images]  # bad paths fail before the model loads
    clf = predict.load_classifier(args.model) if args.model else predict.default_classifier()
    results = []
    for path, image in images:
        faces = predict.analyze(image, classifier=clf, detector=args.detector, tta=args.tta)
        results.append({"image": path, "faces": faces})
        if not faces:
            print(f"warning: no face found in {path} (faces should be upright and at least "
                  "~1/8 of the picture; try --detector blazeface-back for small faces)", file=sys.stderr)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        head = f"{'image':30s} {'face':>4s} {'box (x,y,w,h)':>20s}  {'label':9s}" + "".join(f"{c[:7]:>8s}" for c in CLASSES)
        print(head)
        for r in results:
            for i, f in enumerate(r["faces"]):
                box = ",".join(map(str, f["box"]))
                print(f"{r['image'][-30:]:30s} {i:>4d} {box:>20s}  {f['label']:9s}"
                      + "".join(f"{f['probs'][c]:>8.3f}" for c in CLASSES))
    if not any(r["faces"] for r in results):
        raise CLIError(f"no face found in {len(results)} image(s).")
    return 0


def add_annotate(sub) -> None:
    p = sub.add_parser("annotate", help="draw faces, labels and probability bars on a video or webcam", description=(
        "Run fer.analyze on every frame of SOURCE (a video file, or a webcam index such as 0) and "
        "write the annotated video; labels are smoothed per tracked face unless --no-smooth."))
    p.add_argument("source", metavar="SOURCE", help="video file, or webcam index (0, 1, ...)")
    p.add_argument("-o", "--out", help="annotated video to write (.mp4); required for files")
    p.add_argument("--csv", help="write one row per face per frame (frame, time, face id, box, label, probs)")
    p.add_argument("--no-smooth", action="store_true", help="raw per-frame labels (no temporal smoothing)")
    p.add_argument("--show", action="store_true", help="live preview window (needs a display and GUI OpenCV)")
    p.add_argument("--max-frames", type=int, help="stop after this many frames (webcam: default runs until Ctrl-C)")
    p.add_argument("--model", help="model file (default: the bundled one)")
    p.add_argument("--detector", default="auto", help="auto, blazeface-front/back/full or haar (default: auto)")
    p.set_defaults(handler=cmd_annotate)


def cmd_annotate(args) -> int:
    from fer.apps import annotate
    from fer.apps.video import SourceError
    from fer.inference import predict

    if not args.out and not args.show and not args.csv:
        raise CLIError("nothing to produce: pass -o OUT.mp4, --csv FILE or --show.")
    if args.out and not args.out.lower().endswith((".mp4", ".avi", ".mov", ".mkv")):
        raise CLIError(f"{args.out}: the output needs a video suffix such as .mp4.")
    clf = predict.load_classifier(args.model) if args.model else None
    try:
        s = annotate.annotate(args.source, args.out, csv_path=args.csv, smooth=not args.no_smooth,
                              show=args.show, max_frames=args.max_frames, classifier=clf,
                              detector=args.detector)
    except SourceError as err:
        raise CLIError(str(err)) from None
    top = ", ".join(f"{k} {v}" for k, v in sorted(s.labels.items(), key=lambda kv: -kv[1]) if v)
    print(f"{s.frames} frames, faces in {s.frames_with_faces} ({s.faces} in all); labels: {top or '-'}")
    for path in (args.out, args.csv):
        if path:
            print(f"wrote {path}")
    if s.faces == 0:
        raise CLIError(f"no face found in any of the {s.frames} frames of {args.source}.")
    return 0


def add_export(sub) -> None:
    p = sub.add_parser("export", help="export the classifier to TFLite (fp32/fp16/int8) and ONNX", description=(
        "Convert a .keras model (default: the bundled one) into OUT_DIR and check each export "
        "against Keras on FER2013 PublicTest faces (or generated faces if FER2013 is absent): "
        "top-1 agreement and max probability difference. fer.load_classifier(path) runs the files. "
        "With --web DIR, write the static demo instead: a folder (index.html, JS, the LiteRT.js "
        "WebAssembly runtime, the shipped models) where the webcam and photos are analysed in the "
        "browser, servable by any static host (GitHub Pages; python -m http.server)."))
    p.add_argument("--model", help="the .keras model (default: the bundled one)")
    p.add_argument("-o", "--out-dir", default="exported", help="folder to write to (default: exported/)")
    p.add_argument("--formats", default="tflite,tflite-fp16,tflite-int8,onnx",
                   help="comma-separated: tflite, tflite-fp16, tflite-int8, onnx (default: all)")
    p.add_argument("--check", type=int, default=500, help="faces to check parity on (0: skip)")
    p.add_argument("--web", metavar="DIR", help="write the in-browser static demo to DIR (no conversion; no TensorFlow)")
    p.add_argument("--web-models", default="lite,main",
                   help="with --web: the classifiers the page offers, comma-separated (default: lite,main)")
    p.set_defaults(handler=cmd_export)


def cmd_export(args) -> int:
    if args.web:
        return _export_web(args)
    from fer.inference import export, predict

    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    unknown = [f for f in formats if f not in export.FORMATS]
    if unknown:
        raise CLIError(f"unknown format(s) {', '.join(unknown)}; choose from {', '.join(export.FORMATS)}.")
    try:
        written = export.export(args.model, args.out_dir, formats)
    except ModuleNotFoundError:  # Keras or TensorFlow: fer.cli.main names the study extra
        raise
    except ImportError as err:  # tf2onnx: export says which extra
        raise CLIError(str(err)) from None
    faces = export.check_faces(args.check) if args.check else None
    reference = predict.load_classifier(args.model, backend="keras") if args.check else None
    for fmt, path in written.items():
        line = f"{fmt:12s} {path} ({path.stat().st_size / 1e3:.0f} kB)"
        if faces is not None:
            r = export.parity(reference, predict.load_classifier(path), faces)
            line += f"  top-1 agreement {r['top1_agreement']:.2%} on {r['n']}, max |dp| {r['max_abs_diff']:.4f}"
        print(line)
    return 0


def _export_web(args) -> int:
    from fer.apps.web import WebAssetError, export_web

    classifiers = tuple(c.strip() for c in args.web_models.split(",") if c.strip())
    try:
        written = export_web(args.web, classifiers)
    except WebAssetError as err:
        raise CLIError(str(err)) from None
    total = sum(written.values())
    print(f"wrote {len(written)} files ({total / 1e6:.1f} MB) to {args.web}: open index.html through a web "
          f"server, e.g. python -m http.server --bind 127.0.0.1 --directory {args.web} 8000 and "
          "http://localhost:8000/ (the camera needs https or localhost; file:// cannot load the models)")
    return 0


def add_bench(sub) -> None:
    p = sub.add_parser("bench", help="latency and throughput, and a comparison with the PyPI fer package", description=(
        "Classifier latency at batch 1 (p50/p95) and throughput at batch 256, detector ms/frame, "
        "and fer.analyze p50/p95 on 640x480 video frames; with --compare-fer the same frames go "
        "through the PyPI `fer` package's FER().detect_emotions in a side venv (.bench-venv, made "
        "on first use) and the speed ratio is printed. With --url, load-test a running web app "
        "instead: --clients concurrent clients post one photo to /api/predict for --seconds."))
    p.add_argument("--frames", type=int, default=60, help="640x480 frames to time analyze on (default: 60)")
    p.add_argument("--model", help="model file (default: the bundled one)")
    p.add_argument("--compare-fer", action="store_true", help="also time the PyPI fer package (side venv)")
    p.add_argument("--url", help="a running `python -m fer serve`, e.g. http://127.0.0.1:5000: load-test it (a server "
                                 "that asks for a token: the URL it printed, with ?token=, or $FER_TOKEN)")
    p.add_argument("--clients", type=int, default=8, help="with --url: concurrent clients (default: 8)")
    p.add_argument("--seconds", type=float, default=30.0, help="with --url: how long (default: 30)")
    p.add_argument("--image", help="with --url: the photo to post (default: one face in a 640x480 frame)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(handler=cmd_bench)


def cmd_bench(args) -> int:
    from fer.evaluation import speed

    if args.url:
        return _load_test(args)
    results = speed.run(frames=args.frames, model=args.model, compare_fer=args.compare_fer)
    print(json.dumps(results, indent=2) if args.json else speed.report(results))
    return 0


def _load_test(args) -> int:
    from fer.apps import loadtest

    if args.clients < 1 or args.seconds <= 0:
        raise CLIError("--clients must be at least 1 and --seconds positive")
    if args.image:
        if not os.path.isfile(args.image):
            raise CLIError(f"{args.image}: no such file")
        with open(args.image, "rb") as fh:
            image = fh.read()
    else:
        image = loadtest.sample_jpeg()
    try:
        results = loadtest.load(args.url, image, clients=args.clients, seconds=args.seconds,
                                token=os.environ.get("FER_TOKEN") or None)
    except ValueError as err:
        raise CLIError(str(err)) from None
    if results["requests"] == 0:
        raise CLIError(f"{args.url} answered no request ({results['error_kinds']}): is `python -m fer serve` running there?")
    print(json.dumps(results, indent=2) if args.json else loadtest.report(results))
    return 0


def add_cards(sub) -> None:
    p = sub.add_parser("cards", help="the shipped models' cards: accuracy, size, training", description=(
        "Read the model cards in fer/weights/ (one JSON file beside each model). Default: one line per "
        "model. --markdown prints the results table README.md carries (a test checks they agree)."))
    p.add_argument("--markdown", action="store_true", help="print the README's results table")
    p.add_argument("--json", action="store_true", help="print the cards as JSON")
    p.add_argument("--weights-dir", help="where the cards are (default: fer/weights/)")
    p.add_argument("--agreement", action="store_true",
                   help="measure each model's agreement with the FER+ majority on its validation split and write it "
                        "into its card (needs FER2013 and the FER+ votes: $FER_DATA, $FER_VOTES)")
    p.add_argument("--data", help="with --agreement: the FER2013 zip, folder or CSV (default: located automatically)")
    p.set_defaults(handler=cmd_cards)


def cmd_cards(args) -> int:
    from fer.config import MODELS, WEIGHTS_DIR
    from fer.inference import cards
    from fer.reporting import results

    weights = args.weights_dir or WEIGHTS_DIR
    if args.agreement:
        from fer.data import sources
        from fer.training import runs

        source = args.data or sources.locate()
        for name in MODELS:
            if os.path.exists(os.path.join(weights, f"{name}.keras")):
                m = runs.add_agreement(os.path.join(weights, f"{name}.keras"), source)
                print(f"{name}: agreement with the FER+ majority {m['agreement_single']:.4f} (ten-crop "
                      f"{m['agreement_tencrop']:.4f}), >= 8/10 {m['agreement_strong_single']:.4f}; accuracy "
                      f"{m['accuracy_single']:.4f}; FER2013's labels {m['labels_agreement']:.4f}")
    if args.markdown:
        print(results.results_markdown(weights), end="")
        return 0
    found = {name: card for name in MODELS if (card := cards.bundled(name, weights)) is not None}
    if not found:
        raise CLIError(f"no model cards in {weights}")
    if args.json:
        print(json.dumps(found, indent=2))
    for name, card in {} if args.json else found.items():
        m = card["metrics"]["validation"]
        print(f"{name}: {card['params']:,} params, {card['data']['validation']} accuracy {m['accuracy_single']:.4f} "
              f"(ten-crop {m['accuracy_tencrop']:.4f}), macro-F1 {m['macro_f1_single']:.4f}, sha256 {card['sha256'][:12]}")
    return 0


# --------------------------------------------------------------------------- serve


def add_serve(sub) -> None:
    from fer.config import MAX_UPLOAD_MB, MAX_VIEWERS, SERVE_THREADS

    p = sub.add_parser("serve", help="start the web app (photo upload, webcam, server-side video stream)", description=(
        "Start the web app with the bundled model under waitress (a production WSGI server): a page "
        "where you upload a photo or use your webcam, POST /api/predict (multipart field 'image', or a "
        "raw image/jpeg or image/png body) and GET /healthz. With --source, the server reads a camera "
        "or a video file itself and streams it annotated at GET /video_feed (shown on the page). Binds "
        "to 127.0.0.1 unless --host says otherwise; any other host asks for an access token on every "
        "route but /healthz: ?token=... in the URL (kept in a cookie) or 'Authorization: Bearer TOKEN'. "
        "Works offline."))
    p.add_argument("--host", default="127.0.0.1",
                   help="interface to bind (default: 127.0.0.1, this machine only; any other host asks for an "
                        "access token)")
    p.add_argument("--token",
                   help="the access token to ask for (default: $FER_TOKEN, else, off loopback, one generated and "
                        "printed with the URL); prefer FER_TOKEN: other users of this machine can read a command line")
    p.add_argument("--no-token", action="store_true",
                   help="no access token off loopback: anyone who can reach the machine can use the app (a warning)")
    p.add_argument("--port", type=int, default=5000, help="port (default: 5000)")
    p.add_argument("--source", metavar="CAMERA|VIDEO",
                   help="stream this camera index (0 is the first webcam) or video file (looped), annotated, "
                        "at /video_feed; fixed at start-up")
    p.add_argument("--threads", type=int, default=SERVE_THREADS,
                   help=f"server threads for requests (default: {SERVE_THREADS}); /video_feed viewers get their own")
    p.add_argument("--max-viewers", type=int, default=MAX_VIEWERS,
                   help=f"with --source: viewers of the stream at once (default: {MAX_VIEWERS}); more get a 503")
    p.add_argument("--workers", type=int, default=None,
                   help="processes that analyse uploads (default: one per CPU core); 0 analyses them in the "
                        "server's own threads")
    p.add_argument("--max-upload-mb", type=float, default=MAX_UPLOAD_MB,
                   help=f"refuse larger uploads with 413 (default: {MAX_UPLOAD_MB:g})")
    p.add_argument("--debug", action="store_true",
                   help="Flask's development server with its debugger instead (127.0.0.1 only)")
    p.set_defaults(handler=cmd_serve)


def cmd_serve(args) -> int:
    from fer.apps import access, serve
    from fer.apps.video import SourceError

    if args.debug and not serve.is_loopback(args.host):
        raise CLIError(f"--debug runs Flask's development server, which must not face a network; "
                       f"drop --debug to serve on {args.host}.")
    try:
        token, generated = access.resolve_token(args.host, args.token, args.no_token, os.environ)
        serve.serve(host=args.host, port=args.port, threads=args.threads, workers=args.workers, source=args.source,
                    max_viewers=args.max_viewers, max_upload_mb=args.max_upload_mb, debug=args.debug,
                    token=token, show_token=generated)
    except (SourceError, ValueError) as err:
        raise CLIError(str(err)) from None
    except OSError as err:
        if err.errno == errno.EADDRINUSE:
            raise CLIError(f"port {args.port} on {args.host} is in use (another server?); pass --port.") from None
        raise
    return 0
