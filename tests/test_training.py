"""Two-phase training: artefacts, history of both phases, and a failed run that loses nothing."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from medclass import data, models, pipeline, splits, training

CLASS_NAMES = ["Healthy", "Tumor"]


@pytest.fixture(scope="module")
def tiny_split(synthetic_dir):
    frame = splits.split_frame(data.load_dataset("brain_mri", synthetic_dir), seed=0)
    return frame


def datasets(frame, size=(48, 48)):
    train = pipeline.make_dataset(frame[frame.split == "train"], CLASS_NAMES, size, 16, training=True)
    val = pipeline.make_dataset(frame[frame.split == "val"], CLASS_NAMES, size, 16)
    return train, val


def test_two_phases_write_model_history_and_sidecar(tiny_split, tmp_path):
    model, base = models.build_classifier("mobilenet_v2", None, (48, 48), 2, alpha=0.35)
    train_ds, val_ds = datasets(tiny_split)
    result = training.train_two_phase(
        model,
        base,
        train_ds,
        val_ds,
        tmp_path,
        num_classes=2,
        epochs_frozen=2,
        epochs_finetune=2,
        learning_rate=1e-3,
        unfreeze_layers=10,
        metadata={"class_names": CLASS_NAMES},
    )
    history = pd.read_csv(result.history_path)
    assert history["phase"].tolist() == ["frozen", "frozen", "fine-tune", "fine-tune"]
    assert history["epoch"].tolist() == [1, 2, 3, 4]
    assert {"loss", "val_loss", "accuracy", "val_accuracy", "lr"} <= set(history.columns)
    assert history.loc[2, "lr"] == pytest.approx(1e-4)
    assert not (tmp_path / "work").exists()

    loaded, info = training.load_model(tmp_path)
    assert info == {"class_names": CLASS_NAMES}
    images = next(iter(val_ds))[0]
    np.testing.assert_allclose(loaded(images), result.model(images), atol=1e-5)


def test_a_failed_run_keeps_the_previous_model(tiny_split, tmp_path):
    (tmp_path / "model.keras").write_bytes(b"the good model")
    (tmp_path / "model.json").write_text(json.dumps({"good": True}))
    broken = tiny_split.copy()
    broken.loc[broken.split == "val", "path"] = "/nonexistent/image.jpg"
    model, base = models.build_classifier("mobilenet_v2", None, (48, 48), 2, alpha=0.35)
    train_ds, val_ds = datasets(broken)
    with pytest.raises(Exception, match="nonexistent"):
        training.train_two_phase(
            model,
            base,
            train_ds,
            val_ds,
            tmp_path,
            num_classes=2,
            epochs_frozen=1,
            epochs_finetune=0,
            learning_rate=1e-3,
            unfreeze_layers=0,
        )
    assert (tmp_path / "model.keras").read_bytes() == b"the good model"
    assert json.loads((tmp_path / "model.json").read_text()) == {"good": True}


def test_bad_training_parameters(tiny_split, tmp_path):
    model, base = models.build_classifier("mobilenet_v2", None, (48, 48), 2, alpha=0.35)
    train_ds, val_ds = datasets(tiny_split)
    common = dict(num_classes=2, learning_rate=1e-3, unfreeze_layers=0)
    with pytest.raises(ValueError, match="nothing to train"):
        training.train_two_phase(
            model, base, train_ds, val_ds, tmp_path, epochs_frozen=0, epochs_finetune=0, **common
        )
    with pytest.raises(ValueError, match="epochs_frozen=-1"):
        training.train_two_phase(
            model, base, train_ds, val_ds, tmp_path, epochs_frozen=-1, epochs_finetune=1, **common
        )


def test_missing_model_names_the_notebook(tmp_path):
    with pytest.raises(FileNotFoundError, match="brain_02_training"):
        training.load_model(tmp_path)


def test_balanced_class_weight():
    weights = training.balanced_class_weight(pd.Series(["Tumor"] * 75 + ["Healthy"] * 25), CLASS_NAMES)
    assert weights == pytest.approx({0: 2.0, 1: 2 / 3})
