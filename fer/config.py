"""Names, paths and profiles: the classes, the project's folders, params profiles, the
training options (``TrainConfig``) a profile's model blocks set, and the web app's defaults.

Paths are computed, never created, at import time; the functions that write somewhere
make their own folder.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Expression classes, alphabetical (the Kaggle folder names). Every label in the project
#: is an index into this tuple.
CLASSES: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
NUM_CLASSES = len(CLASSES)

#: The original challenge CSV's ``emotion`` codes: 0=Angry 1=Disgust 2=Fear 3=Happy 4=Sad
#: 5=Surprise 6=Neutral. Not the folder order, so labels are always mapped by name.
CSV_CODE_TO_NAME: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")

IMAGE_SIZE = 48

PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_DIR = PACKAGE_DIR.parent


def _dir(env: str, default: Path) -> Path:
    value = os.environ.get(env)
    return Path(value).expanduser().resolve() if value else default


#: A checkout of the repository (``pyproject.toml`` beside the package) keeps its run-time files
#: in ``data/``, ``runs/`` and ``reports/``; an installed package (a wheel in site-packages) keeps
#: them in the user's cache folder (platformdirs: ``~/.cache/fer-study`` on Linux), never inside
#: the package, so a read-only install works. The environment variables below override either.
IN_CHECKOUT = (PROJECT_DIR / "pyproject.toml").is_file() and (PROJECT_DIR / "params").is_dir()


def _home() -> Path:
    if IN_CHECKOUT:
        return PROJECT_DIR
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("fer-study", appauthor=False))


HOME = _home()
#: ``data/raw`` is immutable input, ``data/processed`` is derived (the array cache).
DATA_DIR = _dir("FER_DATA_DIR", HOME / "data")
RAW_DIR = DATA_DIR / "raw"
PROCESSED_DIR = _dir("FER_CACHE_DIR", DATA_DIR / "processed")
REPORTS_DIR = _dir("FER_REPORTS_DIR", HOME / "reports")
RUNS_DIR = _dir("FER_RUNS_DIR", HOME / "runs")
PARAMS_DIR = PROJECT_DIR / "params"
NOTEBOOKS_DIR = PROJECT_DIR / "notebooks"
WEIGHTS_DIR = PACKAGE_DIR / "weights"
#: ``../shared`` beside the checkout: the team's data and media (absent on a user's machine).
SHARED_DIR = _dir("FER_SHARED_DIR", PROJECT_DIR.parent / "shared")


def short_path(path: str | os.PathLike) -> str:
    """``path`` relative to the project when inside it or beside it (``../shared/...``): reports
    should not show one machine's folders. Paths further away stay absolute."""
    path = Path(path).resolve()
    rel = Path(os.path.relpath(path, PROJECT_DIR))
    return rel.as_posix() if rel.parts.count("..") <= 1 else str(path)


#: Parameters every notebook declares (papermill) and every profile may set.
#: ``python -m fer serve`` defaults: waitress threads for requests (the /video_feed viewers get
#: their own, up to MAX_VIEWERS of them), and the largest upload taken, in MB.
SERVE_THREADS = 12
MAX_VIEWERS = 8
MAX_UPLOAD_MB = 10

NOTEBOOK_PARAMETERS = ("data_source", "profile", "seed", "epochs", "max_trials", "interactive")


def auto_profile() -> str:
    """What ``profile = "auto"`` means here: ``full`` (the shipped recipe) with a GPU, ``cpu`` without."""
    from fer.devices import accelerators

    return "full" if accelerators() else "cpu"


def load_profile(profile: str | os.PathLike) -> dict:
    """Read a params profile: a name in ``params/`` (``smoke``, ``cpu``, ``full``, or ``auto``:
    :func:`auto_profile`) or a YAML path.

    A profile is a papermill parameter file: flat notebook parameters (``data_source``,
    ``seed``, ``epochs``, ``max_trials``, ...) plus one block per model (``main``, ``lite``,
    ``baseline``: :func:`config_from_profile`) and a ``tune`` block (``fer.training.tune``).
    """
    import yaml

    if str(profile) == "auto":
        profile = auto_profile()
    path = Path(profile)
    if not path.suffix:
        path = PARAMS_DIR / f"{profile}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in PARAMS_DIR.glob("*.yaml"))
        raise FileNotFoundError(f"no params profile {str(profile)!r}; known profiles: {known}")
    values = yaml.safe_load(path.read_text()) or {}
    if "train" in values:  # the main model's block was called `train` until 2026-12
        raise ValueError(f"{path}: the main model's block is now called `main:`, not `train:`; rename it")
    values.setdefault("profile", path.stem)
    return values


def notebook_profile(profile: str | os.PathLike, **parameters) -> dict:
    """A profile with a notebook's parameters applied on top (``None`` keeps the profile's value).

    The ``parameters`` cell of every notebook names the same values; this is how a cell turns
    them into the dict ``fer.training.runs.run`` and ``fer.training.tune.search`` read.
    """
    values = load_profile(profile)
    values.update({k: v for k, v in parameters.items() if v is not None})
    return values


# --------------------------------------------------------------------------- training options


@dataclass
class TrainConfig:
    """Everything that decides a training run; a params profile's model block (``main:``,
    ``lite:``, ``baseline:``) fills it."""

    arch: str = "resnet"
    hp: dict[str, Any] = field(default_factory=dict)  # architecture hyperparameters (models.DEFAULTS)
    epochs: int = 30
    batch_size: int = 64
    optimizer: str = "adamw"  # adamw | sgd (Nesterov momentum 0.9)
    lr: float = 2e-3
    weight_decay: float = 5e-4  # Keras: decoupled, w -= lr * wd * w; AdamW needs ~1e-2 to matter
    schedule: str = "cosine"  # cosine (with linear warm-up) | plateau
    plateau_factor: float = 0.5  # plateau: the learning rate is multiplied by this ...
    plateau_patience: int = 3  # ... after this many epochs without a better validation accuracy
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    mixup: float = 0.0  # MixUp alpha; 0 disables
    # momentum of an exponential moving average of the weights (e.g. 0.999, a horizon of ~1,000
    # steps); 0 disables. The averaged weights replace the trained ones when fit ends; the
    # validation numbers printed each epoch are the raw weights'.
    ema: float = 0.0
    class_weight: str = "none"  # none | balanced | sqrt
    # augmentation strength
    flip: bool = True
    rotation: float = 10.0  # degrees
    shift: float = 0.0  # fraction of the crop, on top of the random crop
    zoom: float = 0.1
    erasing: float = 0.25  # probability of random erasing per image
    precision: str = "auto"  # auto | float32 | mixed_bfloat16 | mixed_float16
    # how batches are augmented: tf.data (Keras layers in tf.data threads; TensorFlow only) | host
    # (NumPy/OpenCV in the training loop; any backend) | auto (tf.data under TensorFlow, host otherwise)
    pipeline: str = "auto"
    seed: int = 0
    deterministic: bool = False
    max_train: int | None = None  # cap on training images (smoke runs)
    early_stop: int = 0  # patience in epochs on val_accuracy; 0 disables
    tensorboard: bool = False  # also write TensorBoard logs to <run_dir>/tb
    # distillation: a trained model (.keras path) whose probabilities become part of the targets
    teacher: str | None = None
    distill: float = 0.0  # weight of the teacher's probabilities in the targets (1 - it: the label)
    distill_temperature: float = 1.0  # > 1 softens the teacher's probabilities
    # False: the teacher labels each clean face once, before training (one inference pass);
    # True: it labels every augmented, mixed-up batch as the student sees it (online_teacher: where)
    distill_online: bool = False
    # where an online teacher runs: host (in the host pipeline, on each finished batch) | step
    # (inside the compiled train step, on the student's device: no host round trip per batch) |
    # auto (host on a TensorFlow CPU, step elsewhere); either way a float32 Keras model
    # (fer.training.distill.load_teacher)
    online_teacher: str = "auto"
    init: str | None = None  # a trained model (.keras) of the same network to start from (fine-tuning)
    # what the targets are: fer2013 (FER2013's label) | ferplus (the FER+ votes for the 7 classes,
    # normalised; images without them left out: fer.data.ferplus.targets). A teacher blends in either way
    labels: str = "fer2013"

    def __post_init__(self):
        # checked here, not when the targets are made: a distill weight without a teacher (or the
        # reverse) would otherwise train a plain model under a card that says otherwise
        if bool(self.teacher) != (self.distill > 0) or not 0 <= self.distill <= 1:
            raise ValueError(
                f"distillation needs a teacher model and 0 < distill <= 1 (teacher={self.teacher!r}, distill={self.distill})"
            )
        if not 0 <= self.ema < 1:
            raise ValueError(f"ema is a momentum in [0, 1) (0 disables it), not {self.ema}")
        if self.distill_temperature <= 0:
            raise ValueError(f"distill_temperature must be > 0, not {self.distill_temperature}")
        if self.distill_online and not self.teacher:
            raise ValueError("distill_online needs a teacher model (teacher=..., distill > 0)")
        if self.distill_online and self.pipeline == "tf.data" and self.online_teacher == "host":
            raise ValueError("online_teacher host labels the batches in the host pipeline; use pipeline host or auto, "
                             "or online_teacher step")
        if self.online_teacher not in ("auto", "host", "step"):
            raise ValueError(f"online_teacher must be auto, host or step, not {self.online_teacher!r}")
        if self.labels not in ("fer2013", "ferplus"):
            raise ValueError(f"labels must be fer2013 or ferplus, not {self.labels!r}")
        if self.arch == "ensemble" and not self.init:
            raise ValueError("arch ensemble fine-tunes an averaged model: give init (a .keras ensemble)")
        if self.pipeline not in ("auto", "tf.data", "host"):
            raise ValueError(f"pipeline must be auto, tf.data or host, not {self.pipeline!r}")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown training option(s) {unknown}; known: {sorted(known)}")
        return cls(**dict(values))


#: The model blocks of a profile: each trains the model of that name, shipped as ``<name>.keras``.
MODELS = ("main", "lite", "baseline")


def config_from_profile(profile: Mapping[str, Any], block: str = "main", hp: Mapping[str, Any] | None = None) -> TrainConfig:
    """The ``TrainConfig`` of one profile block; ``hp`` (e.g. the tuner's best) overrides it.

    The profile's flat ``seed`` (a notebook parameter) wins over the block's; its flat
    ``epochs`` sets the ``main`` block's length and is the default for blocks that name none,
    so ``papermill -p epochs 3`` shortens the main training.
    """
    values = dict(profile.get(block) or {})
    if not values:
        raise ValueError(f"profile {profile.get('profile')!r} has no {block!r} block (blocks: {', '.join(MODELS)})")
    values["hp"] = dict(values.get("hp") or {})
    for key, value in dict(hp or {}).items():
        if key in TrainConfig.__dataclass_fields__ and key != "hp":
            values[key] = value
        else:
            values["hp"][key] = value
    overrides = dict(hp or {})
    if profile.get("seed") is not None and "seed" not in overrides:
        values["seed"] = profile["seed"]
    if profile.get("epochs") is not None and "epochs" not in overrides and (block == "main" or "epochs" not in values):
        values["epochs"] = profile["epochs"]
    if values.get("distill") and not values.get("teacher"):
        raise ValueError(f"distillation needs a teacher: the {block!r} block of profile {profile.get('profile')!r} "
                         f"learns from one (distill {values['distill']}) and names none; give one, e.g. --hp with "
                         '{"teacher": "PATH.keras"} (notebook 02\'s recipe uses the ensemble it has just made)')
    return TrainConfig.from_dict(values)
