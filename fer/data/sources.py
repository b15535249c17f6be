"""Where FER2013 comes from: ``$FER_DATA``, then ``data/raw/``, then a Kaggle download with
kagglehub (credentials from the environment, ``~/.kaggle`` or Colab Secrets); and
:func:`load_source`, what notebooks and the CLI call with a profile's ``data_source``."""

from __future__ import annotations

import os
from pathlib import Path

from fer.config import RAW_DIR
from fer.data.fer2013 import SPLIT_FOLDERS, DataError, Splits, load, synthetic

KAGGLE_DATASET = "msambare/fer2013"


def locate(env: str = "FER_DATA", raw_dir: str | os.PathLike = RAW_DIR, download_ok: bool = True) -> Path:
    """Find the dataset: ``$FER_DATA``, then ``data/raw/``, then a Kaggle download.

    Raises :class:`DataError` saying exactly how to provide the data when none is found.
    """
    value = os.environ.get(env)
    if value:
        path = Path(value).expanduser()
        if not path.exists():
            raise DataError(f"${env}={value} does not exist. Point it at a FER2013 zip, folder or CSV.")
        return path
    raw = Path(raw_dir)
    found = _find_in_raw(raw)
    if found is not None:
        return found
    if download_ok and _kaggle_credentials():
        return download(raw)
    raise DataError(
        "FER2013 not found. Provide it in one of these ways:\n"
        f"  1. export {env}=/path/to/fer2013.zip   (Kaggle folder layout zip/folder, or fer2013.csv)\n"
        f"  2. put fer2013.zip, fer2013.csv or the train/ and test/ folders in {raw}/\n"
        "  3. set Kaggle credentials (KAGGLE_API_TOKEN, or KAGGLE_USERNAME and KAGGLE_KEY, or\n"
        "     ~/.kaggle/kaggle.json, or Colab Secrets) and run `make data` to download "
        f"{KAGGLE_DATASET}."
    )


def download(dest: str | os.PathLike = RAW_DIR) -> Path:
    """Download the Kaggle image-folder FER2013 with kagglehub into ``dest``; return its folder."""
    _colab_secrets_to_env()
    try:
        import kagglehub
    except ImportError as err:
        raise DataError("downloading FER2013 needs kagglehub, part of the study extra: "
                        "pip install 'fer-study[study]' (or pass the data you have)") from err
    try:
        cached = Path(kagglehub.dataset_download(KAGGLE_DATASET))  # shows its own progress bar
    except Exception as err:
        raise DataError(f"Kaggle download of {KAGGLE_DATASET} failed: {err}") from err
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / "fer2013"
    if not target.exists():
        target.symlink_to(cached, target_is_directory=True)
    return target


def _find_in_raw(raw: Path) -> Path | None:
    if not raw.is_dir():
        return None
    candidates = sorted(raw.iterdir())
    for pattern in ("*.zip", "*.csv", "*.csv.gz"):
        for c in candidates:
            if c.is_file() and c.match(pattern):
                return c
    if any(SPLIT_FOLDERS.get(c.name.lower()) for c in candidates if c.is_dir()):
        return raw
    for c in candidates:  # one level down: data/raw/fer2013/{train,test}
        if c.is_dir() and any(SPLIT_FOLDERS.get(d.name.lower()) for d in c.iterdir() if d.is_dir()):
            return c
    return None


def _kaggle_credentials() -> bool:
    _colab_secrets_to_env()
    env = os.environ
    return bool(
        env.get("KAGGLE_API_TOKEN")
        or (env.get("KAGGLE_USERNAME") and env.get("KAGGLE_KEY"))
        or (Path.home() / ".kaggle" / "kaggle.json").exists()
        or (Path.home() / ".kaggle" / "access_token").exists()
    )


def _colab_secrets_to_env() -> None:
    """On Colab, copy Kaggle secrets (if the user granted them) into the environment."""
    try:
        from google.colab import userdata  # type: ignore[import-not-found]
    except ImportError:
        return
    for name in ("KAGGLE_API_TOKEN", "KAGGLE_USERNAME", "KAGGLE_KEY"):
        if name not in os.environ:
            try:
                value = userdata.get(name)
            except Exception:  # secret absent or access not granted
                continue
            if value:
                os.environ[name] = value


def load_source(data_source: str | os.PathLike | None = None, seed: int = 0) -> Splits:
    """What notebooks and the CLI call: ``"synthetic"`` → ``fer.data.synthetic``; a path →
    ``fer.data.load``; ``None`` → :func:`locate` then ``fer.data.load``."""
    if data_source in ("synthetic", "generated"):
        return synthetic(seed=seed)
    return load(data_source if data_source else locate())
