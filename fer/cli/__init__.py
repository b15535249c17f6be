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
# 75 %), so that several commands can share one GPU, e.g. the members of `make reproduce PROFILE=full`. Set here,
# before TensorFlow or JAX starts, and only for the CLI's own process; a value already set wins.
os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")


class CLIError(RuntimeError):
    """A user-facing error: printed without a traceback."""


#: Top-level modules only an extra brings, and the extra: a command that needs one says so.
EXTRAS = {**dict.fromkeys(("tensorflow", "keras", "keras_tuner", "tensorboard", "papermill", "nbconvert",
                           "nbformat", "ipykernel", "skimage"), "study"),
          "tf2onnx": "export", "onnxruntime": "export", "jax": "scale", "grpc": "scale"}


def missing_extra(err: ModuleNotFoundError, command: str) -> str | None:
    """The one line a command prints when ``err`` is a package of an extra that is not installed."""
    extra = EXTRAS.get((err.name or "").split(".")[0])
    if extra is None:
        return None
    return (f"python -m fer {command} needs the {extra} extra ({err.name} is not installed): "
            f"pip install 'fer-study[{extra}]'")


def require_checkout(command: str) -> None:
    """The study (training, the search, the notebooks) runs from the repository, which holds its
    profiles and notebooks; an installed package says so and how to get it, in one line."""
    from fer.config import IN_CHECKOUT

    if not IN_CHECKOUT:
        raise CLIError(f"python -m fer {command} runs the study, which needs the repository (params/, notebooks/), "
                       f"not an installed package: git clone {_repository()}, then run it there (`make env` sets it up)")


def _repository() -> str:
    from importlib import metadata

    try:
        urls = metadata.metadata("fer-study").get_all("Project-URL") or []
    except metadata.PackageNotFoundError:
        urls = []
    return next((u.split(",", 1)[1].strip() for u in urls if u.lower().startswith("repository")), "<the fer-study repository>")


# --------------------------------------------------------------------------- entry point


def build_parser() -> argparse.ArgumentParser:
    from fer.cli import apps, evaluate, pipeline

    # every command, in the order --help lists them
    commands = [pipeline.add_data, pipeline.add_train, pipeline.add_ensemble, pipeline.add_tune, pipeline.add_ship, apps.add_predict,
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
    except ModuleNotFoundError as err:
        command = next((a for a in (sys.argv[1:] if argv is None else argv) if not a.startswith("-")), "")
        line = missing_extra(err, command)
        if line is None:
            raise
        print(f"error: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
