"""TensorFlow without its C++ start-up lines.

Importing TensorFlow 2.20/2.21 prints, twice, ``WARNING: All log messages before
absl::InitializeLog() is called are written to STDERR``, oneDNN and CPU-instruction notes and
``Could not find cuda drivers``; its first device query adds ``failed call to cuInit`` on a
machine without a GPU (on a Colab GPU: duplicate cuDNN/cuBLAS factory registrations). They
come from C++ (absl) before ``TF_CPP_MIN_LOG_LEVEL`` is applied, straight to file descriptor 2,
so setting the variable does not hide them, and a Jupyter kernel shows them as red stderr
under whichever cell first imports Keras.

``import fer`` calls :func:`install`: when something later imports ``tensorflow`` for the
first time, descriptor 2 points at a temporary file while it loads and lists its devices, and
every line that is not such a message is then written back. ``TF_CPP_MIN_LOG_LEVEL`` decides
what counts, as TensorFlow defines it: unset means 2 (INFO and WARNING hidden, and the known
harmless errors above); ``0`` shows everything, ``3`` hides errors too. A value set by the
user is never changed. LiteRT's ``INFO: Created TensorFlow Lite XNNPACK delegate`` line, printed
when the first interpreter is made, is filtered where that happens (:func:`filtered_stderr`).
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import re
import sys
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path

#: absl's format (``I0000 00:00:1796166651.177594    7567 port.cc:153] ...``: before
#: absl::InitializeLog the time reads 00:00:<seconds since 1970>) and TensorFlow's
#: older one (``2025-09-17 14:44:05.157831: I external/.../cudart_stub.cc:32] ...``).
_ABSL = re.compile(r"^(?:([IWEF])\d{4} \d\d:\d\d:\d+\.\d+\s+\d+|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: ([IWEF])) \S+:\d+\] ")
_SEVERITY = {"I": 0, "W": 1, "E": 2, "F": 3}
_PRE_INIT = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
#: cpu_feature_guard's second line, which has no prefix of its own.
_CPU_FEATURES = re.compile(r"^To enable the following instructions: .*rebuild TensorFlow with the appropriate compiler flags\.$")
#: LiteRT's (TFLite's) once-per-process notes, printed when the first interpreter is made.
_LITERT_INFO = re.compile(r"^INFO: (Created TensorFlow Lite XNNPACK delegate for CPU|Initialized TensorFlow Lite runtime)\.$")
#: Errors TensorFlow logs on every start that mean nothing is wrong.
_HARMLESS_ERRORS = re.compile(r"Unable to register cu(DNN|FFT|BLAS) factory: Attempting to register factory for plugin")


def level() -> int:
    """``TF_CPP_MIN_LOG_LEVEL`` as TensorFlow reads it (2 when unset or not a number)."""
    try:
        return int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"))
    except ValueError:
        return 2


def has_nvidia_driver() -> bool:
    """Whether an NVIDIA kernel driver is loaded (where a failed cuInit would be a real problem)."""
    return Path("/proc/driver/nvidia").exists() or Path("/dev/nvidiactl").exists()


def is_noise(line: str, min_level: int | None = None, gpu_driver: bool | None = None) -> bool:
    """Whether ``line`` is a TensorFlow start-up message that ``min_level`` hides."""
    min_level = level() if min_level is None else min_level
    if min_level <= 0:
        return False
    line = line.rstrip("\r\n")
    if line == _PRE_INIT or _CPU_FEATURES.match(line) or _LITERT_INFO.match(line):
        return True
    match = _ABSL.match(line)
    if not match:
        return False
    severity = _SEVERITY[match.group(1) or match.group(2)]
    if severity < min_level:
        return True
    if severity == 2 and min_level == 2:
        if _HARMLESS_ERRORS.search(line):
            return True
        if "failed call to cuInit" in line:
            return not (has_nvidia_driver() if gpu_driver is None else gpu_driver)
    return False


@contextmanager
def filtered_stderr():
    """Send file descriptor 2 to a temporary file for the block, then write back what is not noise.

    One block at a time in the process (descriptor 2 is the process's, not the thread's): two
    threads interleaving their redirections would leave it pointing at a closed file."""
    with _STDERR_LOCK:
        yield from _filtered_stderr()


_STDERR_LOCK = threading.RLock()


def _filtered_stderr():
    try:
        saved = os.dup(2)
    except OSError:  # no stderr at all (e.g. a closed descriptor): nothing to filter
        yield
        return
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        for stream in (sys.stderr, sys.__stderr__):
            _flush(stream)
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            for stream in (sys.stderr, sys.__stderr__):
                _flush(stream)
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            kept = [ln for ln in tmp.read().decode("utf-8", "replace").splitlines(keepends=True) if not is_noise(ln)]
            if kept:
                os.write(2, "".join(kept).encode("utf-8", "replace"))


@contextmanager
def silenced():
    """Nothing the block prints reaches the terminal: file descriptors 1 and 2 go to a temporary
    file, returned to the caller's ``except`` through the exception's notes when the block fails.

    For TensorFlow's TFLite converter, which prints hundreds of lines (``Saved artifact at``,
    every ``TensorSpec``) from Python and C++ alike; a user asked for one model, not its trace."""
    import io
    from contextlib import redirect_stderr, redirect_stdout

    # Both levels: C++ writes to the descriptors; Python's print() to sys.stdout, which a notebook
    # kernel (or pytest) points somewhere else than descriptor 1.
    text = io.StringIO()
    with _STDERR_LOCK, tempfile.TemporaryFile(mode="w+b") as tmp, redirect_stdout(text), redirect_stderr(text):
        for stream in (sys.__stdout__, sys.__stderr__):
            _flush(stream)
        saved = [os.dup(1), os.dup(2)]
        os.dup2(tmp.fileno(), 1)
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        except BaseException as err:
            tmp.seek(0)
            err.add_note((text.getvalue() + tmp.read().decode("utf-8", "replace"))[-4000:])
            raise
        finally:
            for stream in (sys.__stdout__, sys.__stderr__):
                _flush(stream)
            for fd, copy in zip((1, 2), saved, strict=True):
                os.dup2(copy, fd)
                os.close(copy)


def _flush(stream) -> None:
    try:
        stream.flush()
    except (AttributeError, OSError, ValueError):
        pass


class _QuietLoader(importlib.abc.Loader):
    """Wraps TensorFlow's own loader: runs its import and a first device query under :func:`filtered_stderr`."""

    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        with filtered_stderr():
            try:
                self.loader.exec_module(module)
            finally:
                module.__loader__ = self.loader
                if getattr(module, "__spec__", None) is not None:
                    module.__spec__.loader = self.loader
            try:  # cuInit runs here, not at import; listing does not initialise (or allocate on) the GPUs
                module.config.list_physical_devices()
            except Exception:  # a broken CUDA set-up shows itself on first use
                pass

    def __getattr__(self, name):  # get_resource_reader, is_package, ...
        return getattr(self.loader, name)


class _TensorFlowFinder(importlib.abc.MetaPathFinder):
    """On the first ``import tensorflow``: find it as usual, load it with :class:`_QuietLoader`."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "tensorflow":
            return None
        uninstall()  # once; and the lookup below must not come back here
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None and level() > 0:
            spec.loader = _QuietLoader(spec.loader)
        return spec


def install() -> None:
    """Make the next first import of ``tensorflow`` quiet (see the module's docstring).

    Does nothing when TensorFlow is already imported. Sets ``TF_CPP_MIN_LOG_LEVEL=2`` unless it
    is set, so TensorFlow's later C++ logging follows the same level.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" in sys.modules or any(isinstance(f, _TensorFlowFinder) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _TensorFlowFinder())


def uninstall() -> None:
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _TensorFlowFinder)]
