"""Accelerator choice, data-parallel training on two logical CPUs, and the JAX backend."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from medclass import hardware, models
from tests.conftest import ROOT


def run_python(code: str, tmp_path, backend: str = "tensorflow") -> str:
    """Run ``code`` in a fresh interpreter (device set-up and backends are per process)."""
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def test_a_cpu_gets_float32_without_xla():
    accelerator = hardware.configure()
    assert (accelerator.kind, accelerator.devices) == ("cpu", 1)
    assert not accelerator.mixed_precision and not accelerator.jit_compile
    assert keras.mixed_precision.global_policy().name == "float32"
    assert "MirroredStrategy" not in accelerator.describe()


def test_mixed_precision_keeps_the_output_in_float32():
    try:
        accelerator = hardware.configure(mixed_precision=True)
        assert accelerator.mixed_precision
        model, base = models.build_classifier("mobilenet_v2", None, (48, 48), 3, alpha=0.35)
        assert base.layers[2].compute_dtype == "float16"
        probabilities = model(np.zeros((2, 48, 48, 3), "float32"))
        assert probabilities.dtype == "float32"
        np.testing.assert_allclose(np.asarray(probabilities).sum(axis=1), 1, atol=1e-5)
    finally:
        keras.mixed_precision.set_global_policy("float32")


@pytest.mark.slow
def test_training_is_data_parallel_on_two_logical_cpus(tmp_path):
    output = run_python(
        """
        import sys
        from pathlib import Path
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from medclass import data, hardware, models, pipeline, splits, training
        from medclass.synthetic import write_synthetic_brain_mri

        root = write_synthetic_brain_mri(Path(sys.argv[1]) / "data", n_images=40, seed=1, size=64)
        frame = splits.split_frame(data.load_dataset("brain_mri", root), seed=0)
        names = ["Healthy", "Tumor"]
        train = pipeline.make_dataset(frame[frame.split == "train"], names, (48, 48), 8, training=True)
        val = pipeline.make_dataset(frame[frame.split == "val"], names, (48, 48), 8)
        accelerator = hardware.configure(devices=[d.name for d in tf.config.list_logical_devices("CPU")])
        with accelerator.strategy.scope():
            model, base = models.build_classifier("mobilenet_v2", None, (48, 48), 2, alpha=0.35)
        result = training.train_two_phase(
            model, base, train, val, Path(sys.argv[1]) / "run", 2,
            training.Recipe(epochs_frozen=1, epochs_finetune=1, unfreeze_blocks=2))
        print("strategy", type(accelerator.strategy).__name__, accelerator.strategy.num_replicas_in_sync)
        print("variable", type(model.weights[-1].value).__name__)
        print("epochs", len(result.history))
        """,
        tmp_path,
    )
    assert "strategy MirroredStrategy 2" in output
    assert "variable MirroredVariable" in output
    assert "epochs 2" in output


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
def test_the_same_model_code_trains_on_the_jax_backend(tmp_path):
    output = run_python(
        """
        import sys
        from pathlib import Path
        import keras
        import numpy as np
        from medclass import hardware, models, training

        accelerator = hardware.configure()
        model, base = models.build_classifier("efficientnet_b0", None, (48, 48), 7)
        recipe = training.Recipe(loss="focal")
        loss, metrics = recipe.loss_and_metrics(7)
        model.compile(optimizer=keras.optimizers.AdamW(1e-3), loss=loss, metrics=metrics)
        rng = np.random.default_rng(0)
        images = rng.uniform(0, 255, (16, 60, 60, 3)).astype("float32")
        labels = np.eye(7)[rng.integers(0, 7, 16)].astype("float32")
        model.fit(images, labels, epochs=1, batch_size=8, verbose=0)
        models.unfreeze_top_blocks(base, 2)
        model.compile(optimizer=keras.optimizers.AdamW(1e-4), loss=loss, metrics=metrics)
        model.fit(images, labels, epochs=1, batch_size=8, verbose=0)
        path = Path(sys.argv[1]) / "model.keras"
        model.save(path)
        loaded = keras.saving.load_model(path, safe_mode=True)
        expected = model.predict(images, verbose=0)
        np.testing.assert_allclose(loaded.predict(images, verbose=0), expected, atol=1e-5)
        print("backend", keras.backend.backend(), type(accelerator.strategy).__name__)
        """,
        tmp_path,
        backend="jax",
    )
    assert "backend jax _NoStrategy" in output


@pytest.mark.slow
def test_the_throughput_benchmark_runs_and_writes_its_table(tmp_path):
    """Not a timing test: the script must keep working, so that its numbers can be refreshed."""
    out = tmp_path / "throughput.csv"
    result = subprocess.run(
        [
            sys.executable,
            "benchmarks/train_throughput.py",
            "--backbones",
            "mobilenet_v2",
            "--sizes",
            "32",
            "--precisions",
            "float32",
            "mixed",
            "--images",
            "8",
            "--epochs",
            "1",
            "--batch-size",
            "4",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| mobilenet_v2 | 32 | mixed | off |" in result.stdout
    rows = out.read_text().splitlines()
    assert rows[0] == "backbone,size,precision,xla,images_per_s" and len(rows) == 3


@pytest.mark.slow
@pytest.mark.parametrize("backbone", ["mobilenet_v2", "efficientnet_b0"])
def test_the_model_compiles_under_xla(backbone, tmp_path):
    """On a GPU the training step is XLA-compiled; every layer of the model must support it
    (an antialiased Resizing layer, for one, does not). Checked here on the CPU, in a fresh
    process: Keras quietly drops ``jit_compile=True`` in one where op determinism is on
    (``runtime.make_ops_repeatable``), and a test before this one may have turned it on."""
    output = run_python(
        f"""
        import keras
        import numpy as np
        from medclass import models, training

        model, _ = models.build_classifier({backbone!r}, None, (48, 48), 3, alpha=0.35)
        loss, metrics = training.Recipe().loss_and_metrics(3)
        model.compile(optimizer=keras.optimizers.AdamW(1e-3), loss=loss, metrics=metrics, jit_compile=True)
        rng = np.random.default_rng(0)
        images = rng.uniform(0, 255, (8, 60, 60, 3)).astype("float32")
        history = model.fit(images, np.eye(3)[rng.integers(0, 3, 8)], batch_size=4, epochs=1, verbose=0)
        print("jit", model.jit_compile, "finite", bool(np.isfinite(history.history["loss"][0])))
        """,
        tmp_path,
    )
    assert "jit True finite True" in output
