"""MLflow tracking against a real local store: what a training run logs is read back."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest
from mlflow.tracking import MlflowClient

from medclass import data, models, pipeline, splits, tracking, training

CLASS_NAMES = ["Healthy", "Tumor"]


@pytest.fixture(scope="module")
def tracked_run(synthetic_dir, tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("outputs")
    frame = splits.split_frame(data.load_dataset("brain_mri", synthetic_dir), seed=0)
    manifest = splits.write_manifest(frame, output_dir / "brain_mri" / "manifest.csv")
    train = pipeline.make_dataset(frame[frame.split == "train"], CLASS_NAMES, (48, 48), 16, training=True)
    val = pipeline.make_dataset(frame[frame.split == "val"], CLASS_NAMES, (48, 48), 16)
    model, base = models.build_classifier("mobilenet_v2", None, (48, 48), 2, alpha=0.35)
    recipe = training.Recipe(epochs_frozen=2, epochs_finetune=2, unfreeze_blocks=2, patience=10)
    metadata = {"backbone": "mobilenet_v2", "manifest_sha256": splits.manifest_hash(manifest)}
    result = training.train_two_phase(
        model,
        base,
        train,
        val,
        output_dir / "brain_mri",
        2,
        recipe,
        metadata=metadata,
        tracking_dir=output_dir,
    )
    return output_dir, result, metadata


def test_the_store_is_a_sqlite_file_in_output_dir(tracked_run, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    output_dir, _, _ = tracked_run
    assert (output_dir / "mlflow.db").is_file()
    assert tracking.tracking_uri(output_dir) == f"sqlite:///{output_dir.resolve() / 'mlflow.db'}"


def test_parameters_metrics_and_model_are_read_back(tracked_run):
    output_dir, result, metadata = tracked_run
    client = MlflowClient(tracking.tracking_uri(output_dir))
    run = client.get_run(result.mlflow_run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["backbone"] == "mobilenet_v2"
    assert run.data.params["manifest_sha256"] == metadata["manifest_sha256"]
    assert run.data.params["epochs_frozen"] == "2" and run.data.params["unfreeze_blocks"] == "2"
    val_loss = client.get_metric_history(result.mlflow_run_id, "val_loss")
    assert sorted(point.step for point in val_loss) == [1, 2, 3, 4], "every epoch of both phases"
    assert [round(p.value, 5) for p in sorted(val_loss, key=lambda p: p.step)] == [
        round(v, 5) for v in result.history["val_loss"]
    ]
    lr = {p.step: p.value for p in client.get_metric_history(result.mlflow_run_id, "lr")}
    assert lr[3] == pytest.approx(lr[1] / 10), "fine-tuning runs at a tenth of the learning rate"
    assert run.data.metrics["best_val_loss"] == pytest.approx(result.history["val_loss"].min())
    artifacts = {a.path for a in client.list_artifacts(result.mlflow_run_id, "model")}
    assert artifacts == {"model/model.keras", "model/model.json", "model/history.csv"}


def test_figures_and_later_metrics_join_the_same_run(tracked_run):
    output_dir, result, _ = tracked_run
    tracker = tracking.Tracker(output_dir, run_id=result.mlflow_run_id)
    figure, axis = plt.subplots()
    axis.plot([1, 2], [3, 4])
    tracker.log_figure(figure, "curve.png")
    tracker.log_metrics({"test_ROC-AUC (macro, one-vs-rest)": 0.75, "note": "not a number"})
    run = tracker.client.get_run(result.mlflow_run_id)
    assert run.data.metrics["test_ROC-AUC _macro_ one-vs-rest_"] == 0.75
    assert "note" not in run.data.metrics
    assert [a.path for a in tracker.client.list_artifacts(result.mlflow_run_id, "figures")] == [
        "figures/curve.png"
    ]
    table = tracking.runs_table(output_dir)
    assert result.mlflow_run_id in set(table["run_id"])


def test_the_tracking_uri_environment_variable_is_honoured(tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{elsewhere}")
    tracker = tracking.Tracker(tmp_path / "outputs", run_name="env")
    tracker.log_params({"a": 1})
    tracker.end()
    assert elsewhere.is_file() and not (tmp_path / "outputs" / "mlflow.db").exists()
    assert MlflowClient(f"sqlite:///{elsewhere}").get_run(tracker.run_id).data.params == {"a": "1"}
