"""Several ``python -m fer`` trainings can share one GPU (the members of ``make reproduce PROFILE=full``): the CLI
asks TensorFlow and JAX to take GPU memory as needed, unless the user chose otherwise."""

from __future__ import annotations

import os
import subprocess
import sys

from fer.config import PROJECT_DIR

VARS = ("TF_FORCE_GPU_ALLOW_GROWTH", "XLA_PYTHON_CLIENT_PREALLOCATE")


def _env_after_importing(module: str = "fer.cli", **preset: str) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k not in VARS} | preset
    code = f"import os, {module}; print(*(os.environ.get(v, '-') for v in {VARS!r}))"
    out = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_DIR, env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def test_cli_takes_gpu_memory_as_needed():
    assert _env_after_importing() == ["true", "false"]


def test_a_value_the_user_set_wins():
    assert _env_after_importing(TF_FORCE_GPU_ALLOW_GROWTH="false",
                                XLA_PYTHON_CLIENT_PREALLOCATE="true") == ["false", "true"]


def test_importing_fer_alone_changes_nothing():
    assert _env_after_importing("fer") == ["-", "-"]
