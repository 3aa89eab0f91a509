"""The callbacks a phase needs beyond Keras's own (which :func:`medclass.fitting.fit_phase`
sets up): a warm-up and cosine schedule, and a checkpoint written whole or not at all.

First used in chapter "Brain MRI: training" (notebooks/brain_02_training.ipynb); the cosine
schedule in "Skin lesions: training".
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import h5py
import keras


class WarmupCosine(keras.callbacks.Callback):
    """The learning rate of a phase that starts at epoch ``first_epoch`` and lasts ``epochs``:
    a linear warm-up from ``peak / 20`` over its first epoch (fresh optimizer moments on newly
    unfrozen weights make large first steps), then a cosine decay towards 0 over the rest. Set
    before every batch from the epoch's number, so a resumed phase carries on where it was."""

    def __init__(self, peak: float, first_epoch: int, epochs: int):
        super().__init__()
        self.peak, self.first_epoch, self.epochs = float(peak), int(first_epoch), int(epochs)
        self._epoch = 0

    def rate(self, progress: float) -> float:
        """The rate ``progress`` epochs into the phase."""
        if progress < 1:
            return self.peak / 20 + (self.peak - self.peak / 20) * progress
        decay = (progress - 1) / max(self.epochs - 1, 1)
        return 0.5 * self.peak * (1 + math.cos(math.pi * min(decay, 1.0)))

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch - self.first_epoch

    def on_train_batch_begin(self, batch, logs=None):
        steps = self.params.get("steps") or 0
        progress = self._epoch + (batch / steps if steps else 0.0)
        self.model.optimizer.learning_rate.assign(self.rate(progress))

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))


class AtomicCheckpoint(keras.callbacks.ModelCheckpoint):
    """``ModelCheckpoint`` whose file appears whole or not at all.

    Keras writes the checkpoint in place, so a kill or a full disk during the write would leave
    a truncated best checkpoint that blocks every resume; this one writes beside it and renames
    the finished file over it (one step on every file system the book runs on).
    """

    def __init__(self, filepath: str | Path, **kwargs):
        self.target = Path(filepath)
        super().__init__(self.target.with_name("partial-" + self.target.name), **kwargs)

    def on_train_begin(self, logs=None):
        Path(self.filepath).unlink(missing_ok=True)  # left by a write that was cut short
        super().on_train_begin(logs)

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        if Path(self.filepath).exists():  # written this epoch
            Path(self.filepath).replace(self.target)


def save_weights_atomically(model: keras.Model, path: Path) -> None:
    """``model.save_weights(path)``, written beside ``path`` and renamed over it when whole."""
    partial = path.with_name("partial-" + path.name)
    model.save_weights(partial)
    partial.replace(path)


def readable_weights(path: Path) -> bool:
    try:
        with h5py.File(path, "r"):
            return True
    except OSError:
        return False


def load_weights(model: keras.Model, weights_path: Path) -> None:
    """Load a checkpoint; its optimizer state is not needed, so Keras's note about it is muted."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
        model.load_weights(weights_path)
