"""Two runs in one folder: the second is refused clearly, or waits its turn, never crashes the
first (issue: bad runs, bad files and bad sidecars never pass silently)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from medclass import data, runtime, splits, training
from tests.test_training import datasets, small_model

HOLD = """
import pathlib, sys, time
from medclass.runtime import folder_lock
with folder_lock(sys.argv[1], wait=False, what="test"):
    print("holding", flush=True)
    time.sleep(float(sys.argv[2]))
    pathlib.Path(sys.argv[1] + ".released").touch()  # written while the lock is still held
"""


def hold_lock(path, seconds: float) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout.readline().strip() == "holding"
    return process


@pytest.fixture(scope="module")
def tiny_split(synthetic_dir):
    return splits.split_frame(data.load_dataset("brain_mri", synthetic_dir), seed=0)


@pytest.mark.case(
    8,
    "a second training run in a run folder another process holds",
    "refused with the holder's process id and 'use another output_dir'",
)
def test_a_second_training_run_in_the_same_folder_is_refused(tiny_split, tmp_path):
    holder = hold_lock(tmp_path / ".training.lock", 60)
    try:
        model, base = small_model()
        train_ds, val_ds = datasets(tiny_split)
        with pytest.raises(
            runtime.FolderBusy, match=r"run folder .* is in use by process \d+ .*another output_dir"
        ):
            training.train_two_phase(
                model,
                base,
                train_ds,
                val_ds,
                tmp_path,
                2,
                training.Recipe(epochs_frozen=1, epochs_finetune=0),
            )
        assert not (tmp_path / "work").exists(), "the running run's work folder is left alone"
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.case(8, "a run killed while it holds the folder", "the folder is free again at once")
def test_a_lock_is_free_again_when_its_holder_dies(tmp_path):
    holder = hold_lock(tmp_path / "x.lock", 60)
    holder.kill()  # a crash: the OS releases the lock
    holder.wait()
    with runtime.folder_lock(tmp_path / "x.lock", wait=False, what="x"):
        pass


def test_a_waiting_lock_goes_on_once_the_other_lets_go(tmp_path):
    holder = hold_lock(tmp_path / "y.lock", 0.5)
    with runtime.folder_lock(tmp_path / "y.lock", wait=True, what="y"):
        assert (tmp_path / "y.lock.released").exists(), "it went on before the holder let go"
    holder.wait()


START_TRACKER = """
import sys
from medclass.tracking import Tracker
Tracker(sys.argv[1], run_name=sys.argv[2]).end()
print("ok")
"""


@pytest.mark.slow
@pytest.mark.alone
@pytest.mark.case(
    8,
    "three runs starting MLflow in a fresh output_dir at once",
    "all three succeed (the store is locked while it is created)",
)
def test_three_runs_starting_mlflow_in_a_fresh_folder_all_succeed(tmp_path):
    """Without the store's lock, 2 of 2 tries crashed one of the runs (table creation races)."""
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", START_TRACKER, str(tmp_path / "out"), f"run-{i}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(3)
    ]
    results = [run.communicate(timeout=300) for run in runs]
    assert [run.returncode for run in runs] == [0, 0, 0], [err[-2000:] for _, err in results]
    from mlflow.tracking import MlflowClient

    from medclass.tracking import EXPERIMENT, tracking_uri

    client = MlflowClient(tracking_uri(tmp_path / "out"))
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert len(client.search_runs([experiment.experiment_id])) == 3
