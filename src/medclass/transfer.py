"""Transfer learning compared with its alternatives on the same data and the same budget.

Defined in chapter "Transfer learning" (notebooks/concepts_03_transfer.ipynb).

Five ways to train one backbone for a new task, each for the same number of epochs:

- **random features, frozen**: a randomly initialised backbone, frozen; only the head learns.
  The control: what a network's architecture alone gives.
- **ImageNet features, frozen** (feature extraction): the pretrained backbone, frozen; only the
  head learns.
- **ImageNet, fine-tuned**: feature extraction for the first half of the epochs, then the top
  blocks trained too at a tenth of the learning rate, BatchNormalization kept in inference mode.
- **ImageNet, fine-tuned, BatchNorm training**: the same, but BatchNormalization layers update
  their statistics on the new data's small batches.
- **from scratch**: random initialisation, every layer trained, BatchNormalization in training mode.

In Keras 3 a BatchNormalization layer runs in training mode during ``fit`` exactly when it is
trainable; :func:`medclass.models.unfreeze_top_blocks` leaves it frozen, and the "BatchNorm
training" strategy sets it trainable.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import keras
import pandas as pd

from medclass import models

STRATEGIES = (
    "random features, frozen",
    "ImageNet features, frozen",
    "ImageNet, fine-tuned",
    "ImageNet, fine-tuned, BatchNorm training",
    "from scratch",
)


@dataclass
class Setup:
    """What every strategy shares: the backbone, its pretrained weights, input size and budget."""

    backbone: str
    weights: str
    image_size: tuple[int, int]
    alpha: float = 1.0
    epochs: int = 6
    learning_rate: float = 1e-3
    unfreeze_blocks: int = 4
    seed: int = 0


def _compile(model: keras.Model, learning_rate: float) -> None:
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="binary_crossentropy",
        metrics=["accuracy", keras.metrics.AUC(name="auc")],
    )


def train_strategy(strategy: str, setup: Setup, train_ds, val_ds) -> pd.DataFrame:
    """Train one strategy; its per-epoch history with the seconds it took."""
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy={strategy!r}; use one of {STRATEGIES}.")
    keras.utils.set_random_seed(setup.seed)
    pretrained = strategy.startswith("ImageNet")
    model, base = models.build_classifier(
        setup.backbone, setup.weights if pretrained else None, setup.image_size, 2, alpha=setup.alpha
    )
    base.trainable = strategy == "from scratch"
    started = time.perf_counter()
    _compile(model, setup.learning_rate)
    if "fine-tuned" not in strategy:
        history = model.fit(
            train_ds, validation_data=val_ds, epochs=setup.epochs, shuffle=False, verbose=0
        ).history
    else:
        first = setup.epochs // 2
        history = model.fit(train_ds, validation_data=val_ds, epochs=first, shuffle=False, verbose=0).history
        models.unfreeze_top_blocks(base, setup.unfreeze_blocks)
        if strategy.endswith("BatchNorm training"):
            for layer in base.layers:  # unfreeze_top_blocks keeps BatchNormalization frozen
                if isinstance(layer, keras.layers.BatchNormalization):
                    layer.trainable = True
        _compile(model, setup.learning_rate / 10)
        later = model.fit(
            train_ds,
            validation_data=val_ds,
            epochs=setup.epochs,
            initial_epoch=first,
            shuffle=False,
            verbose=0,
        ).history
        history = {key: history[key] + later[key] for key in history}
    table = pd.DataFrame(history)
    table.insert(0, "epoch", range(1, len(table) + 1))
    table.insert(0, "strategy", strategy)
    table.attrs["seconds"] = time.perf_counter() - started
    return table


def compare(setup: Setup, train_ds, val_ds, strategies=STRATEGIES) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train every strategy; return ``(summary, histories)``.

    The summary holds, per strategy, the last epoch's validation accuracy and ROC-AUC, the best
    validation accuracy, and the training time; the histories every epoch of every strategy.
    """
    histories, rows = [], []
    for strategy in strategies:
        history = train_strategy(strategy, setup, train_ds, val_ds)
        histories.append(history)
        last = history.iloc[-1]
        rows.append(
            {
                "strategy": strategy,
                "val accuracy (last epoch)": last["val_accuracy"],
                "val ROC-AUC (last epoch)": last["val_auc"],
                "best val accuracy": history["val_accuracy"].max(),
                "seconds": history.attrs["seconds"],
            }
        )
    return pd.DataFrame(rows).set_index("strategy"), pd.concat(histories, ignore_index=True)


def plot_curves(histories: pd.DataFrame, title: str = ""):
    """Validation accuracy and training loss per epoch, one line per strategy."""
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(11, 3.8), layout="constrained")
    for strategy, history in histories.groupby("strategy", sort=False):
        axes[0].plot(history["epoch"], history["val_accuracy"], marker="o", label=strategy)
        axes[1].plot(history["epoch"], history["loss"], marker="o", label=strategy)
    axes[0].set_ylabel("validation accuracy")
    axes[1].set_ylabel("training loss")
    axes[1].set_yscale("log")
    for axis in axes:
        axis.set_xlabel("epoch")
    axes[0].legend(fontsize=7)
    figure.suptitle(title)
    return figure
