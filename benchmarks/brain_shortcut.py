"""The brain-MRI shortcut and its mitigations, measured side by side (issue: the brain model
learned where an image came from).

Usage:
    python benchmarks/brain_shortcut.py [--data-dir ../shared/data] [--out benchmarks/results]
        [--variants baseline standardised ...] [--max-images N]
    python benchmarks/brain_shortcut.py --variants "<a variant>" --training-seeds 43 44
        (a seed study: the same splits, other training seeds; brain_shortcut_seeds.csv and the
        appendix's table book/generated/brain_shortcut_seeds.md)

Reads the Brain Tumor MRI Dataset and Br35H, joins them without counting a copy twice, and
splits them exactly as the data chapter does (brain-tumor-mri 80/10/10 by duplicate group;
Br35H's new tumour slices: a fixed half held out as ``external_val`` + ``external_test``, the
other half joining training only in the variants that say so). Each variant then trains with
the ``cpu`` profile's brain recipe (MobileNetV2 0.35, ImageNet weights from
``../shared/weights``) and is evaluated as the evaluation chapter does: TTA and temperature
from the cpu profile and validation, the operating threshold chosen on validation for a
sensitivity of 0.98. Per variant, one row of ``brain_shortcut.csv``:

- internal test accuracy and ROC-AUC, sensitivity and specificity at the operating point;
- Br35H tumour sensitivity at the operating point, on ``external_val`` (used to choose the
  recipe) and ``external_test`` (reported);
- the file-property classifier's accuracy and ROC-AUC on the variant's training images
  (label from format, mode, size and pixel statistics alone, grouped 5-fold);
- how well a logistic regression on 32-px thumbnails of what the model sees tells
  brain-tumor-mri's tumours from Br35H's (ROC-AUC).

The table the performance appendix includes, ``book/generated/brain_shortcut.md``, is written
from the CSV (``--table-only`` rewrites it without training).

All with 95% bootstrap intervals over duplicate groups. The rule that picks the book's recipe: the
highest ``external_val`` sensitivity among the variants whose validation ROC-AUC on the
brain-tumor-mri images (the validation images every variant shares) is at least 0.99. (As first
written, the rule read the whole validation split's ROC-AUC, which for the variants with Br35H
in training includes Br35H tumours: other, harder images. It was corrected after the first of
those variants reported, before any choice; ``--rescore`` fills the new column for rows
measured before it.) The test columns are reported, never used to
choose. Results go in the training chapter and book/performance.md. About 10 minutes a
variant on a 2-core CPU. Variants measured earlier and not named by ``--variants`` keep their
rows.
"""

from __future__ import annotations

import argparse
import csv
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pandas as pd  # noqa: E402
import yaml  # noqa: E402

from medclass import (  # noqa: E402
    audit,
    augment,
    calibration,
    data,
    evaluation,
    models,
    pipeline,
    shortcuts,
    splits,
    training,
)
from medclass.runtime import seed_everything  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CLASS_NAMES = ["Healthy", "Tumor"]
# name: (standardise, augmentation, Br35H tumours in training, those repeated to match the
# Healthy slices of their source (splits.balance_source), the backbone fine-tuned after the head)
VARIANTS = {
    "baseline": (False, "mild", False, False, True),
    "standardised": (True, "mild", False, False, True),
    "standardised + source augmentation": (True, "mild+source", False, False, True),
    "standardised + source augmentation + Br35H in training": (True, "mild+source", True, False, True),
    "standardised + Br35H in training": (True, "mild", True, False, True),
    "Br35H in training only": (False, "mild", True, False, True),
    "standardised + source augmentation + Br35H in training, source-balanced": (
        True,
        "mild+source",
        True,
        True,
        True,
    ),
    "standardised + source augmentation + Br35H in training, backbone frozen": (
        True,
        "mild+source",
        True,
        False,
        False,
    ),
    "standardised + source augmentation + Br35H in training, backbone frozen, 224 px": (
        True,
        "mild+source",
        True,
        False,
        False,
    ),
}
# Variants that run at another resolution than the cpu profile's (224 px: the resolution the
# MobileNetV2 weights in ../shared/weights were trained at).
IMAGE_SIZE = {"standardised + source augmentation + Br35H in training, backbone frozen, 224 px": 224}


# The fine-tuning phase of the variants that fine-tune: the cpu profile's brain recipe before
# the benchmark showed that a frozen backbone generalises better (the profile now has none).
FINE_TUNING = {"epochs_finetune": 8, "unfreeze_blocks": 6}


def cpu_recipe() -> dict:
    profile = yaml.safe_load((ROOT / "notebooks" / "profiles" / "cpu.yaml").read_text())
    shared = {key: value for key, value in profile.items() if not isinstance(value, dict)}
    return {**shared, **profile["brain"]}


def settings_for(settings: dict, name: str) -> dict:
    """The cpu recipe as variant ``name`` runs it."""
    return {**settings, "image_size": IMAGE_SIZE.get(name, settings["image_size"])}


def joined_frames(data_dir: str, seed: int, max_images: int | None):
    """brain-tumor-mri with duplicate groups, and Br35H's images that are not copies of it."""
    frame = data.load_dataset("brain_mri", data_dir)
    external = data.load_dataset("br35h", data_dir)
    if max_images:
        frame = splits.cap_images(frame, max_images, seed)
        external = splits.cap_images(external, max(10, max_images // 4), seed)
    hashes = audit.perceptual_hashes(frame["path"])
    external_hashes = audit.perceptual_hashes(external["path"])
    frame, new, copies = audit.without_copies(frame, hashes, external, external_hashes)
    print(f"Br35H: {len(copies)} copies of brain-tumor-mri images left out, {len(new)} new images")
    return frame, new[new["label"] == "Tumor"]


def manifest(frame, new_tumours, in_training: bool, seed: int) -> pd.DataFrame:
    internal = splits.split_frame(frame, seed=seed)
    external = splits.split_external(new_tumours, in_training, seed=seed)
    joined = splits.join_frames(internal, external)
    splits.check_split(joined)
    return joined


def train_variant(
    name,
    frame,
    recipe_settings,
    standardise,
    augmentation,
    balanced,
    work_dir: Path,
    seed: int,
    finetune=True,
):
    size = models.image_size_for("mobilenet_v2", recipe_settings["image_size"])
    batch = recipe_settings["batch_size"]
    train = frame[frame.split == "train"]
    if balanced:
        train = splits.balance_source(train, "br35h", "Tumor", "Healthy", seed=seed)
    train_ds = pipeline.make_dataset(
        train,
        CLASS_NAMES,
        size,
        batch,
        training=True,
        augment=augment.make_augmentation(augmentation, seed, num_classes=2),
        seed=seed,
    )
    plain_train_ds = pipeline.make_dataset(train, CLASS_NAMES, size, batch)
    val_ds = pipeline.make_dataset(frame[frame.split == "val"], CLASS_NAMES, size, batch)
    seed_everything(seed)
    model, base = models.build_classifier(
        "mobilenet_v2",
        str(ROOT / recipe_settings["weights"]),
        size,
        num_classes=2,
        alpha=recipe_settings["alpha"],
        standardise=standardise,
    )
    recipe = training.Recipe(
        epochs_frozen=recipe_settings["epochs_frozen"],
        epochs_finetune=FINE_TUNING["epochs_finetune"] if finetune else 0,
        learning_rate=recipe_settings["learning_rate"],
        unfreeze_blocks=FINE_TUNING["unfreeze_blocks"] if finetune else 0,
        cache_features=recipe_settings["cache_features"],
    )
    result = training.train_two_phase(
        model,
        base,
        train_ds,
        val_ds,
        work_folder(work_dir, name),
        num_classes=2,
        recipe=recipe,
        class_weight=training.balanced_class_weight(train["label"], CLASS_NAMES),
        plain_train_ds=plain_train_ds,
        batch_size=batch,
        metadata={
            "class_names": CLASS_NAMES,
            "image_size": list(size),
            "variant": name,
            "standardise": standardise,
            "augmentation": augmentation,
            "balance_sources": balanced,
        },
    )
    return result.model, size


def with_interval(prefix: str, value_low_high) -> dict:
    value, low, high = value_low_high
    return {
        prefix: round(float(value), 4),
        f"{prefix} low": round(float(low), 4),
        f"{prefix} high": round(float(high), 4),
    }


# Variants with Br35H in training also validate on Br35H tumours, so their "val ROC-AUC" is on
# other images; the rule compares the validation images every variant shares.
COMMON_VAL = "val ROC-AUC (brain-tumor-mri)"


def common_val_auc(frame, y_val, p_val) -> float:
    """ROC-AUC on the brain-tumor-mri images of the validation split, the same for every variant."""
    from sklearn.metrics import roc_auc_score

    shared = (frame.loc[frame.split == "val", "source"] == "brain_mri").to_numpy()
    return round(float(roc_auc_score(y_val[shared], p_val[shared])), 4)


def work_folder(work: Path, name: str) -> Path:
    return work / name.replace(" ", "_").replace("+", "and")


def checkpoint_kept(run_dir: Path) -> str:
    """The phase of the epoch whose weights the run kept (lowest validation loss): "frozen" when
    fine-tuning never beat the head trained on the frozen backbone."""
    history = pd.read_csv(run_dir / "history.csv")
    return str(history.loc[history["val_loss"].idxmin(), "phase"])


def fill_checkpoints(out: Path, work: Path) -> None:
    """Add ``checkpoint kept`` to the rows of both CSVs measured before it was recorded, from the
    histories their runs saved, and rewrite the tables."""
    for path, folder_of in (
        (out / "brain_shortcut.csv", lambda row: work_folder(work, row["variant"])),
        (out / SEEDS_CSV, lambda row: work_folder(work / f"seed-{row['training seed']}", row["variant"])),
    ):
        rows = list(csv.DictReader(path.open()))
        for row in rows:
            if not row.get("checkpoint kept") and (folder_of(row) / "history.csv").exists():
                row["checkpoint kept"] = checkpoint_kept(folder_of(row))
        write_csv(rows, path)
    write_table(list(csv.DictReader((out / "brain_shortcut.csv").open())))
    write_seed_table(out)


def rescore(rows, frame, new_tumours, settings, work: Path) -> None:
    """Fill ``COMMON_VAL`` for rows measured before it existed: the validation ROC-AUC itself
    where the validation split held brain-tumor-mri images only, else from the saved model."""
    for row in rows:
        if row.get(COMMON_VAL):
            continue
        if row["Br35H in training"] in (False, "False"):
            row[COMMON_VAL] = row["val ROC-AUC"]
            continue
        model, _ = training.load_model(work_folder(work, row["variant"]))
        joined = manifest(frame, new_tumours, True, settings["seed"])
        part = joined[joined.split == "val"]
        size = models.image_size_for("mobilenet_v2", settings_for(settings, row["variant"])["image_size"])
        dataset = pipeline.make_dataset(part, CLASS_NAMES, size, settings["batch_size"])
        y_val, p_val = evaluation.predict_probabilities(model, dataset, tta=settings["tta"])
        row[COMMON_VAL] = common_val_auc(joined, y_val, p_val)


def evaluate_variant(model, frame, size, batch, tta, target, seed) -> dict:
    def probabilities(split):
        part = frame[frame.split == split]
        dataset = pipeline.make_dataset(part, CLASS_NAMES, size, batch)
        return (*evaluation.predict_probabilities(model, dataset, tta=tta), part["group"].to_numpy())

    y_val, p_val, _ = probabilities("val")
    temperature = calibration.fit_temperature(y_val, p_val)
    val_calibrated = calibration.apply_temperature(p_val, temperature)
    threshold = calibration.threshold_for_sensitivity(y_val, val_calibrated, target)
    row = {"temperature": round(temperature, 4), "operating threshold": round(threshold, 4)}
    row["val ROC-AUC"] = round(
        float(evaluation.headline_metrics(y_val, val_calibrated).loc["ROC-AUC", "value"]), 4
    )
    row[COMMON_VAL] = common_val_auc(frame, y_val, p_val)
    for split in splits.EXTERNAL_SPLITS:
        _, p_external, groups = probabilities(split)
        rate = evaluation.detection_rate(
            calibration.apply_temperature(p_external, temperature), threshold, groups
        )
        row |= with_interval(f"Br35H {split.split('_')[1]} sensitivity", rate)
        row[f"Br35H {split.split('_')[1]} images"] = len(p_external)
    y_test, p_test, groups = probabilities("test")
    p_test = calibration.apply_temperature(p_test, temperature)
    at_half = evaluation.headline_metrics(y_test, p_test, 0.5, seed=seed, groups=groups)
    at_operating = evaluation.headline_metrics(y_test, p_test, threshold, seed=seed, groups=groups)
    for table, metric, name in (
        (at_half, "accuracy", "test accuracy"),
        (at_half, "ROC-AUC", "test ROC-AUC"),
        (at_operating, "sensitivity", "test sensitivity (op)"),
        (at_operating, "specificity", "test specificity (op)"),
    ):
        row |= with_interval(name, table.loc[metric, ["value", "ci_low", "ci_high"]].to_numpy())
    return row


TABLE = ROOT / "book" / "generated" / "brain_shortcut.md"


def write_csv(rows: list[dict], path: Path) -> None:
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)


def interval(row: dict, name: str) -> str:
    return f"{float(row[name]):.3f} [{float(row[name + ' low']):.3f}, {float(row[name + ' high']):.3f}]"


def chosen_variant(rows: list[dict]) -> str:
    """The rule, :func:`medclass.shortcuts.chosen_recipe`, on these rows and the seed study's."""
    seeds = ROOT / "benchmarks" / "results" / SEEDS_CSV
    results = pd.DataFrame(rows)
    for column in (shortcuts.EXTERNAL_VAL, COMMON_VAL, "val ROC-AUC"):
        results[column] = pd.to_numeric(results[column], errors="coerce")
    results[COMMON_VAL] = results[COMMON_VAL].fillna(results["val ROC-AUC"])
    return shortcuts.chosen_recipe(results, pd.read_csv(seeds) if seeds.exists() else None)


def write_table(rows: list[dict], path: Path = TABLE) -> Path:
    """The results as the markdown table the performance appendix includes."""
    lines = [
        "| variant | train images | weights kept | val ROC-AUC, brain-tumor-mri images | Br35H external_val "
        "sensitivity | Br35H external_test sensitivity | test accuracy | test ROC-AUC | test "
        "sensitivity / specificity at the operating point | label from file properties (accuracy) "
        "| sources apart (thumbnail ROC-AUC) |",
        "|---" * 11 + "|",
    ]
    for row in rows:
        lines.append(
            f"| {row['variant']} | {row['train images']} | {row.get('checkpoint kept') or 'not recorded'} | "
            f"{float(row[COMMON_VAL]):.3f} | "
            f"{interval(row, 'Br35H val sensitivity')} | {interval(row, 'Br35H test sensitivity')} | "
            f"{interval(row, 'test accuracy')} | {interval(row, 'test ROC-AUC')} | "
            f"{float(row['test sensitivity (op)']):.3f} / {float(row['test specificity (op)']):.3f} | "
            f"{interval(row, 'file-property accuracy')} | {interval(row, 'sources apart ROC-AUC')} |"
        )
    lines += [
        "",
        "Chosen by the rule (highest external_val sensitivity among the variants whose validation "
        "ROC-AUC on the brain-tumor-mri images reaches 0.99, each variant with the mean over its "
        f"training runs where the seed study has more than one): **{chosen_variant(rows)}**.",
        "",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    return path


class ShortcutAudit:
    """The two shortcut columns of a variant: the label of its training images from file
    properties alone, and brain-tumor-mri's tumours told from Br35H's in what its model sees."""

    def __init__(self, frame, new_tumours, seed: int):
        everything = splits.join_frames(frame, new_tumours)
        self.properties = shortcuts.file_properties(everything).set_axis(everything["path"])
        self.tumours = everything[everything["label"] == "Tumor"]
        self.thumbnails = {
            standardise: shortcuts.thumbnails(self.tumours, standardise=standardise)
            for standardise in (False, True)
        }
        self.seed = seed

    def columns(self, joined, standardise: bool) -> dict:
        train = joined[joined.split == "train"]
        scores = shortcuts.shortcut_scores(
            self.properties.loc[train["path"]],
            train["label"].to_numpy(),
            train["group"].to_numpy(),
            feature_sets={"all": shortcuts.FILE_PROPERTIES + shortcuts.PIXEL_PROPERTIES},
            seed=self.seed,
        ).iloc[0]
        apart = shortcuts.source_separability(
            self.thumbnails[standardise],
            self.tumours["source"].to_numpy(),
            self.tumours["group"].to_numpy(),
            seed=self.seed,
        )
        return {
            "file-property accuracy": round(float(scores["accuracy"]), 4),
            "file-property accuracy low": round(float(scores["accuracy lower"]), 4),
            "file-property accuracy high": round(float(scores["accuracy upper"]), 4),
            "file-property ROC-AUC": round(float(scores["ROC-AUC"]), 4),
            "sources apart ROC-AUC": round(float(apart[("ROC-AUC", "value")]), 4),
            "sources apart ROC-AUC low": round(float(apart[("ROC-AUC", "ci_low")]), 4),
            "sources apart ROC-AUC high": round(float(apart[("ROC-AUC", "ci_high")]), 4),
        }


SEEDS_CSV = "brain_shortcut_seeds.csv"
SEED_COLUMNS = [
    "Br35H val sensitivity",
    "Br35H test sensitivity",
    "test accuracy",
    "test ROC-AUC",
    "test specificity (op)",
]


def seed_study(args) -> None:
    """Each variant of ``args.variants`` trained with each of ``args.training_seeds``; the split
    (and so the held-out images) stays the cpu profile's. Rows of other (variant, seed) pairs
    measured earlier are kept; the seed of the main table's run joins the summary."""
    settings = cpu_recipe()
    split_seed = settings["seed"]
    frame, new_tumours = joined_frames(args.data_dir, split_seed, args.max_images)
    out = Path(args.out) / SEEDS_CSV
    measured = [(name, seed) for name in args.variants for seed in args.training_seeds]
    rows = []
    if out.exists():
        rows = [
            row
            for row in csv.DictReader(out.open())
            if (row["variant"], int(row["training seed"])) not in measured
        ]
    for name, seed in measured:
        standardise, augmentation, in_training, balanced, finetune = VARIANTS[name]
        started = time.perf_counter()
        joined = manifest(frame, new_tumours, in_training, split_seed)
        work = Path(args.work) / f"seed-{seed}"
        variant_settings = settings_for(settings, name)
        model, size = train_variant(
            name, joined, variant_settings, standardise, augmentation, balanced, work, seed, finetune
        )
        row = {
            "variant": name,
            "training seed": seed,
            "checkpoint kept": checkpoint_kept(work_folder(work, name)),
            **evaluate_variant(
                model, joined, size, settings["batch_size"], settings["tta"], 0.98, split_seed
            ),
            "minutes": round((time.perf_counter() - started) / 60, 1),
        }
        print(row, flush=True)
        rows.append(row)
        write_csv(rows, out)
    print(f"wrote {out}")
    if args.max_images is None:
        print(f"wrote {write_seed_table(Path(args.out))}")


def write_seed_table(
    results: Path, path: Path = ROOT / "book" / "generated" / "brain_shortcut_seeds.md"
) -> Path:
    """Mean, standard deviation and range over training seeds of each variant in the seed study,
    the main table's run (the profile's seed) included once."""
    split_seed = cpu_recipe()["seed"]
    main_rows = pd.read_csv(results / "brain_shortcut.csv").assign(**{"training seed": split_seed})
    seeds = pd.read_csv(results / SEEDS_CSV)
    seeds = seeds[seeds["training seed"] != split_seed]
    both = pd.concat([main_rows[main_rows.variant.isin(seeds.variant)], seeds], ignore_index=True)
    lines = [
        "| variant | training seeds | " + " | ".join(SEED_COLUMNS) + " |",
        "|---" * (len(SEED_COLUMNS) + 2) + "|",
    ]
    for name, runs in both.groupby("variant", sort=False):
        values = [runs[column] for column in SEED_COLUMNS]
        cells = [f"{v.mean():.3f} ± {v.std(ddof=1):.3f} ({v.min():.3f}–{v.max():.3f})" for v in values]
        seeds_used = ", ".join(str(seed) for seed in sorted(runs["training seed"]))
        lines.append(f"| {name} | {seeds_used} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Mean ± standard deviation (lowest–highest) over training runs that differ only in the seed "
        "(initialisation of the head, augmentation, shuffling); the splits and held-out images are the "
        "same for every run. Each run:",
        "",
        "| variant | training seed | weights kept | " + " | ".join(SEED_COLUMNS) + " |",
        "|---" * (len(SEED_COLUMNS) + 3) + "|",
    ]
    for _, run in both.iterrows():
        kept = run.get("checkpoint kept")
        kept = kept if isinstance(kept, str) else "not recorded"
        cells = " | ".join(f"{run[column]:.3f}" for column in SEED_COLUMNS)
        lines.append(f"| {run['variant']} | {run['training seed']} | {kept} | {cells} |")
    lines.append("")
    path.write_text("\n".join(lines))
    return path


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--work", default=str(ROOT / "_build" / "benchmarks" / "brain_shortcut"))
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--max-images", type=int, default=None, help="a cap for a quick trial")
    parser.add_argument("--table-only", action="store_true", help="rewrite the book's table from the CSV")
    parser.add_argument(
        "--checkpoints",
        action="store_true",
        help="fill 'checkpoint kept' from the saved histories of earlier runs, rewrite the tables",
    )
    parser.add_argument(
        "--rescore",
        action="store_true",
        help=f"fill {COMMON_VAL!r} from the saved models, recompute the audit columns, write the table",
    )
    parser.add_argument(
        "--training-seeds",
        nargs="+",
        type=int,
        help="a seed study: train the variants again with these seeds (same splits, same held-out "
        "images), rows in brain_shortcut_seeds.csv; the audit columns, which no seed changes, are skipped",
    )
    args = parser.parse_args(argv)
    out = Path(args.out) / "brain_shortcut.csv"
    if args.training_seeds:
        seed_study(args)
        return
    if args.table_only:
        print(f"wrote {write_table(list(csv.DictReader(out.open())))}")
        return
    if args.checkpoints:
        fill_checkpoints(Path(args.out), Path(args.work))
        return
    if not (Path(args.data_dir) / "br35h").is_dir():
        raise SystemExit(f"No br35h/ under {args.data_dir}: this benchmark needs the real data.")
    settings = cpu_recipe()
    seed = settings["seed"]
    seed_everything(seed)
    frame, new_tumours = joined_frames(args.data_dir, seed, args.max_images)
    audit = ShortcutAudit(frame, new_tumours, seed)
    if args.rescore:
        rows = list(csv.DictReader(out.open()))
        rescore(rows, frame, new_tumours, settings, Path(args.work))
        for row in rows:  # the audit columns again, with this code, for every row alike
            standardise, _, in_training, *_ = VARIANTS[row["variant"]]
            row.update(audit.columns(manifest(frame, new_tumours, in_training, seed), standardise))
        write_csv(rows, out)
        print(f"wrote {out}" + ("" if args.max_images else f" and {write_table(rows)}"))
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    # Rows of variants measured earlier and not rerun now are kept: nothing is lost.
    rows = []
    if out.exists():
        rows = [row for row in csv.DictReader(out.open()) if row["variant"] not in args.variants]
    for name in args.variants:
        standardise, augmentation, in_training, balanced, finetune = VARIANTS[name]
        started = time.perf_counter()
        joined = manifest(frame, new_tumours, in_training, seed)
        variant_settings = settings_for(settings, name)
        model, size = train_variant(
            name,
            joined,
            variant_settings,
            standardise,
            augmentation,
            balanced,
            Path(args.work),
            seed,
            finetune,
        )
        row = {
            "variant": name,
            "standardise": standardise,
            "augmentation": augmentation,
            "Br35H in training": in_training,
            "Br35H source-balanced": balanced,
            "backbone fine-tuned": finetune,
            "image size": variant_settings["image_size"],
            "checkpoint kept": checkpoint_kept(work_folder(Path(args.work), name)),
            "train images": int((joined.split == "train").sum()),
            **evaluate_variant(model, joined, size, settings["batch_size"], settings["tta"], 0.98, seed),
            **audit.columns(joined, standardise),
            "minutes": round((time.perf_counter() - started) / 60, 1),
        }
        print(row, flush=True)
        rows.append(row)
        write_csv(rows, out)  # rewritten after each variant: nothing lost
    if args.max_images is None:
        write_table(rows)
    print(f"Chosen on validation and Br35H external_val: {chosen_variant(rows)}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
