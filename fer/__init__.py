"""Facial expression recognition on FER2013.

The package is split by stage into layers; each imports only the layers below it
(``pyproject.toml``'s import-linter contract, ``docs/architecture.md``)::

    cli            python -m fer
    reporting      notebooks' figures, reports, the results table
    apps|training  what users run  |  what makes the models (never each other)
    evaluation     metrics, robustness, labelled photo sets, speed
    inference      detection, runtimes, cards, predict, export, the overlay
    data           FER2013, its sources and audit, labelled sets

Beneath them all: :mod:`fer.config`, :mod:`fer.devices`, :mod:`fer.quiet`. Importing ``fer`` is
cheap: TensorFlow and OpenCV are imported only when a function that needs them is called, and
TensorFlow then starts without its C++ start-up lines (:mod:`fer.quiet`).
"""

from fer import quiet as _quiet
from fer.config import CLASSES

_quiet.install()

__all__ = ["CLASSES", "load_classifier", "analyze", "__version__"]
__version__ = "0.1.0"


def load_classifier(path=None, **kwargs):
    """Load a classifier with ``predict_proba(faces)``; ``path=None`` loads the bundled model."""
    from fer.inference.predict import load_classifier as _load

    return _load(path, **kwargs)


def analyze(image_bgr, **kwargs):
    """Find every face in a BGR/BGRA/grayscale image and classify its expression.

    Returns a list of ``{"box": [x, y, w, h], "label": str, "probs": {class: p}}``.
    """
    from fer.inference.predict import analyze as _analyze

    return _analyze(image_bgr, **kwargs)
