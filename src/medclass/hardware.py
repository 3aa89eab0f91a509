"""The accelerator a run gets: distribution strategy, mixed precision and XLA, chosen once.

First used in chapter "Brain MRI: training" (notebooks/brain_02_training.ipynb); the choices it
makes are measured in chapter "Skin lesions: training" (notebooks/skin_02_training.ipynb).

On a GPU, mixed precision (float16 compute, float32 weights) and XLA compilation roughly double
throughput; on a CPU both slow training down, so they are switched off there. Several GPUs get a
``MirroredStrategy``, a Colab TPU a ``TPUStrategy``, anything else TensorFlow's default
strategy. On Keras's JAX backend there is no ``tf.distribute``: the strategy is a no-op and JAX
places the computation itself.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import keras

from medclass.runtime import tpu_named_in_environment


@dataclass
class Accelerator:
    """What :func:`configure` chose; ``strategy.scope()`` is where models must be built."""

    strategy: object
    kind: str  # "cpu", "gpu" or "tpu"
    devices: int
    mixed_precision: bool
    jit_compile: bool

    def describe(self) -> str:
        precision = "mixed float16" if self.mixed_precision else "float32"
        return (
            f"{self.devices} {self.kind.upper()} device(s), {type(self.strategy).__name__}, "
            f"{precision}, XLA {'on' if self.jit_compile else 'off'}"
        )


class _NoStrategy:
    """Stands in for ``tf.distribute`` where the backend has none (JAX)."""

    num_replicas_in_sync = 1

    def scope(self):
        return contextlib.nullcontext()


def _tpu_strategy():
    """A TPUStrategy when a TPU answers (Colab TPU runtime), else None."""
    import tensorflow as tf

    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, RuntimeError, tf.errors.NotFoundError):
        return None
    return tf.distribute.TPUStrategy(resolver)


def choose_strategy(devices: list[str] | None = None):
    """``(strategy, kind, n_devices)``: TPU, then several GPUs, then the default strategy.

    ``devices`` (logical device names) forces a ``MirroredStrategy`` over exactly those, which is
    how the tests run data-parallel training on two logical CPUs.
    """
    if keras.backend.backend() != "tensorflow":
        import jax

        platform = jax.devices()[0].platform
        return _NoStrategy(), "cpu" if platform == "cpu" else platform, len(jax.devices())
    import tensorflow as tf

    if devices:
        return tf.distribute.MirroredStrategy(devices), devices[0].split(":")[-2].lower(), len(devices)
    gpus = tf.config.list_logical_devices("GPU")
    if not gpus:
        tpu = _tpu_strategy() if tpu_named_in_environment() else None
        if tpu is not None:
            return tpu, "tpu", tpu.num_replicas_in_sync
        return tf.distribute.get_strategy(), "cpu", 1
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy([gpu.name for gpu in gpus]), "gpu", len(gpus)
    return tf.distribute.get_strategy(), "gpu", 1


def configure(mixed_precision: bool | None = None, devices: list[str] | None = None) -> Accelerator:
    """Choose the strategy and set Keras's global dtype policy for this process.

    ``mixed_precision=None`` means "on where it pays": GPU and TPU. XLA follows the same rule.
    Call it before building the model: the dtype policy applies to layers created afterwards.
    """
    strategy, kind, n_devices = choose_strategy(devices)
    accelerated = kind in {"gpu", "tpu"}
    use_mixed = accelerated if mixed_precision is None else bool(mixed_precision)
    policy = ("mixed_bfloat16" if kind == "tpu" else "mixed_float16") if use_mixed else "float32"
    keras.mixed_precision.set_global_policy(policy)
    return Accelerator(strategy, kind, n_devices, use_mixed, jit_compile=accelerated)
