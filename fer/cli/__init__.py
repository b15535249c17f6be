"""``python -m fer``: one command per pipeline stage.

Each command is an ``add_<name>(subparsers)`` function that defines its arguments and sets
``handler``; handlers import TensorFlow/OpenCV lazily so ``--help`` stays instant. Errors the
user can fix (bad data, missing files, no camera) print one clear line and exit 2. The
commands that make models are in :mod:`fer.cli.pipeline`, those that use them in
:mod:`fer.cli.apps` and :mod:`fer.cli.evaluate`; this module holds the parser and the entry point.
"""

from __future__ import annotations

import argparse
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


# --------------------------------------------------------------------------- entry point


def build_parser() -> argparse.ArgumentParser:
    from fer.cli import apps, evaluate, pipeline

    # every command, in the order --help lists them
    commands = [pipeline.add_data, pipeline.add_train, pipeline.add_ensemble, pipeline.add_tune, apps.add_predict,
                evaluate.add_evaluate, apps.add_annotate, apps.add_export, apps.add_bench, apps.add_serve, pipeline.add_reproduce,
                pipeline.add_reports, apps.add_cards]
    parser = argparse.ArgumentParser(
        prog="python -m fer",
        description="Facial expression recognition on FER2013: data, training, inference, serving.",
    )
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    for add in commands:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from fer.data import DataError
    from fer.inference.predict import ModelFileError

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
