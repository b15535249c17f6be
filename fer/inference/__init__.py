"""Inference: a face image in, expression probabilities out, with no training code and no TensorFlow
on the hot path. May import :mod:`fer.data` and the foundation (config, devices, quiet).

- :mod:`~fer.inference.preprocess`: grey 48×48 faces, crops and test-time views;
- :mod:`~fer.inference.faces`: BlazeFace detection and FER2013-style crop framing;
- :mod:`~fer.inference.runtimes`: LiteRT / ONNX Runtime interpreters and the TFLite cache;
- :mod:`~fer.inference.dtypes`: float32 copies of mixed-precision nets, float16 weight rounding;
- :mod:`~fer.inference.cards`: the model card beside every model file;
- :mod:`~fer.inference.predict`: ``load_classifier``, ``analyze`` (the public API behind ``fer``);
- :mod:`~fer.inference.export`: TFLite and ONNX files checked against their Keras source;
- :mod:`~fer.inference.overlay`: tracking, smoothing and drawing, shared by every front end.
"""
