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
    from fer import data

    source = args.source or data.locate()
    splits = data.load(source, cache=not args.no_cache, skip_bad=args.skip_bad)
    report = data.audit(splits)
    if args.json:
        print(json.dumps({"source": str(source), **report}, indent=2))
        return 0
    import pandas as pd

    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(f"source: {source}\n")
        print(data.audit_table(report).to_string())
    d, c = report["duplicates"], report["conflicts"]
    print(f"\nexact duplicates: {d['groups']} groups covering {d['images']} images")
    for split, n in report["leakage"].items():
        print(f"leakage: {n} {split} images also occur in train")
    print(f"conflicting labels: {c['groups']} groups of identical pixels ({c['images']} images)")
    return 0


# --------------------------------------------------------------------------- train


def _profile_args(p, models: bool = True) -> None:
    p.add_argument("--profile", default="cpu", help="params profile: smoke, cpu, full or a YAML path (default: cpu)")
    p.add_argument("--data", dest="data_source", help="FER2013 zip/folder/CSV, or 'synthetic' (default: the profile's)")
    p.add_argument("--epochs", type=int, help="override the profile's epochs")
    p.add_argument("--seed", type=int, help="override the profile's seed")


def _load_profile_and_data(args):
    from fer import config, data

    profile = config.load_profile(args.profile)
    for key in ("data_source", "epochs", "seed"):
        if getattr(args, key, None) is not None:
            profile[key] = getattr(args, key)
    splits = data.load_source(profile.get("data_source"), seed=profile.get("seed", 0))
    return profile, splits


def add_train(sub) -> None:
    p = sub.add_parser("train", help="train a model from a params profile", description=(
        "Train the main (block 'train'), lite or baseline model of a params profile. Runs go to "
        "runs/<profile>/<name>/ (log.csv, best.keras, model.keras, card.json) and resume after an "
        "interruption. --ship copies the result into fer/weights/ with its model card."))
    _profile_args(p)
    p.add_argument("--model", default="train", choices=["train", "lite", "baseline"],
                   help="profile block to train: train (main model), lite or baseline")
    p.add_argument("--hp", help="JSON file of hyperparameters overriding the block (e.g. the tuner's best)")
    p.add_argument("--run-dir", help="where to write the run (default: runs/<profile>/<name>)")
    p.add_argument("--ship", action="store_true", help="copy the trained model into fer/weights/")
    p.set_defaults(handler=cmd_train)


def cmd_train(args) -> int:
    from fer import train

    profile, splits = _load_profile_and_data(args)
    hp = json.loads(open(args.hp).read()) if args.hp else None
    card = train.run(profile, splits, block=args.model, hp=hp, run_dir=args.run_dir, verbose=2)
    m = card["metrics"]["validation"]
    print(f"{card['name']}: {card['params']:,} params, {card['epochs_run']} epochs in "
          f"{card['train_wall_s'] / 60:.1f} min; {card['data']['validation']} accuracy "
          f"{m['accuracy_single']:.4f} (flip {m['accuracy_flip']:.4f}, ten-crop {m['accuracy_tencrop']:.4f}), "
          f"macro-F1 {m['macro_f1_single']:.4f}")
    if args.ship:
        run_dir = card["model"] and (args.run_dir or train.RUNS_DIR / str(profile["profile"]) / card["name"])
        dest = train.ship(run_dir, name="main" if args.model == "train" else card["name"])
        print(f"shipped {dest} ({dest.stat().st_size / 1e6:.1f} MB)")
    return 0


def add_tune(sub) -> None:
    p = sub.add_parser("tune", help="keras-tuner search over the main model's hyperparameters", description=(
        "Hyperband (or the profile's tune.algorithm) over width, depth, dropout, learning rate, "
        "weight decay and augmentation strength. Writes best_hp.json and trials.csv to "
        "runs/<profile>/tune/; resumes an unfinished search unless --overwrite. "
        "--train then retrains the main model from the best hyperparameters."))
    _profile_args(p)
    p.add_argument("--dir", help="search directory (default: runs/<profile>/tune)")
    p.add_argument("--overwrite", action="store_true", help="discard an earlier search in --dir")
    p.add_argument("--train", action="store_true", help="retrain the main model from the best hyperparameters")
    p.set_defaults(handler=cmd_tune)


def cmd_tune(args) -> int:
    from fer import train, tune

    profile, splits = _load_profile_and_data(args)
    result = tune.search(profile, splits, directory=args.dir, overwrite=args.overwrite, verbose=2)
    print(result.table.to_string(max_rows=20))
    print(f"best hyperparameters ({result.trials} trials): {json.dumps(result.best_hp)}")
    print(f"saved {result.directory / 'best_hp.json'}")
    if args.train:
        card = train.run(profile, splits, block="train", hp=result.best_hp, verbose=2)
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
    p.add_argument("--model", dest="model_path", help="model 03/04 evaluate (default: the one 02 trained, else the bundled one)")
    p.set_defaults(handler=cmd_reproduce)


def cmd_reproduce(args) -> int:
    from fer import reports

    overrides = {"data_source": args.data_source, "model_path": args.model_path}
    try:
        reports.reproduce(args.profile, overrides)
    except reports.NotebookFailed as err:
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


# --------------------------------------------------------------------------- entry point

#: Every command's ``add_*`` function, in the order ``--help`` lists them.
COMMANDS = [add_data, add_train, add_tune, add_serve, add_reproduce, add_reports]


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
