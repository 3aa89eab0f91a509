"""Two-phase training: artefacts, history of both phases, and a failed run that loses nothing."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import keras
import numpy as np
import pandas as pd
import pytest

from medclass import (
    callbacks,
    data,
    evaluation,
    losses,
    models,
    pipeline,
    records,
    saved_models,
    splits,
    training,
)

CLASS_NAMES = ["Healthy", "Tumor"]


@pytest.fixture(scope="module")
def tiny_split(synthetic_dir):
    frame = splits.split_frame(data.load_dataset("brain_mri", synthetic_dir), seed=0)
    return frame


def datasets(frame, size=(48, 48)):
    train = pipeline.make_dataset(frame[frame.split == "train"], CLASS_NAMES, size, 16, training=True)
    val = pipeline.make_dataset(frame[frame.split == "val"], CLASS_NAMES, size, 16)
    return train, val


def small_model(num_classes=2):
    return models.build_classifier("mobilenet_v2", None, (48, 48), num_classes, alpha=0.35)


def test_two_phases_write_model_history_and_sidecar(tiny_split, tmp_path):
    model, base = small_model()
    train_ds, val_ds = datasets(tiny_split)
    recipe = training.Recipe(epochs_frozen=2, epochs_finetune=2, unfreeze_blocks=3)
    result = training.train_two_phase(
        model,
        base,
        train_ds,
        val_ds,
        tmp_path,
        num_classes=2,
        recipe=recipe,
        metadata={"class_names": CLASS_NAMES},
    )
    history = pd.read_csv(result.history_path)
    assert history["phase"].tolist() == ["frozen", "frozen", "fine-tune", "fine-tune"]
    assert history["epoch"].tolist() == [1, 2, 3, 4]
    assert {"loss", "val_loss", "accuracy", "val_accuracy", "lr"} <= set(history.columns)
    assert history.loc[2, "lr"] == pytest.approx(1e-4)
    assert not (tmp_path / "work").exists()
    assert isinstance(model.optimizer, keras.optimizers.AdamW)

    loaded, info = saved_models.load_model(tmp_path)
    digest = records.model_digest(tmp_path / "model.keras")
    assert info == {
        "class_names": CLASS_NAMES,
        "mlflow_run_id": None,
        "model_sha256": digest,
        "schema": records.SCHEMA,
    }
    images = next(iter(val_ds))[0]
    np.testing.assert_allclose(loaded(images), result.model(images), atol=1e-5)


def test_progressive_unfreezing_splits_the_fine_tuning_epochs():
    recipe = training.Recipe(epochs_frozen=3, epochs_finetune=5, unfreeze_blocks=[2, 4, 8])
    phases = recipe.phases()
    assert [(p.name, p.epochs, p.unfreeze_blocks) for p in phases] == [
        ("frozen", 3, 0),
        ("fine-tune 1", 1, 2),
        ("fine-tune 2", 2, 4),
        ("fine-tune 3", 2, 8),
    ]
    with pytest.raises(ValueError, match="must not decrease"):
        training.Recipe(epochs_finetune=4, unfreeze_blocks=[4, 2])
    with pytest.raises(ValueError, match="fewer than the 3 unfreezing stages"):
        training.Recipe(epochs_finetune=2, unfreeze_blocks=[1, 2, 3])


def test_the_cosine_schedule_warms_up_then_decays_to_zero():
    schedule = callbacks.WarmupCosine(1e-3, first_epoch=10, epochs=5)
    assert schedule.rate(0) == pytest.approx(5e-5)
    assert schedule.rate(0.5) == pytest.approx(5e-5 + 0.5 * 9.5e-4)
    assert schedule.rate(1) == pytest.approx(1e-3)
    assert schedule.rate(3) == pytest.approx(5e-4)
    assert schedule.rate(5) == pytest.approx(0, abs=1e-12)
    rates = [schedule.rate(t / 10) for t in range(51)]
    peak = rates.index(max(rates))
    assert rates[: peak + 1] == sorted(rates[: peak + 1]) and rates[peak:] == sorted(
        rates[peak:], reverse=True
    )
    with pytest.raises(ValueError, match="finetune_schedule='cosin'"):
        training.Recipe(finetune_schedule="cosin")


def test_a_cosine_fine_tuning_phase_follows_its_schedule(tiny_split, tmp_path):
    model, base = small_model()
    train_ds, val_ds = datasets(tiny_split)
    recipe = training.Recipe(
        epochs_frozen=1, epochs_finetune=3, unfreeze_blocks=3, finetune_schedule="cosine", patience=10
    )
    result = training.train_two_phase(model, base, train_ds, val_ds, tmp_path, num_classes=2, recipe=recipe)
    schedule = callbacks.WarmupCosine(1e-4, first_epoch=1, epochs=3)
    steps = len(train_ds)
    # The rate logged at an epoch's end is the one its last batch trained at.
    expected = [schedule.rate(epoch + (steps - 1) / steps) for epoch in range(3)]
    assert result.history["lr"].iloc[1:].tolist() == pytest.approx(expected, rel=1e-4)


@pytest.mark.slow
def test_multiclass_focal_loss_and_cached_features(tmp_path):
    """Seven classes, one-hot labels, focal loss, phase 1 on cached features, three stages."""
    from medclass.synthetic_skin import write_synthetic_ham10000

    frame = data.load_dataset("ham10000", write_synthetic_ham10000(tmp_path / "skin", n_lesions=70, seed=1))
    frame = splits.split_frame(frame, val_fraction=0.2, test_fraction=0.2, seed=0)
    names = list(data.dataset_info("ham10000").class_names)
    train = pipeline.make_dataset(frame[frame.split == "train"], names, (48, 48), 16, training=True)
    plain = pipeline.make_dataset(frame[frame.split == "train"], names, (48, 48), 16)
    val = pipeline.make_dataset(frame[frame.split == "val"], names, (48, 48), 16)
    model, base = small_model(num_classes=7)
    recipe = training.Recipe(
        epochs_frozen=3, epochs_finetune=2, unfreeze_blocks=[1, 3], loss="focal", cache_features=True
    )
    weights = training.balanced_class_weight(frame.loc[frame.split == "train", "label"], names)
    result = training.train_two_phase(
        model, base, train, val, tmp_path / "run", 7, recipe, class_weight=weights, plain_train_ds=plain
    )
    assert result.history["phase"].tolist() == ["frozen"] * 3 + ["fine-tune 1", "fine-tune 2"]
    assert isinstance(model.loss, keras.losses.CategoricalFocalCrossentropy)
    # The best epoch of the whole run is what was kept; validation loss is class-weighted too.
    y_true, probabilities = evaluation.predict_probabilities(model, val)
    sample_weight = np.array([weights[label] for label in y_true])
    val_loss = keras.losses.CategoricalFocalCrossentropy()(np.eye(7)[y_true], probabilities, sample_weight)
    assert float(val_loss) == pytest.approx(result.history["val_loss"].min(), rel=1e-3)


def test_cached_features_need_the_plain_training_data(tiny_split, tmp_path):
    model, base = small_model()
    train_ds, val_ds = datasets(tiny_split)
    recipe = training.Recipe(epochs_frozen=1, epochs_finetune=0, cache_features=True)
    with pytest.raises(ValueError, match="needs plain_train_ds"):
        training.train_two_phase(model, base, train_ds, val_ds, tmp_path, 2, recipe)


class Interrupt(keras.callbacks.Callback):
    """Stops training like a Ctrl-C or a lost Colab runtime, at the start of one epoch."""

    def __init__(self, at_epoch):
        super().__init__()
        self.at_epoch = at_epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.at_epoch:
            raise KeyboardInterrupt(f"interrupted at epoch {epoch}")


class EpochCounter(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.epochs = []

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append(epoch)


@pytest.mark.slow
@pytest.mark.case("kept", "a run interrupted mid-phase", "the next run resumes where it stopped")
def test_an_interrupted_run_resumes_where_it_stopped(tiny_split, tmp_path):
    train_ds, val_ds = datasets(tiny_split)
    recipe = training.Recipe(epochs_frozen=2, epochs_finetune=3, unfreeze_blocks=2, patience=10)
    model, base = small_model()
    first = EpochCounter()
    with pytest.raises(KeyboardInterrupt):
        training.train_two_phase(
            model,
            base,
            train_ds,
            val_ds,
            tmp_path,
            2,
            recipe,
            callbacks=[Interrupt(at_epoch=3), first],
            tracking_dir=tmp_path,
        )
    assert first.epochs == [0, 1, 2], "two frozen epochs and one fine-tuning epoch ran"
    assert not (tmp_path / "model.keras").exists(), "nothing is published by an unfinished run"
    state = json.loads((tmp_path / "work" / "state.json").read_text())
    assert state["done"] == ["frozen"]

    # A new session: the model is built again from scratch, the same call resumes.
    model, base = small_model()
    second = EpochCounter()
    result = training.train_two_phase(
        model, base, train_ds, val_ds, tmp_path, 2, recipe, callbacks=[second], tracking_dir=tmp_path
    )
    assert second.epochs == [3, 4], "only the epochs that had not run"
    assert result.resumed_phases == ["frozen"]
    assert result.history["epoch"].tolist() == [1, 2, 3, 4, 5]
    assert result.history["phase"].tolist() == ["frozen"] * 2 + ["fine-tune"] * 3
    assert result.mlflow_run_id == state["mlflow_run_id"], "the same MLflow run continues"
    from mlflow.tracking import MlflowClient

    from medclass.tracking import tracking_uri

    client = MlflowClient(tracking_uri(tmp_path))
    assert client.get_run(result.mlflow_run_id).info.status == "FINISHED"
    steps = sorted(p.step for p in client.get_metric_history(result.mlflow_run_id, "val_loss"))
    assert steps == [1, 2, 3, 4, 5], "each epoch logged once, before and after the interruption"


@pytest.mark.slow
def test_a_changed_recipe_starts_afresh(tiny_split, tmp_path):
    train_ds, val_ds = datasets(tiny_split)
    model, base = small_model()
    with pytest.raises(KeyboardInterrupt):
        training.train_two_phase(
            model,
            base,
            train_ds,
            val_ds,
            tmp_path,
            2,
            training.Recipe(epochs_frozen=2, epochs_finetune=1),
            callbacks=[Interrupt(at_epoch=2)],
        )
    counter = EpochCounter()
    result = training.train_two_phase(
        model,
        base,
        train_ds,
        val_ds,
        tmp_path,
        2,
        training.Recipe(epochs_frozen=2, epochs_finetune=1, learning_rate=5e-4),
        callbacks=[counter],
    )
    assert counter.epochs == [0, 1, 2] and result.resumed_phases == []


ONE_EPOCH = training.Recipe(epochs_frozen=1, epochs_finetune=0)


def write_good_export(folder):
    """An export from an earlier, good run, which no failed run may replace."""
    (folder / "model.keras").write_bytes(b"the good model")
    (folder / "model.json").write_text(json.dumps({"good": True}))


def assert_good_export_kept(folder):
    assert (folder / "model.keras").read_bytes() == b"the good model"
    assert json.loads((folder / "model.json").read_text()) == {"good": True}


@pytest.mark.case(
    "kept",
    "a run that fails part-way (a validation image missing)",
    "the previous model.keras and model.json kept",
)
def test_a_failed_run_keeps_the_previous_model(tiny_split, tmp_path):
    write_good_export(tmp_path)
    broken = tiny_split.copy()
    broken.loc[broken.split == "val", "path"] = "/nonexistent/image.jpg"
    model, base = small_model()
    train_ds, val_ds = datasets(broken)
    with pytest.raises(Exception, match="nonexistent"):
        training.train_two_phase(model, base, train_ds, val_ds, tmp_path, 2, ONE_EPOCH)
    assert_good_export_kept(tmp_path)


@pytest.mark.case(
    "kept",
    "a full disk while the trained model is exported",
    "the error reaches the caller, naming the file and what to free; the previous model.keras and "
    "model.json kept",
)
def test_a_full_disk_at_export_keeps_the_previous_model(tiny_split, tmp_path, monkeypatch):
    import errno

    write_good_export(tmp_path)

    def no_space(self, path, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(keras.Model, "save", no_space)
    model, base = small_model()
    train_ds, val_ds = datasets(tiny_split)
    with pytest.raises(OSError, match="No space left.*model.keras could not be written; free space under"):
        training.train_two_phase(model, base, train_ds, val_ds, tmp_path, 2, ONE_EPOCH)
    assert_good_export_kept(tmp_path)


@pytest.mark.case(
    1,
    "a run whose loss turns NaN (learning_rate=1e30) over a good export",
    "training stops with TrainingDiverged ('Lower the learning rate'); model.keras, model.json kept, no "
    "history.csv written",
)
def test_a_diverging_run_raises_and_keeps_the_previous_model(tiny_split, tmp_path):
    write_good_export(tmp_path)
    model, base = small_model()
    train_ds, val_ds = datasets(tiny_split)
    recipe = training.Recipe(epochs_frozen=2, epochs_finetune=1, learning_rate=1e30)
    with pytest.raises(training.TrainingDiverged, match="Lower the learning rate"):
        training.train_two_phase(model, base, train_ds, val_ds, tmp_path, 2, recipe)
    assert_good_export_kept(tmp_path)
    assert not (tmp_path / "history.csv").exists()


@pytest.mark.slow
@pytest.mark.parametrize("predecessor", [False, True], ids=["first-backup", "with-predecessor"])
@pytest.mark.case(
    2,
    "a kill while the per-epoch backup is written (truncated latest.weights.h5), with and without an "
    "earlier backup",
    "the next run resumes from the backup before it, or restarts the phase",
)
def test_a_backup_cut_short_by_a_kill_does_not_block_the_next_run(tiny_split, tmp_path, predecessor):
    train_ds, val_ds = datasets(tiny_split)
    recipe = training.Recipe(epochs_frozen=1, epochs_finetune=3, unfreeze_blocks=2, patience=10)
    stop = 3 if predecessor else 2  # fine-tuning backs up after epochs 1 (and 2)
    model, base = small_model()
    with pytest.raises(KeyboardInterrupt):
        training.train_two_phase(
            model, base, train_ds, val_ds, tmp_path, 2, recipe, callbacks=[Interrupt(at_epoch=stop)]
        )
    latest = tmp_path / "work" / "backup-1" / "latest.weights.h5"
    latest.write_bytes(latest.read_bytes()[:1000])  # a kill while the backup was written
    model, base = small_model()
    counter = EpochCounter()
    result = training.train_two_phase(model, base, train_ds, val_ds, tmp_path, 2, recipe, callbacks=[counter])
    # With a predecessor the epoch before the cut-short one resumes; without, the phase restarts.
    assert counter.epochs == ([2, 3] if predecessor else [1, 2, 3])
    assert result.history["epoch"].tolist()[-1] == 4


def cut_short_at_first_save(monkeypatch, marker="best"):
    """Make the next ``save_weights`` of a file named with ``marker`` end like a kill mid-write:
    a truncated file, then KeyboardInterrupt."""
    original = keras.Model.save_weights

    def save_then_die(self, path, *args, **kwargs):
        original(self, path, *args, **kwargs)
        if marker in str(path):
            Path(path).write_bytes(Path(path).read_bytes()[:1000])
            monkeypatch.setattr(keras.Model, "save_weights", original)
            raise KeyboardInterrupt("killed while the checkpoint was written")

    monkeypatch.setattr(keras.Model, "save_weights", save_then_die)


@pytest.mark.slow
@pytest.mark.case(
    "32.1",
    "a kill while the best checkpoint (work/best.weights.h5) is written",
    "the checkpoint is written beside it and renamed when whole: the next run resumes",
)
def test_a_kill_while_the_best_checkpoint_is_written_does_not_block_the_next_run(
    tiny_split, tmp_path, monkeypatch
):
    train_ds, val_ds = datasets(tiny_split)
    recipe = training.Recipe(epochs_frozen=1, epochs_finetune=2, unfreeze_blocks=2, patience=10)
    model, base = small_model()
    with pytest.raises(KeyboardInterrupt):
        training.train_two_phase(
            model, base, train_ds, val_ds, tmp_path, 2, recipe, callbacks=[Interrupt(at_epoch=1)]
        )
    state_path = tmp_path / "work" / "state.json"
    state = json.loads(state_path.read_text())
    state["best_val_loss"] = None  # so that fine-tuning's first epoch certainly checkpoints
    state_path.write_text(json.dumps(state))
    cut_short_at_first_save(monkeypatch)
    model, base = small_model()
    with pytest.raises(KeyboardInterrupt, match="killed while the checkpoint"):
        training.train_two_phase(model, base, train_ds, val_ds, tmp_path, 2, recipe)
    model, base = small_model()
    result = training.train_two_phase(model, base, train_ds, val_ds, tmp_path, 2, recipe)
    assert result.resumed_phases == ["frozen"]
    assert result.history["epoch"].tolist() == [1, 2, 3]


@pytest.mark.slow
@pytest.mark.case(
    "32.1",
    "a best checkpoint cut short by an older medclass, with phases recorded as done",
    "said, and the run starts again from its first phase (no OSError)",
)
def test_a_damaged_best_checkpoint_restarts_the_run(tiny_split, tmp_path, capsys):
    train_ds, val_ds = datasets(tiny_split)
    recipe = training.Recipe(epochs_frozen=1, epochs_finetune=1, unfreeze_blocks=2, patience=10)
    model, base = small_model()
    with pytest.raises(KeyboardInterrupt):
        training.train_two_phase(
            model, base, train_ds, val_ds, tmp_path, 2, recipe, callbacks=[Interrupt(at_epoch=1)]
        )
    best = tmp_path / "work" / "best.weights.h5"
    best.write_bytes(best.read_bytes()[:1000])
    model, base = small_model()
    counter = EpochCounter()
    result = training.train_two_phase(model, base, train_ds, val_ds, tmp_path, 2, recipe, callbacks=[counter])
    assert "cut short or damaged" in capsys.readouterr().out
    assert counter.epochs == [0, 1] and result.resumed_phases == []


@pytest.mark.case(
    "32.1",
    "a kill between the renames of model.keras and model.json (a new model beside the old sidecar)",
    "load_model refuses the pair (the sidecar records its model's digest) and says to train again",
)
def test_a_sidecar_left_from_another_model_is_refused(tiny_split, tmp_path, monkeypatch):
    train_ds, val_ds = datasets(tiny_split)
    metadata = {"class_names": CLASS_NAMES}
    model, base = small_model()
    training.train_two_phase(model, base, train_ds, val_ds, tmp_path, 2, ONE_EPOCH, metadata=metadata)
    original = Path.replace

    def die_at_the_sidecar(self, target):
        if Path(target) == tmp_path / "model.json":  # the export's last rename, not work/'s
            raise KeyboardInterrupt("killed between the renames")
        return original(self, target)

    monkeypatch.setattr(Path, "replace", die_at_the_sidecar)
    model, base = small_model()
    other = training.Recipe(epochs_frozen=1, epochs_finetune=0, learning_rate=5e-4)  # another model
    with pytest.raises(KeyboardInterrupt):
        training.train_two_phase(model, base, train_ds, val_ds, tmp_path, 2, other, metadata=metadata)
    monkeypatch.setattr(Path, "replace", original)
    with pytest.raises(records.RecordError, match="another model.keras .* Run the training chapter"):
        saved_models.load_model(tmp_path)


@pytest.mark.case(6, "unfreeze_blocks: 99", "refused before phase 1 trains, naming the 17 blocks there are")
def test_too_many_blocks_to_unfreeze_fail_before_training(tiny_split, tmp_path):
    model, base = small_model()
    train_ds, val_ds = datasets(tiny_split)
    counter = EpochCounter()
    recipe = training.Recipe(epochs_frozen=1, epochs_finetune=1, unfreeze_blocks=99)
    with pytest.raises(ValueError, match="unfreeze_blocks=99: .* has 17 blocks; use 0 to 17"):
        training.train_two_phase(model, base, train_ds, val_ds, tmp_path, 2, recipe, callbacks=[counter])
    assert counter.epochs == [] and not (tmp_path / "work").exists()


@pytest.mark.slow
@pytest.mark.case(
    2,
    "a kill while the backup's epoch record is written (training_metadata.json cut short)",
    "the next run resumes from the backup before the broken one",
)
def test_a_cut_short_backup_record_does_not_block_the_next_run(tiny_split, tmp_path):
    """Keras reads the epoch record (training_metadata.json) without catching a broken one."""
    train_ds, val_ds = datasets(tiny_split)
    recipe = training.Recipe(epochs_frozen=1, epochs_finetune=3, unfreeze_blocks=2, patience=10)
    model, base = small_model()
    with pytest.raises(KeyboardInterrupt):
        training.train_two_phase(
            model, base, train_ds, val_ds, tmp_path, 2, recipe, callbacks=[Interrupt(at_epoch=3)]
        )
    (tmp_path / "work" / "backup-1" / "training_metadata.json").write_text('{"epoch": ')
    model, base = small_model()
    counter = EpochCounter()
    training.train_two_phase(model, base, train_ds, val_ds, tmp_path, 2, recipe, callbacks=[counter])
    assert counter.epochs == [2, 3], "resumed from the backup before the broken one"


@pytest.mark.case(
    6, "a recipe with nothing to train, negative epochs or an unknown loss", "refused when the recipe is made"
)
def test_bad_training_parameters():
    with pytest.raises(ValueError, match="nothing to train"):
        training.Recipe(epochs_frozen=0, epochs_finetune=0)
    with pytest.raises(ValueError, match="epochs_frozen=-1"):
        training.Recipe(epochs_frozen=-1, epochs_finetune=1)
    with pytest.raises(ValueError, match="loss='dice'"):
        training.Recipe(loss="dice")


def test_missing_model_names_the_notebook(tmp_path):
    with pytest.raises(FileNotFoundError, match="brain_02_training"):
        saved_models.load_model(tmp_path)


def test_balanced_class_weight():
    weights = training.balanced_class_weight(pd.Series(["Tumor"] * 75 + ["Healthy"] * 25), CLASS_NAMES)
    assert weights == pytest.approx({0: 2.0, 1: 2 / 3})


def test_the_phases_one_by_one_as_the_training_chapters_write_them(tiny_split, tmp_path):
    """freeze → fit → unfreeze → fit → finish, with the mistakes a reader can make refused by
    name, and a cell run again in the same process after an interruption resuming."""
    train_ds, val_ds = datasets(tiny_split)
    recipe = training.Recipe(epochs_frozen=1, epochs_finetune=2, unfreeze_blocks=2, patience=10)
    frozen, fine_tune = recipe.phases()
    model, base = small_model()
    run = training.Run(model, base, tmp_path, 2, recipe, callbacks=[Interrupt(at_epoch=2)])
    base.trainable = True  # a reader's slip: the whole backbone open in the frozen phase
    with pytest.raises(ValueError, match="trains the head alone, but .* trainable weights"):
        run.fit(frozen, train_ds, val_ds)
    with pytest.raises(ValueError, match="'fine-tune' is out of turn: the recipe's next phase is frozen"):
        run.fit(fine_tune, train_ds, val_ds)
    with pytest.raises(ValueError, match="0 of the recipe's 2 phases are fitted"):
        run.finish()
    base.trainable = False
    assert run.fit(frozen, train_ds, val_ds)["epoch"].tolist() == [1]
    with pytest.raises(ValueError, match="fine-tunes 2 blocks, but .* is frozen"):
        run.fit(fine_tune, train_ds, val_ds)
    models.unfreeze_top_blocks(base, fine_tune.unfreeze_blocks)
    with pytest.raises(KeyboardInterrupt):
        run.fit(fine_tune, train_ds, val_ds)  # interrupted at its second epoch
    with pytest.raises(RuntimeError, match="make a new training.Run"):
        run.fit(fine_tune, train_ds, val_ds)
    assert not (tmp_path / "model.keras").exists()

    # The cell run again, twice: the same model object, a new Run that takes the folder over.
    stale = training.Run(model, base, tmp_path, 2, recipe)
    counter = EpochCounter()
    again = training.Run(model, base, tmp_path, 2, recipe, callbacks=[counter])
    with pytest.raises(RuntimeError, match="took its folder over"):
        stale.fit(frozen, train_ds, val_ds)
    for phase in recipe.phases():
        training.set_trainable(base, phase)
        again.fit(phase, train_ds, val_ds)
    result = again.finish()
    assert counter.epochs == [2], "the frozen phase read back, fine-tuning resumed at its second epoch"
    assert result.resumed_phases == ["frozen"]
    assert result.history["phase"].tolist() == ["frozen", "fine-tune", "fine-tune"]
    assert (tmp_path / "model.keras").exists() and not (tmp_path / "work").exists()
    with pytest.raises(RuntimeError, match="has finished"):
        again.finish()


def test_the_logit_adjusted_loss_is_crossentropy_on_the_logits_plus_the_log_prior():
    prior = [0.7, 0.2, 0.1]
    logits = np.array([[2.0, 0.5, -1.0], [0.0, 1.0, 0.3]], dtype="float32")
    probabilities = keras.ops.softmax(logits)
    labels = np.eye(3, dtype="float32")[[1, 2]]
    loss = losses.LogitAdjustedCrossentropy(prior)(labels, probabilities)
    adjusted = logits + np.log(prior)
    expected = -np.mean(np.sum(labels * (adjusted - np.log(np.exp(adjusted).sum(1, keepdims=True))), 1))
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    # A model that outputs the prior itself is not rewarded for it: the loss pushes it to uniform.
    uniform = losses.LogitAdjustedCrossentropy(prior)(labels, np.full((2, 3), 1 / 3, "float32"))
    assert float(uniform) < float(losses.LogitAdjustedCrossentropy(prior)(labels, np.tile(prior, (2, 1))))
    assert training.class_prior(pd.Series(["a", "a", "b"]), ["a", "b", "c"]) == pytest.approx(
        [0.5, 0.25, 0.25]
    )
    with pytest.raises(ValueError, match="needs class_prior"):
        training.Recipe(loss="logit_adjusted")
    with pytest.raises(ValueError, match="positive share"):
        losses.LogitAdjustedCrossentropy([1.0, 0.0])
    restored = keras.losses.deserialize(keras.losses.serialize(losses.LogitAdjustedCrossentropy(prior)))
    assert restored.prior == prior


def test_a_resumed_phase_keeps_the_best_epoch_it_logged_before_the_interruption(tmp_path):
    """The checkpoint threshold of a resumed phase is the lowest validation loss so far,
    the epochs the interrupted phase already logged included: a worse epoch after the resume
    must not replace the best checkpoint."""
    log = tmp_path / "history-0.csv"
    log.write_text("epoch,loss,val_loss\n0,0.9,0.50\n1,0.7,0.30\n2,0.6,0.40\n")
    run = SimpleNamespace(state={"best_val_loss": None})
    assert training.Run._best_so_far(run, log) == pytest.approx(0.30)
    run.state["best_val_loss"] = 0.25  # an earlier phase did better
    assert training.Run._best_so_far(run, log) == pytest.approx(0.25)
    fresh = SimpleNamespace(state={"best_val_loss": None})
    assert training.Run._best_so_far(fresh, tmp_path / "none.csv") is None
