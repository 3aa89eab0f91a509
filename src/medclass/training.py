"""Two-phase transfer learning: train the head on a frozen backbone, then fine-tune its top.

Defined in chapter "Brain MRI: training" (notebooks/brain_02_training.ipynb).
"""

from __future__ import annotations

import json
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from medclass.models import unfreeze_top


@dataclass
class TrainingResult:
    """What a training run leaves behind, and where."""

    model: keras.Model
    history: pd.DataFrame
    model_path: Path
    history_path: Path


def compile_for(model: keras.Model, num_classes: int, learning_rate: float) -> None:
    """Compile with Adam, the right loss for binary or multi-class output, and accuracy + AUC."""
    if num_classes == 2:
        loss, metrics = "binary_crossentropy", ["accuracy", keras.metrics.AUC(name="auc")]
    else:
        loss, metrics = "sparse_categorical_crossentropy", ["accuracy"]
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=loss, metrics=metrics)


def balanced_class_weight(labels: pd.Series, class_names: list[str]) -> dict[int, float]:
    """Weights inversely proportional to class frequency, as scikit-learn's "balanced"."""
    counts = labels.value_counts()
    return {
        index: len(labels) / (len(class_names) * counts.get(name, 1))
        for index, name in enumerate(class_names)
    }


def _callbacks(checkpoint: keras.callbacks.ModelCheckpoint, patience: int) -> list:
    # The learning rate drops after half the patience, so that a phase gets a chance at the
    # lower rate before early stopping ends it.
    return [
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience, restore_best_weights=True),
        keras.callbacks.ReduceLROnPlateau(
            monitor="val_loss", factor=0.3, patience=max(1, patience // 2), min_lr=1e-6
        ),
        checkpoint,
    ]


def _restore(model: keras.Model, weights_path: Path) -> None:
    """Load the best checkpoint; its optimizer state is not needed, so Keras's note about it is muted."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
        model.load_weights(weights_path)


def _history_frame(history: keras.callbacks.History, phase: str, first_epoch: int) -> pd.DataFrame:
    frame = pd.DataFrame(history.history)
    frame.insert(0, "phase", phase)
    frame.insert(0, "epoch", np.arange(first_epoch, first_epoch + len(frame)) + 1)
    return frame


def train_two_phase(
    model: keras.Model,
    backbone: keras.Model,
    train_ds,
    val_ds,
    run_dir: str | Path,
    num_classes: int,
    epochs_frozen: int,
    epochs_finetune: int,
    learning_rate: float,
    unfreeze_layers: int,
    finetune_lr_factor: float = 0.1,
    patience: int = 4,
    class_weight: dict[int, float] | None = None,
    metadata: dict | None = None,
) -> TrainingResult:
    """Phase 1 trains the head with ``backbone`` frozen; phase 2 unfreezes its top layers.

    Phase 2 uses ``learning_rate * finetune_lr_factor``. Both phases stop early and reduce the
    learning rate on validation loss; the best epoch of the whole run (lowest validation
    loss) is what is kept. ``model.keras``, ``history.csv`` and ``model.json`` in ``run_dir``
    are replaced only when the run finishes, so a failed run never overwrites a good one.
    """
    for name, value in (("epochs_frozen", epochs_frozen), ("epochs_finetune", epochs_finetune)):
        if value < 0:
            raise ValueError(f"{name}={value} must be 0 or more.")
    if epochs_frozen + epochs_finetune == 0:
        raise ValueError("epochs_frozen and epochs_finetune are both 0: nothing to train.")
    run_dir = Path(run_dir)
    work_dir = run_dir / "work"
    shutil.rmtree(work_dir, ignore_errors=True)
    work_dir.mkdir(parents=True)
    best_weights = work_dir / "best.weights.h5"
    # One checkpoint across both phases, so "best" means best of the whole run.
    checkpoint = keras.callbacks.ModelCheckpoint(
        best_weights, monitor="val_loss", save_best_only=True, save_weights_only=True
    )
    histories = []
    if epochs_frozen:
        backbone.trainable = False
        compile_for(model, num_classes, learning_rate)
        history = model.fit(
            train_ds,
            validation_data=val_ds,
            epochs=epochs_frozen,
            shuffle=False,  # tf.data shuffles
            callbacks=_callbacks(checkpoint, patience),
            class_weight=class_weight,
            verbose=2,
        )
        histories.append(_history_frame(history, "frozen", 0))
        _restore(model, best_weights)
    if epochs_finetune:
        unfreeze_top(backbone, unfreeze_layers)
        compile_for(model, num_classes, learning_rate * finetune_lr_factor)
        first_epoch = len(histories[0]) if histories else 0
        history = model.fit(
            train_ds,
            validation_data=val_ds,
            initial_epoch=first_epoch,
            epochs=first_epoch + epochs_finetune,
            shuffle=False,
            callbacks=_callbacks(checkpoint, patience),
            class_weight=class_weight,
            verbose=2,
        )
        histories.append(_history_frame(history, "fine-tune", first_epoch))
        _restore(model, best_weights)
    history = pd.concat(histories, ignore_index=True)
    history = history.rename(columns={"learning_rate": "lr"})

    model.save(work_dir / "model.keras")
    history.to_csv(work_dir / "history.csv", index=False)
    (work_dir / "model.json").write_text(json.dumps(metadata or {}, indent=2))
    for name in ("model.keras", "history.csv", "model.json"):
        (work_dir / name).replace(run_dir / name)
    shutil.rmtree(work_dir)
    return TrainingResult(model, history, run_dir / "model.keras", run_dir / "history.csv")


def load_model(run_dir: str | Path) -> tuple[keras.Model, dict]:
    """Load a trained model (``safe_mode=True``) and its JSON sidecar from ``run_dir``."""
    run_dir = Path(run_dir)
    model_path = run_dir / "model.keras"
    if not model_path.exists():
        raise FileNotFoundError(
            f"No trained model at {model_path}. Run the training notebook (brain_02_training) "
            "with the same output_dir first."
        )
    import medclass.models  # noqa: F401  (registers the custom preprocessing layer)

    model = keras.saving.load_model(model_path, safe_mode=True)
    sidecar = run_dir / "model.json"
    metadata = json.loads(sidecar.read_text()) if sidecar.exists() else {}
    return model, metadata
