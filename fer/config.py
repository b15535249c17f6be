"""One place for names and paths: classes, image size, project folders.

Paths are computed, never created, at import time; the functions that write somewhere
make their own folder.
"""

from __future__ import annotations

import os
from pathlib import Path

#: Expression classes, alphabetical (the Kaggle folder names). Every label in the project
#: is an index into this tuple.
CLASSES: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
NUM_CLASSES = len(CLASSES)

#: The original challenge CSV's ``emotion`` codes: 0=Angry 1=Disgust 2=Fear 3=Happy 4=Sad
#: 5=Surprise 6=Neutral. Not the folder order, so labels are always mapped by name.
CSV_CODE_TO_NAME: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")

IMAGE_SIZE = 48

#: Split names as ``fer.data.load`` reports them.
SPLITS = ("train", "val", "test", "public_test", "private_test")

PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_DIR = PACKAGE_DIR.parent


def _dir(env: str, default: Path) -> Path:
    value = os.environ.get(env)
    return Path(value).expanduser().resolve() if value else default


#: ``data/raw`` is immutable input, ``data/processed`` is derived (the array cache).
DATA_DIR = _dir("FER_DATA_DIR", PROJECT_DIR / "data")
RAW_DIR = DATA_DIR / "raw"
PROCESSED_DIR = _dir("FER_CACHE_DIR", DATA_DIR / "processed")
REPORTS_DIR = _dir("FER_REPORTS_DIR", PROJECT_DIR / "reports")
RUNS_DIR = _dir("FER_RUNS_DIR", PROJECT_DIR / "runs")
PARAMS_DIR = PROJECT_DIR / "params"
NOTEBOOKS_DIR = PROJECT_DIR / "notebooks"
WEIGHTS_DIR = PACKAGE_DIR / "weights"
#: ``../shared`` beside the checkout: the team's data and media (absent on a user's machine).
SHARED_DIR = _dir("FER_SHARED_DIR", PROJECT_DIR.parent / "shared")


#: Parameters every notebook declares (papermill) and every profile may set.
NOTEBOOK_PARAMETERS = ("data_source", "profile", "seed", "epochs", "max_trials", "interactive")


def load_profile(profile: str | os.PathLike) -> dict:
    """Read a params profile: a name in ``params/`` (``smoke``, ``cpu``, ``full``) or a YAML path.

    A profile is a papermill parameter file: flat notebook parameters (``data_source``,
    ``seed``, ``epochs``, ``max_trials``, ...) plus ``train``/``lite``/``baseline``/``tune``
    blocks read by ``fer.train`` and ``fer.tune``.
    """
    import yaml

    path = Path(profile)
    if not path.suffix:
        path = PARAMS_DIR / f"{profile}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in PARAMS_DIR.glob("*.yaml"))
        raise FileNotFoundError(f"no params profile {str(profile)!r}; known profiles: {known}")
    values = yaml.safe_load(path.read_text()) or {}
    values.setdefault("profile", path.stem)
    return values


def notebook_profile(profile: str | os.PathLike, **parameters) -> dict:
    """A profile with a notebook's parameters applied on top (``None`` keeps the profile's value).

    The ``parameters`` cell of every notebook names the same values; this is how a cell turns
    them into the dict ``fer.train.run`` and ``fer.tune.search`` read.
    """
    values = load_profile(profile)
    values.update({k: v for k, v in parameters.items() if v is not None})
    return values
