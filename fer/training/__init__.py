"""Training: networks, the input pipeline, fitting, runs and ensembles, the search, and scaling out.
May import :mod:`fer.evaluation` (a run scores its model), :mod:`fer.inference`, :mod:`fer.data`
and the foundation; never :mod:`fer.apps`.

- :mod:`~fer.training.networks`: the model builders (baseline, resnet, lite, ensemble);
- :mod:`~fer.training.inputs`: augmentation and batches (``tf.data`` or host);
- :mod:`~fer.training.distill`: soft targets from a teacher;
- :mod:`~fer.training.fit`: compile and fit one network, with resume;
- :mod:`~fer.training.runs`: a profile's model block into a run folder, ensembles, shipping;
- :mod:`~fer.training.recipe`: the study's recipe (members → ensemble → distilled lite → baseline);
- :mod:`~fer.training.tune`: the keras-tuner search;
- :mod:`~fer.training.cluster`, :mod:`~fer.training.parallel`: distributed search and
  data-parallel training.
"""
