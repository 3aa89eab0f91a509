"""One phase of transfer learning in Keras: compile at the phase's learning rate, then fit
with early stopping, the learning rate cut on a plateau and the best checkpoint.

First used in chapter "Brain MRI: training" (notebooks/brain_02_training.ipynb), whose cell
writes :func:`fit_phase` out; :class:`medclass.training.Run` calls it for every phase and adds
its own bookkeeping callbacks (the epoch log and MLflow).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import keras

from medclass.callbacks import AtomicCheckpoint
from medclass.recipe import Phase, Recipe, strategy_scope


def fit_phase(
    model: keras.Model,
    phase: Phase,
    x,
    y=None,
    *,
    validation_data,
    recipe: Recipe,
    loss,
    metrics: list,
    best_path: Path,
    backup_dir: Path,
    first_epoch: int = 0,
    best_so_far: float | None = None,
    schedule: keras.callbacks.Callback | None = None,
    callbacks: Sequence = (),
    **fit_options,
) -> keras.callbacks.History:
    """Compile ``model`` at ``phase``'s learning rate; fit it for ``phase``'s epochs."""
    with strategy_scope(model):  # the optimizer's variables live where the model's do
        model.compile(
            optimizer=keras.optimizers.AdamW(phase.learning_rate, weight_decay=recipe.weight_decay),
            loss=loss,
            metrics=metrics,
            jit_compile=recipe.jit_compile,
        )
    patience = recipe.patience
    return model.fit(
        x,
        y,
        validation_data=validation_data,
        initial_epoch=first_epoch,
        epochs=first_epoch + phase.epochs,
        callbacks=[
            keras.callbacks.TerminateOnNaN(),
            # Stop once the validation loss has not improved for `patience`
            # epochs, and go back to the weights of its best epoch.
            keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience, restore_best_weights=True),
            # Cut the rate after half the patience, so that the phase gets a
            # chance at the lower rate before it stops (a schedule replaces it).
            schedule
            or keras.callbacks.ReduceLROnPlateau(
                monitor="val_loss", factor=0.3, patience=max(1, patience // 2), min_lr=1e-6
            ),
            # The best validation epoch of the whole run so far: Keras's
            # ModelCheckpoint, its file written whole or not at all.
            AtomicCheckpoint(
                best_path,
                monitor="val_loss",
                save_best_only=True,
                save_weights_only=True,
                initial_value_threshold=best_so_far,
            ),
            # Every epoch backed up: an interrupted fit resumes where it stopped.
            keras.callbacks.BackupAndRestore(backup_dir, double_checkpoint=True),
            *callbacks,
        ],
        **fit_options,  # class_weight, shuffle, batch_size, verbose
    )
