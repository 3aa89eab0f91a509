"""What a chapter needs from the chapters before it, made here when it is missing.

First used in chapter "Brain MRI: training" (notebooks/brain_02_training.ipynb).

Each badge opens a chapter in a fresh runtime: the training chapter finds no split there, the
evaluation chapter no model. :func:`split_for` and :func:`model_for` return what ``output_dir``
holds, or make it with the library calls the earlier chapter makes (the data chapter's split; the
training chapter's model, trained with the chapter's own parameters) and say so in one line. A
split made here is byte for byte the data chapter's (``tests/test_prerequisites.py``).

Used by the training and evaluation chapters of both case studies.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict
from pathlib import Path

from medclass import (
    augment,
    case_studies,
    data,
    hardware,
    losses,
    models,
    pipeline,
    saved_models,
    splits,
    training,
)
from medclass.recipe import Recipe
from medclass.runtime import seed_everything


def split_for(dataset: str, run_dir, *, data_dir, synthetic, seed, max_images, **split_settings) -> Path:
    """The manifest in ``run_dir``; when there is none, the data chapter's split made and written.
    ``split_settings`` are the case study's own (the brain's ``br35h_in_training`` and
    ``lgg_in_training``; none for the skin)."""
    case = case_studies.for_dataset(dataset)
    if set(split_settings) != set(case.split_settings):
        raise TypeError(
            f"split_for({dataset!r}) takes the split settings {list(case.split_settings)}; "
            f"it was given {sorted(split_settings)}."
        )
    manifest = Path(run_dir) / "manifest.csv"
    chosen = {name: split_settings[name] for name in case.split_settings}
    wanted = {"synthetic": bool(synthetic), "seed": seed, "max_images": max_images, **chosen}
    if manifest.exists():
        _check_made_as_asked(manifest, case, wanted)
        return manifest
    frame = case.make_split(data_dir, synthetic, seed=seed, max_images=max_images, **chosen)
    splits.write_manifest(frame, manifest)
    print(
        f"No split in {Path(run_dir)}: made it as {case.chapter('data')} does "
        f"({len(frame)} images, seed {seed}) and wrote {manifest}."
    )
    return manifest


def _check_made_as_asked(manifest: Path, case: case_studies.CaseStudy, wanted: dict) -> None:
    """Refuse a manifest in ``run_dir`` made with other settings than the chapter's: reusing it
    would train or evaluate on another split than the parameters say."""
    made = splits.read_manifest(manifest).attrs
    recorded = {"synthetic": made.get("synthetic"), **(made.get("settings") or {})}
    if made.get("settings") is None:
        print(f"{manifest} does not record the settings it was made with (an older medclass); used as it is.")
        return
    differ = {key: (recorded.get(key), value) for key, value in wanted.items() if recorded.get(key) != value}
    if differ:
        described = ", ".join(
            f"{key}={made!r} (this chapter: {asked!r})" for key, (made, asked) in differ.items()
        )
        raise ValueError(
            f"The split in {manifest} was made with {described}. Run {case.chapter('data')} with this "
            "chapter's parameters to make it again, or give this chapter another output_dir."
        )


def model_for(dataset: str, run_dir, settings: dict):
    """The model in ``run_dir`` and its ``model.json``; when there is none, the training chapter's
    model trained with ``settings`` (the chapter's parameters), as that chapter trains it."""
    run_dir = Path(run_dir)
    if not (run_dir / "model.keras").exists():
        chapter = case_studies.for_dataset(dataset).chapter("training")
        print(
            f"No model in {run_dir}: training one as {chapter} does, with this "
            f"chapter's parameters ({settings['epochs_frozen']} + {settings['epochs_finetune']} epochs)."
        )
        train(dataset, run_dir, settings)
    return saved_models.load_model(run_dir)


def seed_models(dataset: str, run_dir, settings: dict, seeds) -> dict[int, tuple]:
    """The recipe's models trained again with each of ``seeds``, for the seed study: seed N's
    model lives in ``run_dir / "seeds" / "seed_N"``, trained on the split of ``run_dir`` (its
    manifest and sidecar are copied there). A seed with no model there, with one trained on
    another split, or with one older than ``run_dir``'s own model (trained for an earlier run;
    sidecars written before model.json recorded the recipe cannot say which) is trained as the
    training chapter trains it; the old model stays until the new one is saved. Returns
    ``{seed: (model, model.json)}``."""
    manifest = Path(run_dir) / "manifest.csv"
    models_by_seed = {}
    for seed in seeds:
        seed_dir = Path(run_dir) / "seeds" / f"seed_{seed}"
        seed_dir.mkdir(parents=True, exist_ok=True)
        for part in (manifest, manifest.with_suffix(".json")):  # the split and its sidecar
            shutil.copyfile(part, seed_dir / part.name)
        seed_settings = {**settings, "seed": seed}
        seed_everything(seed)
        model, info = model_for(dataset, seed_dir, seed_settings)
        older = (seed_dir / "model.keras").stat().st_mtime < (Path(run_dir) / "model.keras").stat().st_mtime
        if info.get("manifest_sha256") != splits.manifest_hash(manifest) or older:
            why = "on another split" if not older else "before the model of this run, maybe to another recipe"
            print(f"The model of seed {seed} was trained {why}: training it again (no log per epoch).")
            seed_everything(seed)
            train(dataset, seed_dir, seed_settings, verbose=0)
            model, info = saved_models.load_model(seed_dir)
        models_by_seed[seed] = (model, info)
    return models_by_seed


def recipe_for(settings: dict, labels, class_names: list[str], jit_compile: bool) -> Recipe:
    """The training chapter's :class:`medclass.recipe.Recipe` from its parameters."""
    return Recipe(
        epochs_frozen=settings["epochs_frozen"],
        epochs_finetune=settings["epochs_finetune"],
        learning_rate=settings["learning_rate"],
        unfreeze_blocks=settings["unfreeze_blocks"],
        loss=losses.LOSS_FOR_IMBALANCE[settings["imbalance"]],
        class_prior=losses.class_prior(labels, class_names)
        if settings["imbalance"] == "logit_adjusted"
        else None,
        cache_features=settings["cache_features"],
        jit_compile=jit_compile,
        finetune_schedule=settings.get("finetune_schedule", "plateau"),
    )


def model_metadata(
    settings: dict, class_names, size, synthetic: bool, case, manifest: Path, recipe: Recipe
) -> dict:
    """What ``model.json`` records about a training run, written here alone: the dataset, its
    classes with what each means and which count towards the app's risk score, the model's
    input, the recipe, and the split (the manifest's SHA-256)."""
    info = data.dataset_info(case.dataset)
    words = info.class_definitions
    metadata = {
        "dataset": case.dataset,
        "class_names": list(class_names),
        "class_definitions": {name: words[name] for name in class_names if name in words},
        "risk_classes": [name for name in class_names if name in info.risk_classes],
        "image_size": list(size),
        "threshold": case.threshold,
        "backbone": settings["backbone"],
        "alpha": settings["alpha"],
        "weights": settings["weights"],
        "data": case.synthetic_kind if synthetic else "real data",
        "augmentation": settings["augmentation"],
        "recipe": asdict(recipe),
    }
    metadata |= {name: settings[name] for name in case.recorded_settings}
    return metadata | {"manifest_sha256": splits.manifest_hash(manifest)}


def train(dataset: str, run_dir: Path, settings: dict, verbose: int = 2) -> training.TrainingResult:
    """The training chapter's cells without their figures and tables: datasets, model, class
    weights, recipe, two phases, and the metadata ``model.json`` records. ``verbose`` is Keras's
    (0: no line per epoch)."""
    accelerator = hardware.configure()
    manifest = run_dir / "manifest.csv"
    frame = splits.read_manifest(manifest)
    case = case_studies.for_dataset(dataset)
    class_names = list(data.dataset_info(dataset).class_names)
    size = models.image_size_for(settings["backbone"], settings["image_size"])
    batch_size, seed = settings["batch_size"], settings["seed"]
    train_frame = frame[frame.split == "train"]
    policy = augment.make_augmentation(settings["augmentation"], seed, num_classes=len(class_names))
    train_ds = pipeline.make_dataset(
        train_frame, class_names, size, batch_size, training=True, augment=policy, seed=seed
    )
    plain_train_ds = pipeline.make_dataset(train_frame, class_names, size, batch_size)
    val_ds = pipeline.make_dataset(frame[frame.split == "val"], class_names, size, batch_size)
    with accelerator.strategy.scope():
        model, base = models.build_classifier(
            settings["backbone"],
            settings["weights"],
            size,
            num_classes=len(class_names),
            alpha=settings["alpha"],
            **{name: settings[name] for name in case.builder_settings},
        )
    class_weight = None
    if settings["imbalance"] == "class_weight":
        class_weight = losses.balanced_class_weight(train_frame["label"], class_names)
    recipe = recipe_for(settings, train_frame["label"], class_names, accelerator.jit_compile)
    synthetic = bool(frame.attrs.get("synthetic"))
    metadata = model_metadata(settings, class_names, size, synthetic, case, manifest, recipe)
    return training.train_two_phase(
        model,
        base,
        train_ds,
        val_ds,
        run_dir,
        num_classes=len(class_names),
        recipe=recipe,
        class_weight=class_weight,
        plain_train_ds=plain_train_ds,
        tracking_dir=settings["output_dir"],
        batch_size=batch_size,
        metadata=metadata,
        verbose=verbose,
    )
