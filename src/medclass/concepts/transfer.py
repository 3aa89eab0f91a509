"""Transfer learning compared with its alternatives on the same data and the same budget.

First used in chapter "Transfer learning" (notebooks/concepts_03_transfer.ipynb).

Five ways to train one backbone for a new task, each for the same number of epochs:

- **random features, frozen**: a randomly initialised backbone, frozen; only the head learns.
  The control: what a network's architecture alone gives. Its BatchNormalization statistics
  are first estimated on training images (:func:`medclass.models.calibrate_batch_norm`);
  without that its pooled features are nearly constant and the control cannot learn at all.
- **ImageNet features, frozen** (feature extraction): the pretrained backbone, frozen; only the
  head learns.
- **ImageNet, fine-tuned**: feature extraction for the first half of the epochs, then the top
  blocks trained too at a tenth of the learning rate, BatchNormalization kept in inference mode.
- **ImageNet, fine-tuned, BatchNorm training**: the same, but BatchNormalization layers update
  their statistics on the new data's small batches.
- **from scratch**: random initialisation, every layer trained, BatchNormalization in training
  mode with a moving-average momentum of 0.9 (PyTorch's default) instead of Keras's 0.99: the
  statistics used for validation then follow weights that change fast, within a few dozen
  steps instead of hundreds, which a budget of a few epochs does not have.

In Keras 3 a BatchNormalization layer runs in training mode during ``fit`` exactly when it is
trainable; :func:`medclass.models.unfreeze_top_blocks` leaves it frozen, and the "BatchNorm
training" strategy sets it trainable.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import keras
import numpy as np
import pandas as pd

from medclass import figures, models
from medclass.recipe import Phase

STRATEGIES = (
    "random features, frozen",
    "ImageNet features, frozen",
    "ImageNet, fine-tuned",
    "ImageNet, fine-tuned, BatchNorm training",
    "from scratch",
)


SCRATCH_MOMENTUM = 0.9


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


def strategy_phases(strategy: str, setup: Setup) -> list[Phase]:
    """The phases of ``strategy``: a fine-tuned one spends the first half of the epochs on the
    head alone, then unfreezes the top blocks at a tenth of the learning rate."""
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy={strategy!r}; use one of {STRATEGIES}.")
    if "fine-tuned" not in strategy:
        return [Phase(strategy, setup.epochs, setup.learning_rate, 0)]
    first = setup.epochs // 2
    return [
        Phase("frozen", first, setup.learning_rate, 0),
        Phase("fine-tune", setup.epochs - first, setup.learning_rate / 10, setup.unfreeze_blocks),
    ]


def train_strategy(strategy: str, setup: Setup, train_ds, val_ds) -> pd.DataFrame:
    """Train one strategy for ``setup.epochs``, without early stopping; its history."""
    keras.utils.set_random_seed(setup.seed)
    pretrained = strategy.startswith("ImageNet")
    weights = setup.weights if pretrained else None
    model, base = models.build_classifier(setup.backbone, weights, setup.image_size, 2, alpha=setup.alpha)
    started, history = time.perf_counter(), {}
    if strategy == "random features, frozen":  # BatchNorm statistics of these images
        models.calibrate_batch_norm(model, base, train_ds)
    for phase in strategy_phases(strategy, setup):
        if strategy == "from scratch":
            base.trainable = True  # every layer, BatchNormalization in training mode
            for norm in models.batch_norm_layers(base):
                norm.momentum = SCRATCH_MOMENTUM
        elif phase.unfreeze_blocks:  # the top blocks, BatchNormalization kept frozen
            models.unfreeze_top_blocks(base, phase.unfreeze_blocks)
        else:  # the head alone
            base.trainable = False
        if strategy.endswith("BatchNorm training") and phase.unfreeze_blocks:
            for norm in models.batch_norm_layers(base):
                norm.trainable = True  # now it updates its statistics on our batches
        model.compile(  # again after every change of trainable flags
            optimizer=keras.optimizers.AdamW(phase.learning_rate, weight_decay=1e-4),
            loss="binary_crossentropy",
            metrics=[
                keras.metrics.BinaryAccuracy(name="accuracy"),
                keras.metrics.AUC(name="auc"),
            ],
            jit_compile=False,  # plain execution; Keras's "auto" would compile with XLA
        )
        done = len(history.get("loss", []))
        fitted = model.fit(
            train_ds,
            validation_data=val_ds,
            initial_epoch=done,
            epochs=done + phase.epochs,
            shuffle=False,  # tf.data shuffles the training images itself
            verbose=0,
        )
        history = {key: history.get(key, []) + fitted.history[key] for key in fitted.history}
    table = pd.DataFrame(history)
    table.insert(0, "epoch", range(1, len(table) + 1))
    table.insert(0, "strategy", strategy)
    table.attrs["seconds"] = time.perf_counter() - started
    table.attrs["feature std"] = pooled_feature_std(model, val_ds)
    return table


def pooled_feature_std(model: keras.Model, dataset) -> float:
    """The standard deviation of the pooled backbone features over one batch of ``dataset``:
    near zero, the features are constant and a head on them can only learn the class prior."""
    images, _ = next(iter(dataset))
    pooled = keras.Model(model.input, model.get_layer("pool").output)
    return float(np.std(pooled(images, training=False)))


def compare(
    setup: Setup, train_ds, val_ds, strategies=STRATEGIES, train=train_strategy
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train every strategy; return ``(summary, histories)``.

    The summary holds, per strategy, the last epoch's validation accuracy and ROC-AUC, the best
    validation accuracy, the training loss of the first and last epochs (a strategy can fit its
    training images while validation stays flat), the spread of its pooled features on a
    validation batch (:func:`pooled_feature_std`), and the training time; the histories every
    epoch of every strategy. ``train`` is the chapter's :func:`train_strategy`.
    """
    histories, rows = [], []
    for strategy in strategies:
        history = train(strategy, setup, train_ds, val_ds)
        histories.append(history)
        last = history.iloc[-1]
        rows.append(
            {
                "strategy": strategy,
                "val accuracy (last epoch)": last["val_accuracy"],
                "val ROC-AUC (last epoch)": last["val_auc"],
                "best val accuracy": history["val_accuracy"].max(),
                "training loss, first epoch": history["loss"].iloc[0],
                "training loss, last epoch": last["loss"],
                "pooled feature std": history.attrs["feature std"],
                "seconds": history.attrs["seconds"],
            }
        )
    return pd.DataFrame(rows).set_index("strategy"), pd.concat(histories, ignore_index=True)


def plot_curves(histories: pd.DataFrame, title: str = ""):
    """Validation accuracy and training loss per epoch, one line per strategy."""

    figure, axes = figures.panels(2, height=3.6)
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
