"""Evaluation: how good and how fast a model is. May import :mod:`fer.inference`, :mod:`fer.data`
and the foundation.

- :mod:`~fer.evaluation.metrics`: accuracy and macro-F1 with bootstrap intervals, calibration,
  confusion, test-time augmentation, the unseen-image protocol;
- :mod:`~fer.evaluation.robustness`: accuracy under blur, JPEG, rotation, occlusion and the rest;
- :mod:`~fer.evaluation.evaluate`: a model on a labelled set of photos (``python -m fer evaluate``);
- :mod:`~fer.evaluation.speed`: latency and throughput (``python -m fer bench``).
"""
