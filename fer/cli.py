"""``python -m fer``: one command per pipeline stage.

Each command is an ``add_<name>(subparsers)`` function that defines its arguments and sets
``handler``; handlers import TensorFlow/OpenCV lazily so ``--help`` stays instant. Errors the
user can fix (bad data, missing files, no camera) print one clear line and exit 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Take GPU memory as it is needed rather than up front (TensorFlow takes nearly all of it, JAX
# 75 %), so that several commands can share one GPU, e.g. `make -j4 ensemble-full`. Set here,
# before TensorFlow or JAX starts, and only for the CLI's own process; a value already set wins.
os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")


class CLIError(RuntimeError):
    """A user-facing error: printed without a traceback."""


# --------------------------------------------------------------------------- data


def add_data(sub) -> None:
    p = sub.add_parser("data", help="load a FER2013 source and print its audit", description=(
        "Load FER2013 (zip, folder or challenge CSV; default: $FER_DATA, then data/raw, then a "
        "Kaggle download) and print per-split class counts, black/constant images, repeats, "
        "leakage between splits and conflicting labels."))
    p.add_argument("source", nargs="?", help="zip, folder or CSV (default: located automatically)")
    p.add_argument("--json", action="store_true", help="print the audit as JSON")
    p.add_argument("--no-cache", action="store_true", help="do not read or write data/processed")
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable images / malformed rows")
    p.set_defaults(handler=cmd_data)


def cmd_data(args) -> int:
    from fer import audit, data, sources

    source = args.source or sources.locate()
    splits = data.load(source, cache=not args.no_cache, skip_bad=args.skip_bad)
    report = audit.audit(splits)
    if args.json:
        print(json.dumps({"source": str(source), **report}, indent=2))
        return 0
    import pandas as pd

    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(f"source: {source}\n")
        print(audit.audit_table(report).to_string())
    d, c = report["duplicates"], report["conflicts"]
    print(f"\nexact duplicates: {d['groups']} groups covering {d['images']} images")
    for split, n in report["leakage"].items():
        print(f"leakage: {n} {split} images also occur in train")
    print(f"conflicting labels: {c['groups']} groups of identical pixels ({c['images']} images)")
    return 0


# --------------------------------------------------------------------------- train


def _profile_args(p, training: bool = True) -> None:
    p.add_argument("--profile", default="cpu", help="params profile: smoke, cpu, full or a YAML path (default: cpu)")
    p.add_argument("--data", dest="data_source", help="FER2013 zip/folder/CSV, or 'synthetic' (default: the profile's)")
    if not training:
        return
    p.add_argument("--epochs", type=int, help="override the epochs (train: of the block it trains; else the profile's)")
    p.add_argument("--seed", type=int, help="override the profile's seed")


def _load_profile_and_data(args):
    from fer import config, sources

    profile = config.load_profile(args.profile)
    for key in ("data_source", "epochs", "seed"):
        if getattr(args, key, None) is not None:
            profile[key] = getattr(args, key)
    if not profile.get("data_source"):
        profile["data_source"] = str(sources.locate())  # recorded in the model card
    splits = sources.load_source(profile.get("data_source"), seed=profile.get("seed", 0))
    return profile, splits


def add_train(sub) -> None:
    p = sub.add_parser("train", help="train a model from a params profile", description=(
        "Train the main, lite or baseline model of a params profile (its main:, lite: or baseline: block). Runs go to "
        "runs/<profile>/<name>/ (log.csv, best.keras, model.keras, card.json) and resume after an "
        "interruption. --ship copies the result into fer/weights/ with its model card."))
    _profile_args(p)
    p.add_argument("--model", default="main", choices=["main", "lite", "baseline"],
                   help="profile block to train: train (main model), lite or baseline")
    p.add_argument("--hp", help="JSON file of hyperparameters overriding the block (e.g. the tuner's best)")
    p.add_argument("--run-dir", help="where to write the run (default: runs/<profile>/<name>)")
    p.add_argument("--ship", action="store_true", help="copy the trained model into fer/weights/")
    p.add_argument("--float16-weights", action="store_true",
                   help="round the trained weights to float16 before evaluating and ship them so: half the file "
                        "size (the full profile's 5 M parameters are 19.8 MB in float32), and the card's numbers "
                        "are exactly the shipped file's")
    p.add_argument("--weights-dir", help="with --ship: where to write <name>.keras and its card (default: fer/weights/)")
    p.set_defaults(handler=cmd_train)


def cmd_train(args) -> int:
    from fer import runs

    profile, splits = _load_profile_and_data(args)
    hp = json.loads(open(args.hp).read()) if args.hp else {}
    if args.epochs is not None:  # the profile's flat epochs only sets the main block's; this is explicit
        hp["epochs"] = args.epochs
    card = runs.run(profile, splits, block=args.model, hp=hp, run_dir=args.run_dir, verbose=2,
                    float16_weights=args.float16_weights)
    _report_run(card, args.ship, args.weights_dir)
    return 0


def _report_run(card: dict, ship: bool, weights_dir=None) -> None:
    """Print a finished run's card in one line; with ``ship`` copy it into fer/weights/."""
    from fer import runs

    m = card["metrics"]["validation"]
    print(f"{card['name']}: {card['params']:,} params, {card['epochs_run']} epochs in "
          f"{card['train_wall_s'] / 60:.1f} min; {card['data']['validation']} accuracy "
          f"{m['accuracy_single']:.4f} (flip {m['accuracy_flip']:.4f}, ten-crop {m['accuracy_tencrop']:.4f}), "
          f"macro-F1 {m['macro_f1_single']:.4f}")
    if ship:
        dest = runs.ship(card["run_dir"], name=card["name"], weights_dir=weights_dir)
        print(f"shipped {dest} ({dest.stat().st_size / 1e6:.1f} MB)")


def add_ensemble(sub) -> None:
    p = sub.add_parser("ensemble", help="average finished training runs into one model", description=(
        "Combine runs written by 'python -m fer train' (e.g. the same profile with --seed 0, 1, 2) into "
        "one .keras model that averages their probabilities. The members must share the crop and "
        "the data; the ensemble is evaluated on the profile's validation split and its card lists "
        "each member's recipe, time and accuracy. Example: python -m fer ensemble runs/cpu/main "
        "runs/cpu/main-s1 runs/cpu/main-s2 --ship"))
    _profile_args(p, training=False)
    p.add_argument("members", nargs="+", help="training run folders (each with model.keras and card.json)")
    p.add_argument("--name", default="main", help="name of the model (and of the shipped file; default: main)")
    p.add_argument("--run-dir", help="where to write it (default: runs/<profile>/<name>-ensemble)")
    p.add_argument("--ship", action="store_true", help="copy the ensemble into fer/weights/<name>.keras")
    p.add_argument("--float16-weights", action="store_true",
                   help="round the weights to float16 before evaluating and store them so: half the file size, "
                        "and the card's numbers are exactly the shipped file's")
    p.set_defaults(handler=cmd_ensemble)


def cmd_ensemble(args) -> int:
    from fer import runs

    if len(args.members) < 2:
        raise CLIError("an ensemble needs at least two training runs")
    profile, splits = _load_profile_and_data(args)
    card = runs.ensemble_run(profile, splits, args.members, run_dir=args.run_dir, name=args.name,
                             float16_weights=args.float16_weights)
    _report_run(card, args.ship)
    return 0


def add_tune(sub) -> None:
    p = sub.add_parser("tune", help="keras-tuner search over the main model's hyperparameters", description=(
        "Hyperband (or the profile's tune.algorithm) over width, depth, dropout, learning rate, "
        "weight decay and augmentation strength. Writes best_hp.json and trials.csv to "
        "runs/<profile>/tune/. A rerun with the same settings and data resumes that search (one folder "
        "per settings; changed settings start a new one beside it); --overwrite starts it over. "
        "--train then retrains the main model from the best hyperparameters."))
    _profile_args(p)
    p.add_argument("--dir", help="search directory (default: runs/<profile>/tune)")
    p.add_argument("--overwrite", action="store_true", help="discard the earlier search with the same settings in --dir")
    p.add_argument("--train", action="store_true", help="retrain the main model from the best hyperparameters")
    p.set_defaults(handler=cmd_tune)


def cmd_tune(args) -> int:
    from fer import runs, tune

    profile, splits = _load_profile_and_data(args)
    result = tune.search(profile, splits, directory=args.dir, overwrite=args.overwrite, verbose=2)
    print(result.table.to_string(max_rows=20))
    print(f"best hyperparameters ({result.trials} trials): {json.dumps(result.best_hp)}")
    print(f"saved {result.directory / 'best_hp.json'}")
    if args.train:
        card = runs.run(profile, splits, block="main", hp=result.best_hp, verbose=2)
        print(f"retrained main model: {card['metrics']['validation']}")
    return 0


# --------------------------------------------------------------------------- serve


def add_serve(sub) -> None:
    p = sub.add_parser("serve", help="start the web app (photo upload and webcam)", description=(
        "Start the Flask app with the bundled model: a page where you upload a photo or use your "
        "webcam, POST /api/predict (multipart field 'image') and GET /healthz. Binds to "
        "127.0.0.1 unless --host says otherwise; works offline."))
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=5000, help="port (default: 5000)")
    p.set_defaults(handler=cmd_serve)


def cmd_serve(args) -> int:
    from fer import serve

    print("loading the model...", flush=True)
    serve.serve(host=args.host, port=args.port)  # Flask then prints the address to open
    return 0


# --------------------------------------------------------------------------- reports


def add_reproduce(sub) -> None:
    p = sub.add_parser("reproduce", help="execute every notebook with a profile and render the reports", description=(
        "Run notebooks/01_explore ... 04_webcam_demo in order with papermill (kernel: this "
        "interpreter) into reports/executed/, convert each to HTML with the code hidden into "
        "reports/html/, and write reports/html/index.html with the headline metrics. Stops at "
        "the first failing notebook, naming the cell."))
    p.add_argument("--profile", default="cpu", help="params profile: smoke, cpu, full or a YAML path (default: cpu)")
    p.add_argument("--data", dest="data_source", help="FER2013 zip/folder/CSV, or 'synthetic' (default: the profile's)")
    p.add_argument("--model", dest="model_path", help="model 03 evaluates (default: the one 02 trained, else the bundled one)")
    p.add_argument("--skip-training", action="store_true",
                   help="no search and no training in 02 (it shows the bundled model cards); for reports of a shipped model")
    p.add_argument("--only", nargs="+", metavar="NN",
                   help="run only the notebooks whose names start with these (e.g. --only 03 04); the others keep their reports")
    p.set_defaults(handler=cmd_reproduce)


def cmd_reproduce(args) -> int:
    from fer import reports

    # Notebooks run in notebooks/: paths given here are made absolute first.
    overrides = {k: str(os.path.abspath(v)) if v and (k == "model_path" or os.path.exists(v)) else v
                 for k, v in (("data_source", args.data_source), ("model_path", args.model_path))}
    if args.skip_training:
        overrides.update(train_models=False, tune=False)
    try:
        reports.reproduce(args.profile, overrides, only=args.only)
    except (reports.NotebookFailed, ValueError) as err:
        raise CLIError(str(err)) from None
    return 0


def add_reports(sub) -> None:
    p = sub.add_parser("reports", help="render the already executed notebooks to HTML", description=(
        "Convert reports/executed/*.ipynb to reports/html/ (code hidden, figures embedded) and "
        "rewrite reports/html/index.html. Executes nothing."))
    p.set_defaults(handler=cmd_reports)


def cmd_reports(args) -> int:
    from fer import reports

    reports.render()
    return 0


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
    from fer import CLASSES, predict

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
    from fer import annotate, predict

    if not args.out and not args.show and not args.csv:
        raise CLIError("nothing to produce: pass -o OUT.mp4, --csv FILE or --show.")
    if args.out and not args.out.lower().endswith((".mp4", ".avi", ".mov", ".mkv")):
        raise CLIError(f"{args.out}: the output needs a video suffix such as .mp4.")
    clf = predict.load_classifier(args.model) if args.model else None
    try:
        s = annotate.annotate(args.source, args.out, csv_path=args.csv, smooth=not args.no_smooth,
                              show=args.show, max_frames=args.max_frames, classifier=clf,
                              detector=args.detector)
    except annotate.SourceError as err:
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
        "top-1 agreement and max probability difference. fer.load_classifier(path) runs the files."))
    p.add_argument("--model", help="the .keras model (default: the bundled one)")
    p.add_argument("-o", "--out-dir", default="exported", help="folder to write to (default: exported/)")
    p.add_argument("--formats", default="tflite,tflite-fp16,tflite-int8,onnx",
                   help="comma-separated: tflite, tflite-fp16, tflite-int8, onnx (default: all)")
    p.add_argument("--check", type=int, default=500, help="faces to check parity on (0: skip)")
    p.set_defaults(handler=cmd_export)


def cmd_export(args) -> int:
    from fer import export, predict

    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    unknown = [f for f in formats if f not in export.FORMATS]
    if unknown:
        raise CLIError(f"unknown format(s) {', '.join(unknown)}; choose from {', '.join(export.FORMATS)}.")
    written = export.export(args.model, args.out_dir, formats)
    faces = export.check_faces(args.check) if args.check else None
    reference = predict.load_classifier(args.model, backend="keras") if args.check else None
    for fmt, path in written.items():
        line = f"{fmt:12s} {path} ({path.stat().st_size / 1e3:.0f} kB)"
        if faces is not None:
            r = export.parity(reference, predict.load_classifier(path), faces)
            line += f"  top-1 agreement {r['top1_agreement']:.2%} on {r['n']}, max |dp| {r['max_abs_diff']:.4f}"
        print(line)
    return 0


def add_bench(sub) -> None:
    p = sub.add_parser("bench", help="latency and throughput, and a comparison with the PyPI fer package", description=(
        "Classifier latency at batch 1 (p50/p95) and throughput at batch 256, detector ms/frame, "
        "and fer.analyze p50/p95 on 640x480 video frames; with --compare-fer the same frames go "
        "through the PyPI `fer` package's FER().detect_emotions in a side venv (.bench-venv, made "
        "on first use) and the speed ratio is printed."))
    p.add_argument("--frames", type=int, default=60, help="640x480 frames to time analyze on (default: 60)")
    p.add_argument("--model", help="model file (default: the bundled one)")
    p.add_argument("--compare-fer", action="store_true", help="also time the PyPI fer package (side venv)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(handler=cmd_bench)


def cmd_bench(args) -> int:
    from fer import bench

    results = bench.run(frames=args.frames, model=args.model, compare_fer=args.compare_fer)
    print(json.dumps(results, indent=2) if args.json else bench.report(results))
    return 0


def add_cards(sub) -> None:
    p = sub.add_parser("cards", help="the shipped models' cards: accuracy, size, training", description=(
        "Read the model cards in fer/weights/ (one JSON file beside each model). Default: one line per "
        "model. --markdown prints the results table README.md carries (a test checks they agree)."))
    p.add_argument("--markdown", action="store_true", help="print the README's results table")
    p.add_argument("--json", action="store_true", help="print the cards as JSON")
    p.add_argument("--weights-dir", help="where the cards are (default: fer/weights/)")
    p.set_defaults(handler=cmd_cards)


def cmd_cards(args) -> int:
    from fer import cards
    from fer.config import MODELS, WEIGHTS_DIR

    weights = args.weights_dir or WEIGHTS_DIR
    if args.markdown:
        print(cards.results_markdown(weights), end="")
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


# --------------------------------------------------------------------------- entry point

#: Every command's ``add_*`` function, in the order ``--help`` lists them.
COMMANDS = [add_data, add_train, add_ensemble, add_tune, add_predict, add_annotate, add_export, add_bench, add_serve,
            add_reproduce, add_reports, add_cards]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m fer",
        description="Facial expression recognition on FER2013: data, training, inference, serving.",
    )
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from fer.data import DataError
    from fer.predict import ModelFileError

    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        parser.print_help()
        return 0
    try:
        return int(args.handler(args) or 0)
    except (CLIError, DataError, ModelFileError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
