"""Facial expression recognition on FER2013.

The package is split by pipeline stage (``fer.sources``/``fer.data`` → ``fer.runs``/``fer.tune``
→ ``fer/weights`` → ``fer.predict``), one concept per module. Importing ``fer`` is cheap:
TensorFlow and OpenCV are imported only when a function that needs them is called, and
TensorFlow then starts without its C++ start-up lines (:mod:`fer.quiet`).
"""

from fer import quiet as _quiet
from fer.config import CLASSES

_quiet.install()

__all__ = ["CLASSES", "load_classifier", "analyze", "__version__"]
__version__ = "0.1.0"


def load_classifier(path=None, **kwargs):
    """Load a classifier with ``predict_proba(faces)``; ``path=None`` loads the bundled model."""
    from fer.predict import load_classifier as _load

    return _load(path, **kwargs)


def analyze(image_bgr, **kwargs):
    """Find every face in a BGR/BGRA/grayscale image and classify its expression.

    Returns a list of ``{"box": [x, y, w, h], "label": str, "probs": {class: p}}``.
    """
    from fer.predict import analyze as _analyze

    return _analyze(image_bgr, **kwargs)
