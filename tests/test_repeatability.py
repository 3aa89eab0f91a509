"""A run repeats from its seed: seeding turns TensorFlow's op determinism on on a CPU, and two
fine-tuning runs from one seed end with the same weights (benchmarks/repeatability.py)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pandas as pd
import pytest

from tests.conftest import ROOT
from tests.test_hardware import run_python


def test_seeding_turns_op_determinism_on_on_a_cpu_and_can_leave_it_off(tmp_path):
    output = run_python(
        """
        import tensorflow as tf
        from tensorflow.python.framework import config
        from medclass import runtime

        print("accelerated:", any(d.device_type != "CPU" for d in tf.config.list_physical_devices()))
        runtime.seed_everything(1, repeatable_ops=False)
        print("off:", config.is_op_determinism_enabled())
        runtime.seed_everything(1)
        print("on:", config.is_op_determinism_enabled())
        import keras_cv  # an augmentation layer made without a seed draws from the global generator

        keras_cv.layers.RandomColorDegeneration(0.5)
        print("unseeded layer made")
        """,
        tmp_path,
    )
    if "accelerated: True" in output:
        pytest.skip("this machine has a GPU or TPU, where op determinism is left off")
    assert "off: False" in output and "on: True" in output and "unseeded layer made" in output


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
def test_op_determinism_is_left_off_on_another_backend(tmp_path):
    code = "from medclass import runtime\nprint('on:', runtime.make_ops_repeatable(1))\n"
    output = run_python(code, tmp_path, backend="jax")
    assert "on: False" in output


@pytest.mark.slow
def test_two_deterministic_fine_tuning_runs_from_one_seed_end_with_the_same_weights(tmp_path):
    out, table = tmp_path / "repeatability.csv", tmp_path / "repeatability.md"
    command = [
        sys.executable,
        "-m",
        "benchmarks.repeatability",
        "--synthetic",
        "--data-dir",
        str(tmp_path / "data"),
        "--modes",
        "deterministic",
        "--runs",
        "2",
        "--max-images",
        "60",
        "--image-size",
        "64",
        "--epochs-frozen",
        "1",
        "--epochs-finetune",
        "2",
        "--out",
        str(out),
        "--table",
        str(table),
    ]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = pd.read_csv(out)
    assert list(runs["ops"]) == ["deterministic", "deterministic"] and runs["op_determinism"].all()
    assert runs["weights"].nunique() == 1, runs.to_string()
    assert len(runs["val_loss"].iloc[0].split()) == 3  # one frozen epoch, two fine-tuning
    assert "2 runs from one seed ended with the same weights" in table.read_text()


def test_the_appendix_table_is_what_the_benchmark_measured():
    """book/generated/repeatability.md is written from the CSV, never typed."""
    from benchmarks import repeatability

    written = repeatability.describe(pd.read_csv(repeatability.RESULTS))
    assert written == repeatability.TABLE.read_text(), "run `python -m benchmarks.repeatability --table-only`"
