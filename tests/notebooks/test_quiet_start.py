"""A notebook's first cells show no TensorFlow/CUDA start-up lines (fer.quiet).

TensorFlow 2.20/2.21 writes them from C++ to descriptor 2 whatever TF_CPP_MIN_LOG_LEVEL says,
and a Jupyter kernel shows them under the first cell that imports Keras. The unit tests use
lines as TensorFlow 2.20 and 2.21 print them; the slow test runs each notebook's setup and
parameters cells and its fer imports in a fresh kernel, as JupyterLab would.
"""

import os
import re
import subprocess
import sys

import nbformat
import pytest
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_notebook

from fer import quiet
from fer.config import NOTEBOOKS_DIR, PROJECT_DIR
from fer.reporting import reports

#: As TensorFlow 2.21 (absl) and 2.20 (its own format) print them on a machine without a GPU.
START_UP = """\
WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
I0000 00:00:1796166651.177594    7567 port.cc:153] oneDNN custom operations are on. You may see slightly different numerical results due to floating-point round-off errors from different computation orders. To turn them off, set the environment variable `TF_ENABLE_ONEDNN_OPTS=0`.
I0000 00:00:1796166651.177864    7567 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.
I0000 00:00:1796166651.226625    7567 cpu_feature_guard.cc:227] This TensorFlow binary is optimized to use available CPU instructions in performance-critical operations.
To enable the following instructions: AVX2 AVX512F AVX512_VNNI AVX512_BF16 AVX512_FP16 AVX_VNNI AMX_TILE AMX_INT8 AMX_BF16 FMA, in other operations, rebuild TensorFlow with the appropriate compiler flags.
E0000 00:00:1796166657.485105    7567 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)
2026-12-01 23:22:08.365838: I tensorflow/core/platform/cpu_feature_guard.cc:210] This TensorFlow binary is optimized to use available CPU instructions in performance-critical operations.
2026-12-01 23:22:39.554624: E external/local_xla/xla/stream_executor/cuda/cuda_platform.cc:51] failed call to cuInit: INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)
E0000 00:00:1758131045.203198 3722035 cuda_dnn.cc:8579] Unable to register cuDNN factory: Attempting to register factory for plugin cuDNN when one has already been registered
W0000 00:00:1758131045.228000 3722035 computation_placer.cc:177] computation placer already registered. Please check linkage and avoid linking the same target more than once.
INFO: Created TensorFlow Lite XNNPACK delegate for CPU.
""".splitlines()

#: Lines that must come through: Python's own output, and TensorFlow errors that mean something.
REAL = [
    "Traceback (most recent call last):",
    "ValueError: no such split: val",
    "E0000 00:00:1796166657.485105    7567 bfc_allocator.cc:501] Allocator (GPU_0_bfc) ran out of memory trying to allocate 2.0GiB",
    "F0000 00:00:1796166657.485105    7567 cuda_driver.cc:12] Check failed: driver version mismatch",
]

NOISE = re.compile(r"^[IWEF]\d{4} |absl::InitializeLog|cuInit|oneDNN|cuda drivers|cpu_feature_guard|"
                   r"TensorFlow binary is optimized|rebuild TensorFlow|XNNPACK delegate", re.MULTILINE)


def test_start_up_lines_are_noise_at_the_default_level():
    kept = [ln for ln in START_UP if not quiet.is_noise(ln, min_level=2, gpu_driver=False)]
    assert kept == []


def test_real_errors_and_python_output_are_kept():
    assert [ln for ln in REAL if quiet.is_noise(ln, min_level=2, gpu_driver=False)] == []


def test_a_failed_cuinit_is_kept_where_there_is_a_gpu_driver():
    cuinit = next(ln for ln in START_UP if "cuInit" in ln)
    assert quiet.is_noise(cuinit, min_level=2, gpu_driver=False)
    assert not quiet.is_noise(cuinit, min_level=2, gpu_driver=True)


def test_the_users_level_decides():
    info, warning, error = START_UP[1], next(ln for ln in START_UP if ln.startswith("W0000")), REAL[2]
    assert not any(quiet.is_noise(ln, min_level=0) for ln in START_UP)  # TF_CPP_MIN_LOG_LEVEL=0: everything
    assert quiet.is_noise(info, min_level=1) and not quiet.is_noise(warning, min_level=1)  # W kept at 1
    assert quiet.is_noise(error, min_level=3) and not quiet.is_noise(REAL[3], min_level=3)  # F always shown


def test_filtered_stderr_drops_noise_written_to_the_descriptor_and_keeps_the_rest(capfd):
    with quiet.filtered_stderr():
        os.write(2, ("\n".join(START_UP[:5] + REAL[:2]) + "\n").encode())
    err = capfd.readouterr().err
    assert err.splitlines() == REAL[:2]


def test_import_fer_does_not_override_an_explicit_level():
    code = "import os; os.environ['TF_CPP_MIN_LOG_LEVEL'] = '0'; import fer; print(os.environ['TF_CPP_MIN_LOG_LEVEL'])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PROJECT_DIR, check=True)
    assert out.stdout.strip() == "0"


@pytest.mark.slow
def test_import_tensorflow_after_fer_is_quiet_in_a_terminal():
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    code = "import fer, tensorflow as tf; tf.config.list_physical_devices(); print(tf.__version__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PROJECT_DIR, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    assert not NOISE.search(out.stderr), out.stderr


def test_blazeface_starts_without_litert_notes():
    # a new process: LiteRT prints its note once per process, at the first interpreter
    code = "from fer.inference import faces; faces.BlazeFace('front'); faces.BlazeFace('back')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PROJECT_DIR, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "XNNPACK" not in out.stderr, out.stderr


def fer_imports(path) -> str:
    """Every ``import fer`` / ``from fer ...`` line of a notebook, as one cell."""
    nb = nbformat.read(str(path), as_version=4)
    lines = {ln.strip() for c in nb.cells if c.cell_type == "code" for ln in c.source.splitlines()
             if re.match(r"\s*(import fer\b|from fer\b)", ln)}
    return "\n".join(sorted(lines))


@pytest.mark.slow
def test_first_cells_show_no_start_up_noise_in_a_fresh_kernel(monkeypatch):
    """Setup + parameters + the notebook's fer imports, each notebook in its own new kernel."""
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)  # as in a JupyterLab started by hand
    # ipykernel shows what C++ writes to descriptor 2 as cell output, as JupyterLab users see it,
    # except when it finds PYTEST_CURRENT_TEST: then it would go to this process's stderr, unseen.
    monkeypatch.delenv("PYTEST_CURRENT_TEST", raising=False)
    imported_tf = {}
    with reports.current_interpreter_kernel() as kernel:
        for path in reports.notebooks():
            nb = nbformat.read(str(path), as_version=4)
            code = [c for c in nb.cells if c.cell_type == "code"]
            probe = new_code_cell("import sys\nprint('tensorflow' in sys.modules, sys.modules['fer'].__file__)")
            run = new_notebook(cells=[code[0], code[1], new_code_cell(fer_imports(path)), probe],
                               metadata=nb.metadata)
            NotebookClient(run, kernel_name=kernel, timeout=300, resources={"metadata": {"path": str(NOTEBOOKS_DIR)}}).execute()
            texts = [o.get("text", "") + o.get("evalue", "") + str(o.get("data", {}).get("text/plain", ""))
                     for c in run.cells for o in c.get("outputs", [])]
            noisy = [t for t in texts if NOISE.search(t)]
            assert not noisy, f"{path.name}: start-up lines in the first cells:\n" + "\n".join(noisy)
            assert not [o for c in run.cells for o in c.outputs if o.output_type == "error"]
            flag, where = run.cells[3].outputs[0]["text"].split()
            assert where == str(PROJECT_DIR / "fer" / "__init__.py")  # the kernel ran this checkout's fer
            imported_tf[path.stem] = flag == "True"
    assert imported_tf["02_train_tune"], "02's imports no longer load TensorFlow: the test proves nothing there"
