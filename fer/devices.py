"""Devices and numbers: the Keras backend, the GPUs it sees, the mixed-precision policy for
this hardware, and the hardware record a model card keeps (several devices: :mod:`fer.training.parallel`)."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import keras


def cpu_has_bf16() -> bool:
    """True when the CPU has native bfloat16 math (AVX512-BF16 or AMX); otherwise bf16 is emulated."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(f in flags for f in ("avx512_bf16", "amx_bf16"))


def backend() -> str:
    """The Keras backend: ``tensorflow`` (this project's environment), ``jax`` or ``torch``."""
    return keras.backend.backend()


def accelerators() -> list[str]:
    """Names of the GPUs the Keras backend sees (empty on a CPU-only machine)."""
    name = backend()
    if name == "tensorflow":
        import tensorflow as tf

        return [tf.config.experimental.get_device_details(g).get("device_name", g.name)
                for g in tf.config.list_physical_devices("GPU")]
    if name == "jax":
        import jax

        return [d.device_kind for d in jax.devices() if d.platform == "gpu"]
    if name == "torch":
        import torch

        return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return []


def set_precision(policy: str = "auto") -> str:
    """Set the Keras dtype policy. ``auto``: on a GPU, mixed float16 under TensorFlow (the Colab
    T4 has no fast bfloat16) and mixed bfloat16 under JAX/PyTorch (where this project runs them:
    Ampere or newer); on a CPU, mixed bfloat16 with native bf16 math, float32 otherwise
    (emulated bf16 was slower than float32 on an AVX2-only CPU)."""
    if policy == "auto":
        if accelerators():
            policy = "mixed_float16" if backend() == "tensorflow" else "mixed_bfloat16"
        else:
            policy = "mixed_bfloat16" if cpu_has_bf16() else "float32"
    keras.mixed_precision.set_global_policy(policy)
    return policy


def hardware() -> dict[str, Any]:
    """What trained the model, for the model card."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    out: dict[str, Any] = {"cpu": cpu, "cores": os.cpu_count(), "gpus": accelerators()}
    name = backend()
    module = __import__(name)
    if name != "tensorflow":
        out["backend"] = name
        out["keras"] = keras.__version__
    out[name] = module.__version__
    return out


# --------------------------------------------------------------------------- input pipeline
