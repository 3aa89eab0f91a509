"""Two-phase transfer learning: train the head on a frozen backbone, then fine-tune its top.

First used in chapter "Brain MRI: training" (notebooks/brain_02_training.ipynb); progressive
unfreezing, the focal loss and MLflow tracking in "Skin lesions: training".

:class:`Run` fits a recipe's phases in turn and exports the model; :func:`train_two_phase` is
that loop as one call. One phase's compile and fit is :func:`medclass.fitting.fit_phase` (the
chapter's cell); the recipe and what a phase sets on the model are in :mod:`medclass.recipe`,
the losses and class weights in :mod:`medclass.losses`, the schedule and the whole-or-nothing
checkpoint in :mod:`medclass.callbacks`.

A run survives interruption: each phase's epochs are backed up (``BackupAndRestore``) in
``<run_dir>/work``, finished phases are recorded there, and a new :class:`Run` with the same
model, data and recipe skips the phases done and resumes the one that stopped. Only a finished
run replaces ``model.keras``, ``history.csv`` and ``model.json``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import keras
import numpy as np
import pandas as pd

from medclass import files, losses, records
from medclass.callbacks import WarmupCosine, load_weights, readable_weights, save_weights_atomically
from medclass.fitting import fit_phase
from medclass.losses import example_weights, weighted_validation
from medclass.models import backbone_blocks
from medclass.recipe import Phase, Recipe, set_trainable, strategy_scope
from medclass.runtime import folder_lock
from medclass.tracking import Tracker

# The training chapters call these through ``training``; they live in medclass.losses.
LOSS_FOR_IMBALANCE, class_prior = losses.LOSS_FOR_IMBALANCE, losses.class_prior
balanced_class_weight = losses.balanced_class_weight
ARTIFACTS = ("model.keras", "history.csv", "model.json")


@dataclass
class TrainingResult:
    """What a training run leaves behind, and where."""

    model: keras.Model
    history: pd.DataFrame
    model_path: Path
    history_path: Path
    mlflow_run_id: str | None = None
    resumed_phases: list[str] = field(default_factory=list)


def extract_features(model: keras.Model, dataset) -> tuple[np.ndarray, np.ndarray]:
    """The pooled backbone features of every image of ``dataset``, and the labels, in order."""
    pooled = keras.Model(model.inputs, model.get_layer("pool").output)
    features, labels = [], []
    for images, batch_labels in dataset:
        features.append(np.asarray(pooled(images, training=False), dtype="float32"))
        labels.append(np.asarray(batch_labels))
    return np.concatenate(features), np.concatenate(labels)


def _head_of(model: keras.Model) -> keras.Model:
    """The dropout and output layers of ``model`` as a model on pooled features (shared weights)."""
    features = keras.Input(shape=model.get_layer("pool").output.shape[1:], name="features")
    outputs = model.layers[-1](model.get_layer("dropout")(features))
    return keras.Model(features, outputs, name="head")


def _cached_features(model, work_dir: Path, plain_train_ds, val_ds) -> dict[str, np.ndarray]:
    path = work_dir / "features.npz"
    if not path.exists():
        if plain_train_ds is None:
            raise ValueError(
                "cache_features=True needs plain_train_ds: the training split without shuffling "
                "or augmentation, from which the frozen backbone's features are computed once."
            )
        x_train, y_train = extract_features(model, plain_train_ds)
        x_val, y_val = extract_features(model, val_ds)
        np.savez(path.with_suffix(".partial.npz"), x_train=x_train, y_train=y_train, x_val=x_val, y_val=y_val)
        path.with_suffix(".partial.npz").replace(path)
    with np.load(path) as arrays:
        return dict(arrays)


# Words in model.json for the app, not settings of the run: a reinstalled medclass may have
# reworded them, so they neither stop a run from resuming nor go to MLflow as parameters.
APP_WORDS = ("class_definitions",)


def _settings(metadata: dict) -> dict:
    """``metadata`` without :data:`APP_WORDS`."""
    return {key: value for key, value in metadata.items() if key not in APP_WORDS}


def _fingerprint(model: keras.Model, num_classes: int, recipe: Recipe, metadata: dict) -> str:
    """What must match for an interrupted run to be resumed rather than restarted."""
    described = {"recipe": asdict(recipe), "metadata": _settings(metadata), "classes": num_classes}
    described["model"] = [model.name, model.count_params()]
    return hashlib.sha256(json.dumps(described, sort_keys=True, default=str).encode()).hexdigest()


def _read_history(path: Path, phase: str) -> pd.DataFrame:
    frame = pd.read_csv(path).drop_duplicates("epoch", keep="last")
    frame["epoch"] = frame["epoch"] + 1
    frame.insert(1, "phase", phase)
    return frame


_RUNS_HOLDING: dict[Path, Run] = {}  # run folder -> the Run of this process that holds its lock


class Run:
    """A resumable training run in ``run_dir``: fit its phases one by one, then :meth:`finish`.

    The lock on ``run_dir`` is taken here, so a second process training into the same folder
    is refused at once (:class:`medclass.runtime.FolderBusy`); a new ``Run`` of the same folder
    in this process (a notebook cell run again) takes it over. What a phase needs to resume is
    kept in ``run_dir / "work"``: the epoch backups, the phases done, the best checkpoint. A
    ``Run`` made again with the same model, data and recipe skips the phases done and resumes
    the one that was interrupted. Only :meth:`finish` writes ``model.keras``, ``history.csv``
    and ``model.json``. With ``tracking_dir`` (usually ``output_dir``) parameters, per-epoch
    metrics and the final model go to MLflow (see :mod:`medclass.tracking`); ``callbacks`` are
    added to every ``fit``.
    """

    def __init__(
        self,
        model: keras.Model,
        backbone: keras.Model,
        run_dir: str | Path,
        num_classes: int,
        recipe: Recipe,
        *,
        class_weight: dict[int, float] | None = None,
        metadata: dict | None = None,
        plain_train_ds=None,
        tracking_dir: str | Path | None = None,
        callbacks: list | None = None,
        batch_size: int = 32,
        verbose: int = 2,
    ):
        wanted = max(phase.unfreeze_blocks for phase in recipe.phases())
        available = len(backbone_blocks(backbone)) - 1 if wanted else 0  # the stem is not a block
        if wanted > available:  # found before phase 1 trains, not after
            raise ValueError(
                f"unfreeze_blocks={recipe.unfreeze_blocks}: {backbone.name} has {available} blocks; "
                f"use 0 to {available}."
            )
        self.metadata = dict(metadata or {})
        if "class_names" in self.metadata:  # the model.json this run will write must be readable
            records.check_model_info(self.metadata, "metadata")
        self.model, self.backbone, self.num_classes, self.recipe = model, backbone, num_classes, recipe
        self.class_weight, self.plain_train_ds, self.batch_size = class_weight, plain_train_ds, batch_size
        self.verbose = verbose  # Keras's: 2 logs a line per epoch, 0 nothing (the seed study's runs)
        self.callbacks = list(callbacks or [])
        self.run_dir, self.work_dir = Path(run_dir), Path(run_dir) / "work"
        self.histories: list[pd.DataFrame] = []
        self.failed: BaseException | None = None
        self.finished = False
        self._lock = contextlib.ExitStack()
        self._hold_the_folder()
        try:
            self._start(tracking_dir)
        except BaseException:
            self._let_go()
            raise

    def _hold_the_folder(self) -> None:
        key = self.run_dir.resolve()
        if key in _RUNS_HOLDING:  # the cell run again: the earlier Run of this folder stops here
            earlier = _RUNS_HOLDING[key]
            earlier._fail(
                RuntimeError(f"a new training.Run of {self.run_dir} took its folder over"), "KILLED"
            )
        self._lock.enter_context(
            folder_lock(self.run_dir / ".training.lock", wait=False, what=f"The run folder {self.run_dir}")
        )
        _RUNS_HOLDING[key] = self

    def _let_go(self) -> None:
        self._lock.close()
        if _RUNS_HOLDING.get(self.run_dir.resolve()) is self:
            del _RUNS_HOLDING[self.run_dir.resolve()]

    def _start(self, tracking_dir) -> None:
        self.state_path = self.work_dir / "state.json"
        fingerprint = _fingerprint(self.model, self.num_classes, self.recipe, self.metadata)
        state = json.loads(self.state_path.read_text()) if self.state_path.exists() else {}
        best = self.work_dir / "best.weights.h5"
        if state.get("fingerprint") == fingerprint and best.exists() and not readable_weights(best):
            print(  # written by a medclass before AtomicCheckpoint, or damaged on disk
                f"{best} is cut short or damaged; the phases it held cannot be resumed, so the run "
                "starts again from its first phase."
            )
            state = {}
        if state.get("fingerprint") != fingerprint:
            shutil.rmtree(self.work_dir, ignore_errors=True)
            self.work_dir.mkdir(parents=True)
            state = {"fingerprint": fingerprint, "done": [], "best_val_loss": None, "mlflow_run_id": None}
        self.state, self.resumed = state, list(state["done"])
        self.tracker = None
        if tracking_dir is not None:
            self.tracker = Tracker(
                tracking_dir,
                run_name=f"{self.run_dir.name}-{self.metadata.get('backbone', self.model.name)}",
                run_id=state["mlflow_run_id"],
            )
            if state["mlflow_run_id"] is not None:
                self.tracker.client.update_run(self.tracker.run_id, status="RUNNING")  # resumed
            else:
                # The recipe is logged flat.
                described = {key: value for key, value in _settings(self.metadata).items() if key != "recipe"}
                self.tracker.log_params({**asdict(self.recipe), **described, "num_classes": self.num_classes})
                self.tracker.set_tags({"dataset": self.run_dir.name, "data": self.metadata.get("data", "")})
            state["mlflow_run_id"] = self.tracker.run_id
        _save_state(self.state_path, state)
        self.best_weights = self.work_dir / "best.weights.h5"
        if self.resumed and self.best_weights.exists():
            load_weights(self.model, self.best_weights)

    @property
    def epoch(self) -> int:
        """Epochs trained so far, over all phases."""
        return int(self.histories[-1]["epoch"].max()) if self.histories else 0

    def fit(self, phase: Phase, train_ds, val_ds, fit=fit_phase) -> pd.DataFrame:
        """Train ``phase`` (the next of ``recipe.phases()``) with ``fit`` (the chapter's
        :func:`medclass.fitting.fit_phase`), or read it back if an earlier run finished it.
        ``fit`` compiles the model at the phase's learning rate, as Keras needs after trainable
        flags change, and keeps the best validation epoch so far. Returns its history."""
        self._check_going()
        phases = self.recipe.phases()
        if len(self.histories) >= len(phases) or phase != phases[len(self.histories)]:
            expected = phases[len(self.histories)].name if len(self.histories) < len(phases) else "none"
            raise ValueError(f"Phase {phase.name!r} is out of turn: the recipe's next phase is {expected}.")
        index, log_path = len(self.histories), self.work_dir / f"history-{len(self.histories)}.csv"
        if phase.name in self.state["done"]:
            self.histories.append(_read_history(log_path, phase.name))
            print(f"phase {phase.name}: finished by an earlier run, read back")
            return self.histories[-1]
        _check_trainable(self.backbone, phase)
        extra = [keras.callbacks.CSVLogger(log_path, append=True), *self.callbacks]
        if self.tracker is not None:
            extra.append(self.tracker.callback())
        try:
            backup = self.work_dir / f"backup-{index}"
            _usable_backup(backup)
            with strategy_scope(self.model):
                loss, metrics = self.recipe.loss_and_metrics(self.num_classes)
            shared = {  # what both ways of fitting pass to `fit`
                "recipe": self.recipe,
                "loss": loss,
                "metrics": metrics,
                "callbacks": extra,
                "best_so_far": self._best_so_far(log_path),
            }
            if phase.name == "frozen" and self.recipe.cache_features:
                self._fit_cached(fit, phase, val_ds, backup, shared)
            else:
                self._fit(fit, phase, train_ds, val_ds, backup, shared)
            if self.best_weights.exists():
                load_weights(self.model, self.best_weights)
            history = _read_history(log_path, phase.name)
            _check_converged(history, self.recipe)
        except BaseException as error:
            self._fail(error)
            raise
        self.histories.append(history)
        self.state["done"].append(phase.name)
        self.state["best_val_loss"] = float(pd.concat(self.histories)["val_loss"].min())
        _save_state(self.state_path, self.state)
        return history

    def _best_so_far(self, log_path: Path) -> float | None:
        """The lowest validation loss of the finished phases and of the epochs this phase logged
        before an interruption: a resumed phase's checkpoint must not replace a better epoch."""
        losses = [self.state["best_val_loss"]]
        # A run killed before its first epoch ended leaves the log empty.
        if log_path.exists() and log_path.stat().st_size > 0:
            losses.append(float(pd.read_csv(log_path)["val_loss"].min()))
        losses = [loss for loss in losses if loss is not None and np.isfinite(loss)]
        return min(losses) if losses else None

    def _fit(self, fit, phase: Phase, train_ds, val_ds, backup: Path, shared: dict) -> None:
        schedule = None
        if phase.unfreeze_blocks and self.recipe.finetune_schedule == "cosine":
            schedule = WarmupCosine(phase.learning_rate, self.epoch, phase.epochs)
        fit(
            self.model,
            phase,
            train_ds,
            validation_data=weighted_validation(val_ds, self.class_weight),
            best_path=self.best_weights,
            backup_dir=backup,
            first_epoch=self.epoch,
            schedule=schedule,
            class_weight=self.class_weight,
            shuffle=False,  # tf.data shuffles the training images itself
            verbose=self.verbose,
            **shared,
        )

    def _fit_cached(self, fit, phase: Phase, val_ds, backup: Path, shared: dict) -> None:
        """Phase 1 on cached features: the backbone runs once per image instead of once per
        epoch, and ``fit`` trains the head (which shares its layers with the model) on them."""
        features = _cached_features(self.model, self.work_dir, self.plain_train_ds, val_ds)
        with strategy_scope(self.model):
            head = _head_of(self.model)
        class_weight = self.class_weight
        val_weights = np.asarray(example_weights(features["y_val"], class_weight)) if class_weight else None
        head_weights = self.work_dir / "head.weights.h5"
        fit(
            head,
            phase,
            features["x_train"],
            features["y_train"],
            validation_data=(features["x_val"], features["y_val"], val_weights),
            best_path=head_weights,
            backup_dir=backup,
            class_weight=class_weight,
            batch_size=self.batch_size,
            verbose=self.verbose,
            **shared,
        )
        load_weights(head, head_weights)
        save_weights_atomically(self.model, self.best_weights)

    def _check_going(self) -> None:
        if self.finished:
            raise RuntimeError(
                f"This run has finished: its model is in {self.run_dir}. Make a new training.Run to "
                "train again."
            )
        if self.failed is not None:
            raise RuntimeError(
                f"This run stopped ({type(self.failed).__name__}: {self.failed}); make a new "
                "training.Run (run the cell again) to resume it where it stopped."
            )

    def _fail(self, error: BaseException, status: str | None = None) -> None:
        self.failed = error
        if self.tracker is not None:
            self.tracker.end(status or ("KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED"))
        self._let_go()

    def finish(self) -> TrainingResult:
        """Export the best weights' model, the history and ``model.json`` into ``run_dir`` (only
        now, so a run that failed earlier never replaced a good model), and let the folder go."""
        self._check_going()
        if len(self.histories) < len(self.recipe.phases()):
            raise ValueError(
                f"{len(self.histories)} of the recipe's {len(self.recipe.phases())} phases are fitted; "
                "fit the others before finish()."
            )
        run_dir, work_dir, tracker = self.run_dir, self.work_dir, self.tracker
        history = pd.concat(self.histories, ignore_index=True).rename(columns={"learning_rate": "lr"})
        metadata = {**self.metadata, "mlflow_run_id": tracker.run_id if tracker else None}
        try:
            self.model.save(work_dir / "model.keras")
            history.to_csv(work_dir / "history.csv", index=False)
            # The digest pairs the sidecar with its model: a kill between the renames below
            # leaves a pair that load_model refuses, never a new model named by an old sidecar.
            metadata["model_sha256"] = records.model_digest(work_dir / "model.keras")
            records.write_json(work_dir / "model.json", metadata)
            for name in ARTIFACTS:
                (work_dir / name).replace(run_dir / name)
        except OSError as error:
            self._fail(error)
            raise files.said_full(error, run_dir / "model.keras") from error
        except BaseException as error:
            self._fail(error)
            raise
        self.finished = True  # the model is exported; what follows only records it
        try:
            if tracker is not None:
                best = history.loc[history["val_loss"].idxmin()]
                tracker.log_metrics(
                    {f"best_{key}": best[key] for key in history.columns if key.startswith("val_")}
                )
                for name in ARTIFACTS:
                    tracker.log_artifact(run_dir / name, "model")
                tracker.end("FINISHED")
            shutil.rmtree(work_dir)
        except BaseException:
            if tracker is not None:
                tracker.end("FAILED")
            raise
        finally:
            self._let_go()
        return TrainingResult(
            self.model,
            history,
            run_dir / "model.keras",
            run_dir / "history.csv",
            metadata["mlflow_run_id"],
            self.resumed,
        )


def _check_trainable(backbone: keras.Model, phase: Phase) -> None:
    """The frozen phase trains the head alone; a fine-tuning phase trains backbone blocks too.
    It catches a backbone left wholly open or wholly frozen; it does not count the blocks."""
    trainable = len(backbone.trainable_weights)
    if phase.unfreeze_blocks == 0 and trainable:
        raise ValueError(
            f"Phase {phase.name!r} trains the head alone, but {backbone.name} has {trainable} trainable "
            "weights: set backbone.trainable = False (training.set_trainable) before fitting it."
        )
    if phase.unfreeze_blocks and not trainable:
        raise ValueError(
            f"Phase {phase.name!r} fine-tunes {phase.unfreeze_blocks} blocks, but {backbone.name} is "
            "frozen: unfreeze them (training.set_trainable) before fitting it."
        )


def train_two_phase(
    model: keras.Model,
    backbone: keras.Model,
    train_ds,
    val_ds,
    run_dir: str | Path,
    num_classes: int,
    recipe: Recipe,
    **run_options,
) -> TrainingResult:
    """Every phase of ``recipe`` in a resumable :class:`Run` (``run_options`` are its keyword
    options: ``class_weight``, ``metadata``, ``plain_train_ds``, ``tracking_dir``, ``callbacks``,
    ``batch_size``, ``verbose``): the backbone frozen while the head learns, then its top blocks fine-tuned
    at a lower learning rate (the training chapters write this loop out). Every phase stops
    early and reduces the learning rate on validation loss (weighted by ``class_weight`` like
    the training loss); one checkpoint across all phases keeps the weights of the best
    validation epoch of the whole run."""
    run = Run(model, backbone, run_dir, num_classes, recipe, **run_options)
    for phase in recipe.phases():
        set_trainable(backbone, phase)
        run.fit(phase, train_ds, val_ds)
    return run.finish()


def _readable(weights: Path, metadata: Path) -> bool:
    """Whether a backup's weights and its epoch record can both be read."""
    try:
        json.loads(metadata.read_text())
    except (OSError, ValueError):
        return False
    return readable_weights(weights)


def _usable_backup(backup: Path) -> None:
    """Make an epoch backup that a kill cut short harmless before ``BackupAndRestore`` reads it:
    fall back to the previous backup (``double_checkpoint``) or, without one, start the phase
    again from the best checkpoint, saying so."""
    latest = (backup / "latest.weights.h5", backup / "training_metadata.json")
    previous = tuple(path.with_name(path.name + ".bkp") for path in latest)
    if not latest[0].exists() or _readable(*latest):
        return
    if previous[0].exists() and _readable(*previous):
        for source, target in zip(previous, latest, strict=True):
            shutil.copyfile(source, target)
        print(f"{backup.name}: the last epoch's backup was cut short; resuming from the one before.")
        return
    shutil.rmtree(backup)
    print(f"{backup.name}: the epoch backup was cut short and has no predecessor; the phase starts again.")


class TrainingDiverged(FloatingPointError):
    """The loss became NaN or infinite; nothing was exported."""


def _check_converged(history: pd.DataFrame, recipe: Recipe) -> None:
    """Raise before anything is exported if a loss of ``history`` is not a finite number."""
    losses = history[[column for column in ("loss", "val_loss") if column in history]]
    broken = ~np.isfinite(losses.to_numpy(dtype="float64")).all(axis=1)
    if broken.any():
        row = history[broken].iloc[0]
        raise TrainingDiverged(
            f"Training diverged: the loss is {row.get('loss')} (validation {row.get('val_loss')}) at "
            f"epoch {int(row['epoch'])} of phase {row['phase']!r}. Nothing was exported; the model "
            f"already in the run folder is untouched. Lower the learning rate (learning_rate="
            f"{recipe.learning_rate}) and run the training again."
        )


def _save_state(path: Path, state: dict) -> None:
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(state, indent=2))
    partial.replace(path)
