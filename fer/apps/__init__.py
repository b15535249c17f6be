"""Apps: what users run on the shipped models. May import :mod:`fer.evaluation`,
:mod:`fer.inference`, :mod:`fer.data` and the foundation; never :mod:`fer.training`, so the apps
need none of the training stack.

- :mod:`~fer.apps.video`: a video file or a camera as frames;
- :mod:`~fer.apps.annotate`: ``python -m fer annotate`` (an annotated video and a CSV);
- :mod:`~fer.apps.webcam`, :mod:`~fer.apps.demo`: the notebook widget and the demo's replay
  and photo upload;
- :mod:`~fer.apps.serve`, :mod:`~fer.apps.access`, :mod:`~fer.apps.uploads`,
  :mod:`~fer.apps.workers`, :mod:`~fer.apps.stream`: the web app, its access token off
  loopback, its upload checks, its worker processes and its MJPEG stream;
- :mod:`~fer.apps.loadtest`: the web app under concurrent clients.
- :mod:`~fer.apps.web`: the models in the browser (LiteRT.js): the files the widget's and the
  page's browser mode load, and the static demo ``python -m fer export --web DIR``.
"""
