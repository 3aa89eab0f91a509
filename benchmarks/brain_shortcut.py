"""The brain-MRI shortcut and its mitigations, measured side by side (issue: the brain model
learned where an image came from).

Usage:
    python benchmarks/brain_shortcut.py [--data-dir ../shared/data] [--out benchmarks/results]
        [--variants baseline standardised ...] [--max-images N]
    python benchmarks/brain_shortcut.py --variants "<a variant>" --training-seeds 43 44
        (a seed study: the same splits, other training seeds; brain_shortcut_seeds.csv and the
        appendix's table book/generated/brain_shortcut_seeds.md)

Reads the Brain Tumor MRI Dataset, Br35H and LGG and splits them exactly as the data chapter does
(:func:`medclass.case_studies.brain_split`: brain-tumor-mri 80/10/10 by duplicate group;
Br35H's new tumour slices and LGG's patients: a fixed half of each held out as ``external_val``
+ ``external_test``, the other half joining training only in the variants that say so). Each
variant then trains with the ``cpu`` profile's brain recipe (MobileNetV2 0.35, ImageNet weights
from ``../shared/weights``) and is evaluated as the evaluation chapter does: TTA and temperature
from the cpu profile and validation, the operating threshold chosen on validation for a
sensitivity of 0.98. Per variant, one row of ``brain_shortcut.csv``:

- internal test accuracy and ROC-AUC, sensitivity and specificity at the operating point;
- Br35H tumour sensitivity at the operating point, on ``external_val`` and ``external_test``;
- on LGG's held-out patients (slices with and without tumour from the same patients, scanners
  and sequences: :mod:`medclass.within_source`), per sequence ROC-AUC, the ROC-AUC on matched
  slices, and sensitivity and specificity at the operating point, for ``external_val`` (read by
  the rule) and ``external_test`` (reported);
- the label of the variant's training images from file properties alone (format, mode, size and
  pixel statistics), and from source and sequence alone, grouped 5-fold;
- how well a logistic regression on 32-px thumbnails of what the model sees tells
  brain-tumor-mri's tumours from Br35H's (ROC-AUC).

The table the performance appendix includes, ``book/generated/brain_shortcut.md``, is written
from the CSV (``--table-only`` rewrites it without training).

Intervals: 95% bootstrap over duplicate groups, and over patients on LGG; rates on LGG, Wilson
intervals on the patients' effective sample size. The rule that picks the book's recipe
(:func:`medclass.shortcuts.chosen_recipe`, set down before the LGG variants ran): among the
variants whose validation ROC-AUC on the brain-tumor-mri images reaches 0.99 and whose Br35H
``external_val`` sensitivity reaches 0.90, the highest of the lower of the two LGG validation
ROC-AUCs (FLAIR, T1 post-contrast). The test columns are reported, never used to choose.
Results go in the training chapter and book/performance.md. Variants measured earlier and not
named by ``--variants`` keep their rows (rows measured before LGG have no LGG columns).
"""

from __future__ import annotations

import argparse
import csv
import os
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pandas as pd  # noqa: E402
import yaml  # noqa: E402

from medclass import (  # noqa: E402
    augment,
    calibration,
    case_studies,
    evaluation,
    losses,
    models,
    pipeline,
    prerequisites,
    shortcuts,
    splits,
    training,
    within_source,
)
from medclass.runtime import seed_everything  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CLASS_NAMES = ["Healthy", "Tumor"]


@dataclass(frozen=True)
class Variant:
    """How a variant departs from the cpu profile's brain recipe."""

    standardise: bool = True  # SliceStandardisation inside the model
    augmentation: str = "mild+source"
    br35h_in_training: bool = True  # half of Br35H's new tumour slices in training
    # "none"; "br35h": Br35H's tumours repeated to match the Healthy slices of their source
    # (splits.balance_source); "strata": every (source, sequence, label) cell of the training
    # rows repeated to the size of the largest (splits.balance_strata)
    balance: str = "none"
    finetune: bool = True  # the top blocks fine-tuned after the head
    lgg_in_training: bool = False  # half of LGG's patients in training (a tenth of them in val)
    epochs_frozen: int | None = None  # None: the cpu profile's; the head on cached features


FROZEN_BR35H = Variant(finetune=False)
VARIANTS = {
    "baseline": Variant(False, "mild", False),
    "standardised": Variant(True, "mild", False),
    "standardised + source augmentation": Variant(True, "mild+source", False),
    "standardised + source augmentation + Br35H in training": Variant(),
    "standardised + Br35H in training": Variant(True, "mild"),
    "Br35H in training only": Variant(False, "mild"),
    "standardised + source augmentation + Br35H in training, source-balanced": Variant(balance="br35h"),
    "standardised + source augmentation + Br35H in training, backbone frozen": FROZEN_BR35H,
    "standardised + source augmentation + Br35H in training, backbone frozen, 224 px": FROZEN_BR35H,
    # Issue 30: LGG's patients, both labels in every sequence, in training.
    "Br35H + LGG in training, backbone frozen": Variant(finetune=False, lgg_in_training=True),
    "Br35H + LGG in training, backbone frozen, not standardised": Variant(
        standardise=False, finetune=False, lgg_in_training=True
    ),
    "Br35H + LGG in training, backbone frozen, sequence-balanced": Variant(
        finetune=False, lgg_in_training=True, balance="strata"
    ),
    "Br35H + LGG in training, fine-tuned": Variant(lgg_in_training=True),
    # The head's validation loss was still falling at the profile's 15th epoch with LGG in
    # training; on cached features an epoch takes a second.
    "Br35H + LGG in training, backbone frozen, 60 head epochs": Variant(
        finetune=False, lgg_in_training=True, epochs_frozen=60
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


def joined_frames(data_dir: str):
    """brain-tumor-mri with duplicate groups, Br35H's new tumour slices and LGG's slices, as the
    data chapter reads them (:func:`medclass.case_studies.brain_frames`)."""
    return case_studies.brain_frames(data_dir, synthetic=False)


def manifest(frames, variant: Variant, seed: int, max_images=None) -> pd.DataFrame:
    """The data chapter's split (:func:`medclass.case_studies.brain_split`) for ``variant``:
    the held-out images are the same for every variant."""
    return case_studies.brain_split(
        *frames,
        seed=seed,
        max_images=max_images,
        br35h_in_training=variant.br35h_in_training,
        lgg_in_training=variant.lgg_in_training,
    )


def training_rows(frame, variant: Variant, seed: int) -> pd.DataFrame:
    train = frame[frame.split == "train"]
    if variant.balance == "br35h":
        return splits.balance_source(train, "br35h", "Tumor", "Healthy", seed=seed)
    if variant.balance == "strata":
        return splits.balance_strata(train, ["source", "sequence", "label"], seed=seed)
    return train


def train_variant(name, frame, recipe_settings, variant: Variant, work_dir: Path, seed: int):
    size = models.image_size_for("mobilenet_v2", recipe_settings["image_size"])
    batch = recipe_settings["batch_size"]
    train = training_rows(frame, variant, seed)
    train_ds = pipeline.make_dataset(
        train,
        CLASS_NAMES,
        size,
        batch,
        training=True,
        augment=augment.make_augmentation(variant.augmentation, seed, num_classes=2),
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
        standardise=variant.standardise,
    )
    settings = {
        **recipe_settings,
        "epochs_frozen": variant.epochs_frozen or recipe_settings["epochs_frozen"],
        "epochs_finetune": FINE_TUNING["epochs_finetune"] if variant.finetune else 0,
        "unfreeze_blocks": FINE_TUNING["unfreeze_blocks"] if variant.finetune else 0,
        "imbalance": "class_weight",
        "finetune_schedule": "plateau",
    }
    recipe = prerequisites.recipe_for(settings, train["label"], CLASS_NAMES, jit_compile=False)
    result = training.train_two_phase(
        model,
        base,
        train_ds,
        val_ds,
        work_folder(work_dir, name),
        num_classes=2,
        recipe=recipe,
        class_weight=losses.balanced_class_weight(train["label"], CLASS_NAMES),
        plain_train_ds=plain_train_ds,
        batch_size=batch,
        metadata={"class_names": CLASS_NAMES, "image_size": list(size), "variant": name, **vars(variant)},
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
# The LGG columns the rule reads (validation patients) and the table shows (test patients).
LGG_SEQUENCES = ("FLAIR", "T1 post-contrast", "T1 pre-contrast")


def common_val_auc(frame, y_val, p_val) -> float:
    """ROC-AUC on the brain-tumor-mri images of the validation split, the same for every variant."""
    from sklearn.metrics import roc_auc_score

    shared = (frame.loc[frame.split == "val", "source"] == "brain_mri").to_numpy()
    return round(float(roc_auc_score(y_val[shared], p_val[shared])), 4)


def work_folder(work: Path, name: str) -> Path:
    return work / name.replace(" ", "_").replace("+", "and").replace(",", "")


def checkpoint_kept(run_dir: Path) -> str:
    """The phase of the epoch whose weights the run kept (lowest validation loss): "frozen" when
    fine-tuning never beat the head trained on the frozen backbone."""
    history = pd.read_csv(run_dir / "history.csv")
    return str(history.loc[history["val_loss"].idxmin(), "phase"])


def lgg_columns(part, probabilities, threshold, prefix: str, seed: int) -> dict:
    """Per sequence ROC-AUC, and over all sequences the matched-slice ROC-AUC and sensitivity and
    specificity at the operating point, on LGG patients of one held-out split."""
    table = within_source.sequence_table(part, probabilities, threshold, seed=seed)
    row = {}
    for sequence in LGG_SEQUENCES:
        values = table.loc[("all slices", sequence), ["ROC-AUC", "ROC-AUC low", "ROC-AUC high"]]
        row |= with_interval(f"{prefix} ROC-AUC {sequence}", values.to_numpy())
    matched = table.loc[("matched slices", "all sequences")]
    everything = table.loc[("all slices", "all sequences")]
    row |= with_interval(
        f"{prefix} matched ROC-AUC", matched[["ROC-AUC", "ROC-AUC low", "ROC-AUC high"]].to_numpy()
    )
    for name in ("sensitivity", "specificity"):
        row |= with_interval(
            f"{prefix} {name} (op)", everything[[name, f"{name} low", f"{name} high"]].to_numpy()
        )
    row[f"{prefix} patients"] = int(everything["patients"])
    return row


def evaluate_variant(model, frame, size, batch, tta, target, seed) -> dict:
    def probabilities(rows):
        dataset = pipeline.make_dataset(rows, CLASS_NAMES, size, batch)
        return evaluation.predict_probabilities(model, dataset, tta=tta)

    y_val, p_val = probabilities(frame[frame.split == "val"])
    temperature = calibration.fit_temperature(y_val, p_val)
    val_calibrated = calibration.apply_temperature(p_val, temperature)
    threshold = calibration.threshold_for_sensitivity(y_val, val_calibrated, target)
    row = {"temperature": round(temperature, 4), "operating threshold": round(threshold, 4)}
    row["val ROC-AUC"] = round(float(evaluation.roc_auc(y_val, val_calibrated)), 4)
    row[COMMON_VAL] = common_val_auc(frame, y_val, p_val)
    for split in splits.EXTERNAL_SPLITS:
        short = split.split("_")[1]
        tumours = frame[(frame.split == split) & (frame.source == "br35h")]
        p_external = calibration.apply_temperature(probabilities(tumours)[1], temperature)
        rate = evaluation.detection_rate(p_external, threshold, tumours["group"].to_numpy())
        row |= with_interval(f"Br35H {short} sensitivity", rate) | {f"Br35H {short} images": len(tumours)}
        patients = frame[(frame.split == split) & (frame.source == "lgg")]
        p_lgg = calibration.apply_temperature(probabilities(patients)[1], temperature)
        row |= lgg_columns(patients, p_lgg, threshold, f"LGG {short}", seed)
    test = frame[frame.split == "test"]
    y_test, p_test = probabilities(test)
    p_test = calibration.apply_temperature(p_test, temperature)
    groups = test["group"].to_numpy()
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
    for column in (shortcuts.EXTERNAL_VAL, COMMON_VAL, "val ROC-AUC", *shortcuts.LGG_VAL):
        if column not in results:
            results[column] = float("nan")
        results[column] = pd.to_numeric(results[column], errors="coerce")
    results[COMMON_VAL] = results[COMMON_VAL].fillna(results["val ROC-AUC"])
    return shortcuts.chosen_recipe(results, pd.read_csv(seeds) if seeds.exists() else None)


def lgg_cell(row: dict, name: str) -> str:
    return interval(row, name) if row.get(name) not in (None, "") else "not measured"


def write_table(rows: list[dict], path: Path = TABLE) -> Path:
    """The results as the markdown tables the performance appendix includes: the shortcut
    columns measured since the first brain issue, then LGG's, where source and sequence are fixed."""
    lines = [
        "| variant | train images | weights kept | val ROC-AUC, brain-tumor-mri images | Br35H external_val "
        "sensitivity | Br35H external_test sensitivity | test accuracy | test ROC-AUC | test "
        "sensitivity / specificity at the operating point | label from file properties (accuracy) "
        "| label from source and sequence (ROC-AUC) | sources apart (thumbnail ROC-AUC) |",
        "|---" * 12 + "|",
    ]
    for row in rows:
        lines.append(
            f"| {row['variant']} | {row['train images']} | {row.get('checkpoint kept') or 'not recorded'} | "
            f"{float(row[COMMON_VAL]):.3f} | "
            f"{interval(row, 'Br35H val sensitivity')} | {interval(row, 'Br35H test sensitivity')} | "
            f"{interval(row, 'test accuracy')} | {interval(row, 'test ROC-AUC')} | "
            f"{float(row['test sensitivity (op)']):.3f} / {float(row['test specificity (op)']):.3f} | "
            f"{interval(row, 'file-property accuracy')} | {lgg_cell(row, 'source-sequence ROC-AUC')} | "
            f"{interval(row, 'sources apart ROC-AUC')} |"
        )
    lines += [
        "",
        "On LGG's patients, slices with and without tumour from the same patients, scanners and "
        "sequences (ROC-AUC: 95% bootstrap over patients; rates: Wilson intervals on the patients' "
        "effective sample size; matched: slices at least a quarter brain, where the tumours lie):",
        "",
        "| variant | LGG in training | LGG val ROC-AUC, FLAIR / T1 post (the rule) | LGG test ROC-AUC, "
        "FLAIR | T1 post-contrast | T1 pre-contrast | matched slices, all sequences | LGG test "
        "specificity at the operating point | LGG test sensitivity at the operating point |",
        "|---" * 9 + "|",
    ]
    for row in rows:
        if row.get("LGG test ROC-AUC FLAIR") in (None, ""):
            continue
        lines.append(
            f"| {row['variant']} | {row.get('LGG in training')} | "
            f"{float(row['LGG val ROC-AUC FLAIR']):.3f} / "
            f"{float(row['LGG val ROC-AUC T1 post-contrast']):.3f} | "
            + " | ".join(lgg_cell(row, f"LGG test ROC-AUC {sequence}") for sequence in LGG_SEQUENCES)
            + f" | {lgg_cell(row, 'LGG test matched ROC-AUC')} | "
            f"{lgg_cell(row, 'LGG test specificity (op)')} | "
            f"{lgg_cell(row, 'LGG test sensitivity (op)')} |"
        )
    lines += [
        "",
        "Chosen by the rule, on validation images alone (among the variants whose validation ROC-AUC "
        "on the brain-tumor-mri images reaches 0.99 and whose Br35H external_val sensitivity reaches "
        "0.90, the highest of the lower of the two LGG validation ROC-AUCs, FLAIR and T1 "
        "post-contrast; each variant with the mean over its training runs where the seed study has "
        "more than one; with no variant on both floors, the internal floor is dropped first): "
        f"**{chosen_variant(rows)}**.",
        "",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    return path


class ShortcutAudit:
    """The shortcut columns of a variant: the label of its training images from file properties
    alone, and from their source and sequence alone; and brain-tumor-mri's tumours told from
    Br35H's in what its model sees."""

    def __init__(self, frames, seed: int):
        frame, new_tumours, lgg = frames
        everything = splits.join_frames(frame, new_tumours, lgg)
        self.properties = shortcuts.file_properties(everything).set_axis(everything["path"])
        self.tumours = splits.join_frames(frame[frame["label"] == "Tumor"], new_tumours)
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
        acquisition = shortcuts.acquisition_scores(train, seed=self.seed).loc["source and sequence"]
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
            "source-sequence ROC-AUC": round(float(acquisition["ROC-AUC"]), 4),
            "source-sequence ROC-AUC low": round(float(acquisition["ROC-AUC lower"]), 4),
            "source-sequence ROC-AUC high": round(float(acquisition["ROC-AUC upper"]), 4),
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
    "LGG val ROC-AUC FLAIR",
    "LGG val ROC-AUC T1 post-contrast",
    "LGG test ROC-AUC FLAIR",
    "LGG test ROC-AUC T1 post-contrast",
    "LGG test specificity (op)",
]


def seed_study(args) -> None:
    """Each variant of ``args.variants`` trained with each of ``args.training_seeds``; the split
    (and so the held-out images) stays the cpu profile's. Rows of other (variant, seed) pairs
    measured earlier are kept; the seed of the main table's run joins the summary."""
    settings = cpu_recipe()
    split_seed = settings["seed"]
    frames = joined_frames(args.data_dir)
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
        variant = VARIANTS[name]
        started = time.perf_counter()
        joined = manifest(frames, variant, split_seed, args.max_images)
        work = Path(args.work) / f"seed-{seed}"
        model, size = train_variant(name, joined, settings_for(settings, name), variant, work, seed)
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
        values = [
            runs[column].dropna() if column in runs else pd.Series(dtype=float) for column in SEED_COLUMNS
        ]
        cells = [
            f"{v.mean():.3f} ± {v.std(ddof=1):.3f} ({v.min():.3f}–{v.max():.3f})"
            if len(v) > 1
            else "not measured"
            for v in values
        ]
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
        cells = " | ".join(
            f"{run[column]:.3f}" if pd.notna(run.get(column)) else "not measured" for column in SEED_COLUMNS
        )
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
        "--training-seeds",
        nargs="+",
        type=int,
        help="a seed study: train the variants again with these seeds (same splits, same held-out "
        "images), rows in brain_shortcut_seeds.csv; the audit columns, which no seed changes, are skipped",
    )
    args = parser.parse_args(argv)
    out = Path(args.out) / "brain_shortcut.csv"
    if args.table_only:
        print(f"wrote {write_table(list(csv.DictReader(out.open())))} and {write_seed_table(Path(args.out))}")
        return
    for name in ("br35h", "lgg"):
        if not (Path(args.data_dir) / name).is_dir():
            raise SystemExit(f"No {name}/ under {args.data_dir}: this benchmark needs the real data.")
    if args.training_seeds:
        seed_study(args)
        return
    settings = cpu_recipe()
    seed = settings["seed"]
    seed_everything(seed)
    frames = joined_frames(args.data_dir)
    audit = ShortcutAudit(frames, seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    # Rows of variants measured earlier and not rerun now are kept: nothing is lost.
    rows = []
    if out.exists():
        rows = [row for row in csv.DictReader(out.open()) if row["variant"] not in args.variants]
    for name in args.variants:
        variant = VARIANTS[name]
        started = time.perf_counter()
        joined = manifest(frames, variant, seed, args.max_images)
        variant_settings = settings_for(settings, name)
        model, size = train_variant(name, joined, variant_settings, variant, Path(args.work), seed)
        row = {
            "variant": name,
            "standardise": variant.standardise,
            "augmentation": variant.augmentation,
            "Br35H in training": variant.br35h_in_training,
            "Br35H source-balanced": variant.balance == "br35h",
            "backbone fine-tuned": variant.finetune,
            "image size": variant_settings["image_size"],
            "checkpoint kept": checkpoint_kept(work_folder(Path(args.work), name)),
            "train images": len(training_rows(joined, variant, seed)),
            "LGG in training": variant.lgg_in_training,
            "balance": variant.balance,
            **evaluate_variant(model, joined, size, settings["batch_size"], settings["tta"], 0.98, seed),
            **audit.columns(joined, variant.standardise),
            "minutes": round((time.perf_counter() - started) / 60, 1),
        }
        print(row, flush=True)
        rows.append(row)
        write_csv(rows, out)  # rewritten after each variant: nothing lost
    if args.max_images is None:
        write_table(rows)
    print(f"Chosen on validation: {chosen_variant(rows)}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
