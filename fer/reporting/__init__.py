"""Reporting: the study told as notebooks and pages. May import every stage below it (apps,
training, evaluation, inference, data) and the foundation.

- :mod:`~fer.reporting.plots`, :mod:`~fer.reporting.architecture`: the notebooks' figures and
  network table;
- :mod:`~fer.reporting.study`: which model a notebook uses, the training table, the metrics file;
- :mod:`~fer.reporting.results`: the README's results table and the published figures;
- :mod:`~fer.reporting.findings`: each notebook's closing findings;
- :mod:`~fer.reporting.reports`, :mod:`~fer.reporting.frontpage`: executing the notebooks and
  the report index;
- :mod:`~fer.reporting.evaluation_page`: the page ``python -m fer evaluate --report`` writes;
- :mod:`~fer.reporting.colab`: the Colab links and setup cells (standard library only).
"""
