"""MLflow experiment tracking: every training run, its parameters, curves, figures and model.

First used in chapter "Brain MRI: training" (notebooks/brain_02_training.ipynb); explained in
chapter "Skin lesions: training" (notebooks/skin_02_training.ipynb).

The store is a SQLite file, ``<output_dir>/mlflow.db``, with artifacts in
``<output_dir>/mlartifacts``, unless ``MLFLOW_TRACKING_URI`` names another (a server, say).
Browse it with ``mlflow ui --backend-store-uri sqlite:///<output_dir>/mlflow.db``.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import time
import warnings
from pathlib import Path

import keras

from medclass.runtime import folder_lock

EXPERIMENT = "medclass"


def tracking_uri(output_dir: str | Path) -> str:
    """``MLFLOW_TRACKING_URI`` if set, else the SQLite store in ``output_dir``."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path(output_dir).resolve() / 'mlflow.db'}"


def _client(output_dir: str | Path):
    # MLflow imports tqdm.auto, which warns in a notebook without ipywidgets; the bar is unused.
    warnings.filterwarnings("ignore", message="IProgress not found")
    from mlflow.tracking import MlflowClient

    logging.getLogger("mlflow").setLevel(logging.WARNING)  # its "creating tables" notes
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    return MlflowClient(tracking_uri(output_dir))


class Tracker:
    """One MLflow run, addressed by id, so that a resumed training run keeps logging to it.

    ``Tracker(output_dir, run_name=...)`` starts a run; ``Tracker(output_dir, run_id=...)``
    reopens one (the evaluation chapter adds its test metrics to the training run).
    """

    def __init__(
        self,
        output_dir: str | Path,
        run_name: str | None = None,
        run_id: str | None = None,
        experiment: str = EXPERIMENT,
    ):
        self.output_dir = Path(output_dir)
        # Two runs starting in a fresh output_dir would both create the store's tables: one waits.
        with folder_lock(self.output_dir / "mlflow.db.lock", wait=True, what="the MLflow store"):
            self.client = _client(output_dir)
            if run_id is not None:
                self.run_id = self.client.get_run(run_id).info.run_id
                return
            found = self.client.get_experiment_by_name(experiment)
            if found is None:
                artifacts = None
                if not os.environ.get("MLFLOW_TRACKING_URI"):
                    artifacts = (self.output_dir.resolve() / "mlartifacts").as_uri()
                experiment_id = self.client.create_experiment(experiment, artifact_location=artifacts)
            else:
                experiment_id = found.experiment_id
            self.run_id = self.client.create_run(experiment_id, run_name=run_name).info.run_id

    def log_params(self, params: dict) -> None:
        """Log parameters; values become strings (MLflow's rule), None becomes "None"."""
        from mlflow.entities import Param

        self.client.log_batch(self.run_id, params=[Param(str(k), str(v)[:6000]) for k, v in params.items()])

    def log_metrics(self, values: dict, step: int | None = None) -> None:
        """Log the numeric entries of ``values``; the others are skipped. Characters MLflow
        refuses in a name, such as parentheses, become underscores."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        rows = [
            Metric(re.sub(r"[^\w\-. :/]", "_", str(key)), float(value), now, step or 0)
            for key, value in values.items()
            if isinstance(value, int | float) and not isinstance(value, bool)
        ]
        if rows:
            self.client.log_batch(self.run_id, metrics=rows)

    def set_tags(self, tags: dict) -> None:
        for key, value in tags.items():
            self.client.set_tag(self.run_id, key, str(value))

    def log_artifact(self, path: str | Path, folder: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), folder)

    def log_figure(self, figure, name: str) -> None:
        """Save a Matplotlib figure as ``figures/<name>`` (PNG) in the run."""
        with tempfile.TemporaryDirectory() as scratch:
            path = Path(scratch) / name
            figure.savefig(path, dpi=110, bbox_inches="tight")
            self.log_artifact(path, "figures")

    def end(self, status: str = "FINISHED") -> None:
        """Mark the run FINISHED, FAILED or KILLED."""
        self.client.set_terminated(self.run_id, status=status)

    def callback(self) -> keras.callbacks.Callback:
        """A Keras callback that logs every epoch's metrics, the learning rate included."""
        return _EpochMetrics(self)


class _EpochMetrics(keras.callbacks.Callback):
    # Not mlflow.keras.MlflowCallback: it logs to the fluent API's active run, and at every fit
    # logs the optimizer's settings as parameters, which MLflow refuses to change when the
    # fine-tuning phase recompiles at a lower rate.
    def __init__(self, tracker: Tracker):
        super().__init__()
        self.tracker = tracker

    def on_epoch_end(self, epoch, logs=None):
        values = {key: float(value) for key, value in (logs or {}).items()}
        if "learning_rate" in values:
            values["lr"] = values.pop("learning_rate")
        self.tracker.log_metrics(values, step=epoch + 1)


def runs_table(output_dir: str | Path, experiment: str = EXPERIMENT):
    """Every run of ``experiment`` as a DataFrame (newest first): what ``mlflow ui`` lists."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri(output_dir))
    return mlflow.search_runs(experiment_names=[experiment], order_by=["attributes.start_time DESC"])
