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


# --------------------------------------------------------------------------- entry point

#: Every command's ``add_*`` function, in the order ``--help`` lists them.
COMMANDS = [add_data]


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
