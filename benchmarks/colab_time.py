"""Each chapter's expected time on a free Colab GPU (an NVIDIA T4), run with its own defaults and
opened alone, as a Colab badge opens it (a fresh runtime, an empty ``output_dir``).

Estimated, not measured: no T4 is reachable from here. The estimate adds three parts.

1. **CPU work, measured.** Colab gives 2 CPU cores. Every cell of the published ``cpu`` run
   (``book/published/cpu``, executed on a 2-core machine) that does no GPU work (loading,
   duplicate audits, splits, plots, bootstrap intervals) counts with its recorded duration. A
   cell that reads every HAM10000 image's pixels also counts what Kaggle's 600x450 px files add
   over the 200x150 px copies that run read: per image, the extra seconds measured by
   ``benchmarks/decode_scale.py`` for the work it runs (the pixels are 9 times as many; the
   work per file, and the cell's work on the whole set, are not).
2. **GPU work, estimated** from published single-GPU FP32 training throughputs on a V100
   (NVIDIA DeepLearningExamples; ResNet50 367 img/s at 224 px, EfficientNetB0 655 at 224,
   EfficientNetB4 83 at 380), scaled to a T4 by the ratio of the same source's ResNet50 FP32
   inference rates (420 against 1,127 img/s), to the chapter's image size by pixel count, and
   halved for Keras on TensorFlow against NVIDIA's tuned PyTorch (an assumption). A forward pass
   alone (a frozen backbone, prediction) is taken as a third of a training step. Mixed precision
   and XLA, which ``medclass.hardware`` turns on for a GPU, are left out: they only make it faster.
3. **The input pipeline, measured** (``benchmarks/input_pipeline.py``, 2 cores): the first epoch
   decodes every image at 386 img/s; later epochs augment cached images at 856 img/s, which
   bounds an epoch from below whatever the GPU.

A chapter opened alone first makes what the chapters before it make (``medclass.prerequisites``):
a training chapter the split, an evaluation chapter the split and the model. Five minutes are
added to each chapter for the install cell and kagglehub's download (an allowance, not measured).

Usage: python -m benchmarks.colab_time [--data-dir ../shared/data]
Writes benchmarks/results/colab_times.csv and book/generated/colab_times.md; the split sizes
come from the real datasets' image counts in --data-dir.
"""

from __future__ import annotations

import argparse
import json
import math
from functools import cache
from pathlib import Path

import pandas as pd

from benchmarks import decode_scale
from medclass import colour, data
from tools.chapters import notebook_defaults, toc_notebooks
from tools.profiles import chapter_parameters

ROOT = Path(__file__).resolve().parents[1]
PUBLISHED = ROOT / "book" / "published" / "cpu"
CHAPTERS = [path.stem for path in toc_notebooks()]  # in reading order
DATA_CHAPTER = {"brain_02_training": "brain_01_data", "skin_02_training": "skin_01_data"}
TRAINING_CHAPTER = {"brain_03_evaluation": "brain_02_training", "skin_03_evaluation": "skin_02_training"}

# (image size, images/s): one V100, FP32, training; NVIDIA DeepLearningExamples, the READMEs of
# PyTorch/Classification/ConvNets/resnet50v1.5 and .../efficientnet (PyTorch 21.03 container).
V100_FP32_TRAINING = {
    "resnet50": (224, 367.0),
    "efficientnet_b0": (224, 655.0),
    "efficientnet_b4": (380, 83.0),
}
T4_PER_V100 = 420 / 1127  # ResNet50 FP32 inference at batch 32, T4 against V100 (the same README)
KERAS_SLOWDOWN = 2.0  # assumed: Keras on TensorFlow against NVIDIA's tuned PyTorch
FORWARD_PER_STEP = 3.0  # a forward pass alone against forward + backward (1127 vs 367 img/s above)
DECODE_PER_S = 386.0  # benchmarks/input_pipeline.py, 2 cores, epoch 1: every file decoded
AUGMENT_PER_S = 856.0  # the same, later epochs: augmentation of the cached images
SETUP_S = 300.0  # assumed: the install cell and kagglehub's download
LGG_PATIENTS = 110  # Kaggle's LGG set (../shared/data holds 90 of them; the counts there scale)
SALIENCY_PASSES = 4 * 3  # four layer and method pairs, a forward and backward pass each

GPU_CELLS = (
    "train_two_phase",
    "run.fit(",
    ".fit(",
    "predict_probabilities",
    "transfer.compare",
    "plot_overlays",
    "classifier_curve",
    "seed_models(",  # the seed study: the recipe trained again per extra seed (gpu_seconds)
    "localisation_table(",  # saliency maps on LGG's tumour slices (gpu_seconds)
    "localisation.misses(",
)
DECODE_CELLS = tuple(decode_scale.FUNCTIONS)  # cells that read every image's pixels
# What medclass.prerequisites.split_for redoes of a data chapter: load, hash, group, split.
SPLIT_CELLS = ("load_dataset", "perceptual_hashes", "duplicate_group", "split_frame")


def t4_images_per_s(backbone: str, size: int, forward_only: bool) -> float:
    reference_size, v100 = V100_FP32_TRAINING[backbone]
    rate = v100 * T4_PER_V100 / KERAS_SLOWDOWN * (reference_size / size) ** 2
    return rate * FORWARD_PER_STEP if forward_only else rate


def epoch_seconds(backbone: str, size: int, n_train: int, n_val: int, trains_backbone: bool) -> float:
    """One epoch: the training images through the GPU or the CPU's augmentation, whichever is
    slower, then the validation images forward."""
    gpu = n_train / t4_images_per_s(backbone, size, forward_only=not trains_backbone)
    return max(gpu, n_train / AUGMENT_PER_S) + n_val / t4_images_per_s(backbone, size, forward_only=True)


@cache
def image_count(dataset: str, data_dir: Path, label: str | None = None) -> int:
    """How many images ``dataset`` holds (of ``label``, when given), each dataset read once."""
    frame = data.load_dataset(dataset, data_dir)
    return int(len(frame) if label is None else (frame["label"] == label).sum())


def split_sizes(
    dataset: str, data_dir: Path, max_images: int | None, lgg_in_training: bool = False
) -> dict[str, float]:
    """Images per split as the data chapters make them, from the real datasets' counts; for the
    brain, ``saliency``: the LGG held-out tumour slices whose saliency maps the evaluation
    chapter measures."""
    n = image_count(dataset, data_dir)
    n = min(n, max_images) if max_images else n
    if dataset == "ham10000":  # the external set is PH2, read whole
        return {
            "train": 0.7 * n,
            "val": 0.15 * n,
            "test": 0.15 * n,
            "external_test": image_count("ph2", data_dir),
        }
    tumours = image_count("br35h", data_dir, "Tumor")
    tumours = min(tumours, max(10, max_images // 5)) if max_images else tumours
    # LGG: one image per slice and sequence; a quarter of the patients held out as external_test,
    # half in training (a tenth of that half in val) with lgg_in_training. A Colab user downloads
    # all of Kaggle's patients, so the counts here are scaled up to them.
    slices = data.load_dataset("lgg", data_dir)
    patients = min(LGG_PATIENTS, max(8, max_images // 20)) if max_images else LGG_PATIENTS
    share = patients / slices["patient"].nunique()
    lgg, lgg_tumours = share * len(slices), share * float((slices["label"] == "Tumor").sum())
    trained = 0.5 * lgg if lgg_in_training else 0.0
    return {
        "train": 0.8 * n + 0.45 * tumours + 0.9 * trained,
        "val": 0.1 * n + 0.05 * tumours + 0.1 * trained,
        "test": 0.1 * n,
        "external_test": 0.5 * tumours + 0.25 * lgg,
        "saliency": 0.25 * lgg_tumours,
    }


@cache
def published_cells(chapter: str) -> tuple[tuple[tuple[str, float], ...], dict]:
    """The published cpu run of ``chapter``, read once: each code cell's source and seconds,
    and the run's parameters."""
    path = PUBLISHED / f"{chapter}.ipynb"
    document = json.loads(path.read_text())
    cells = []
    for cell in document["cells"]:
        if cell["cell_type"] != "code":
            continue
        duration = cell["metadata"].get("papermill", {}).get("duration")
        if duration is None:
            raise SystemExit(f"{path}: a cell without papermill's duration; re-run make book PROFILE=cpu.")
        cells.append(("".join(cell["source"]), duration))
    return tuple(cells), document["metadata"]["medclass"]["parameters"]


def kaggle_extra(chapter: str, source: str, data_dir: Path | None) -> float:
    """The seconds a cell of the published run would add on Kaggle's HAM10000 files, larger than
    the copies it read: for each kind of per-image work it runs, the extra seconds per image
    measured by ``benchmarks/decode_scale.py`` times the images it read."""
    markers = [marker for marker in DECODE_CELLS if marker in source]
    if not chapter.startswith("skin") or not markers:
        return 0.0
    if data_dir is None:
        raise ValueError(f"{chapter} reads HAM10000's images: its estimate needs data_dir.")
    _, parameters = published_cells(chapter)
    images = image_count("ham10000", data_dir)
    images = min(images, parameters["max_images"]) if parameters.get("max_images") else images
    extra = decode_scale.extra_seconds()
    return sum(extra[marker] * images for marker in markers)


def cpu_seconds(chapter: str, only: tuple[str, ...] = (), data_dir: Path | None = None) -> tuple[float, dict]:
    """The published cpu run's seconds in cells without GPU work (in the cells that contain one
    of ``only``, when given), with what Kaggle's larger HAM10000 files add (:func:`kaggle_extra`),
    and that run's parameters."""
    cells, parameters = published_cells(chapter)
    seconds = 0.0
    for source, duration in cells:
        if any(marker in source for marker in GPU_CELLS) or (only and not any(m in source for m in only)):
            continue
        seconds += duration + kaggle_extra(chapter, source, data_dir)
    return seconds, parameters


def gpu_seconds(chapter: str, p: dict, data_dir: Path) -> float:
    """The chapter's own GPU work with its defaults ``p``: training, prediction."""
    if chapter == "concepts_02_resnet":  # small networks on 8x8 digits: the cpu run's fit, per epoch
        fit = cpu_fit_seconds(chapter)
        _, published = cpu_seconds(chapter)
        return (
            fit
            * (p["epochs_frozen"] + p["epochs_finetune"])
            / (published["epochs_frozen"] + published["epochs_finetune"])
        )
    if "epochs_frozen" not in p:
        return 0.0
    sizes = split_sizes(p["dataset"], data_dir, p.get("max_images"), bool(p.get("lgg_in_training")))
    backbone, size = p["backbone"], p["image_size"]
    decode = (sizes["train"] + sizes["val"]) / DECODE_PER_S
    frozen = epoch_seconds(backbone, size, sizes["train"], sizes["val"], trains_backbone=False)
    tuned = epoch_seconds(backbone, size, sizes["train"], sizes["val"], trains_backbone=True)
    if chapter == "concepts_03_transfer":  # five strategies, each for every epoch of the budget
        epochs = p["epochs_frozen"] + p["epochs_finetune"]
        half = epochs // 2
        return decode + 2 * epochs * frozen + 2 * (half * frozen + (epochs - half) * tuned) + epochs * tuned
    seeds = len(p.get("extra_seeds") or [])  # the seed study trains the recipe once more per seed
    if chapter.endswith("_training"):
        return decode + (1 + seeds) * (p["epochs_frozen"] * frozen + p["epochs_finetune"] * tuned)
    # evaluation: validation with and without flips, the test split and the external set
    # (brain: Br35H's tumours; skin: PH2), each decoded once and then cached; the skin chapter
    # also predicts the cached test images under every colour shift of its robustness curve
    decoded = sizes["val"] + sizes["test"] + sizes["external_test"]
    passes = 2 * sizes["val"] + (1 + bool(p["tta"])) * (sizes["test"] + sizes["external_test"])
    passes += seeds * (1 + bool(p["tta"])) * sizes["test"]  # each seed's model on the test split
    if chapter == "skin_03_evaluation":  # every test melanoma, at most 100 of each other class
        curve = sum(
            0.15 * image_count(p["dataset"], data_dir, label)
            if label == "mel"
            else min(100, 0.15 * image_count(p["dataset"], data_dir, label))
            for label in ("akiec", "bcc", "bkl", "df", "mel", "nv", "vasc")
        )
        decoded += curve
        passes += (1 + sum(len(amounts) for _, amounts in colour.SHIFTS.values())) * curve
    # the saliency maps on LGG's held-out tumour slices: four layer and method pairs, each a
    # forward and a backward pass (about three forward passes' work), and the misses' gallery
    passes += SALIENCY_PASSES * sizes.get("saliency", 0.0)
    return decoded / DECODE_PER_S + passes / t4_images_per_s(backbone, size, forward_only=True)


def cpu_fit_seconds(chapter: str) -> float:
    """The published cpu run's seconds in cells that call ``fit``."""
    cells, _ = published_cells(chapter)
    return sum(duration for source, duration in cells if ".fit(" in source)


def totals(p_of, data_dir: Path) -> dict[str, dict]:
    """Per chapter, with the parameters ``p_of(chapter)``: its own CPU and GPU seconds, the
    seconds of the earlier chapters' work it redoes when opened alone (a training chapter the
    split, an evaluation chapter the split and the model), and the sum of the three."""
    out = {}
    for chapter in CHAPTERS:
        p = p_of(chapter)
        cpu, _ = cpu_seconds(chapter, data_dir=data_dir)
        gpu = gpu_seconds(chapter, p, data_dir)
        if chapter in DATA_CHAPTER:
            before = cpu_seconds(DATA_CHAPTER[chapter], only=SPLIT_CELLS, data_dir=data_dir)[0]
        else:
            before = out[TRAINING_CHAPTER[chapter]]["alone"] if chapter in TRAINING_CHAPTER else 0.0
        out[chapter] = {"p": p, "cpu": cpu, "gpu": gpu, "before": before, "alone": before + cpu + gpu}
    return out


def estimate(data_dir: Path) -> pd.DataFrame:
    """The chapters' defaults, and the ``full`` profile (the references' recipes) beside them."""
    defaults = totals(lambda c: notebook_defaults(ROOT / "notebooks" / f"{c}.ipynb"), data_dir)
    full = totals(
        lambda c: {**notebook_defaults(ROOT / "notebooks" / f"{c}.ipynb"), **chapter_parameters("full", c)},
        data_dir,
    )
    rows = []
    for chapter in CHAPTERS:
        mine, p = defaults[chapter], defaults[chapter]["p"]
        total = SETUP_S + mine["alone"]
        rows.append(
            {
                "chapter": chapter,
                "backbone": p.get("backbone", ""),
                "image_size": p.get("image_size", ""),
                "epochs": f"{p['epochs_frozen']}+{p['epochs_finetune']}" if "epochs_frozen" in p else "",
                "max_images": p.get("max_images") or "",
                "cpu_s": round(mine["cpu"]),
                "gpu_s": round(mine["gpu"]),
                "earlier_chapters_s": round(mine["before"]),
                "total_min": round(total / 60, 1),
                "stated": stated(total / 60),
                "full_profile_min": round((SETUP_S + full[chapter]["alone"]) / 60, 1),
                "full_profile_stated": stated((SETUP_S + full[chapter]["alone"]) / 60),
            }
        )
    return pd.DataFrame(rows)


def stated(minutes: float) -> str:
    """How a chapter says its time: up to the next 5 minutes, or to the next half hour past 1 h."""
    if minutes <= 60:
        return f"about {5 * math.ceil(minutes / 5)} minutes"
    return f"about {math.ceil(minutes / 30) / 2:g} hours"


def markdown(table: pd.DataFrame) -> str:
    commit = json.loads((PUBLISHED / f"{CHAPTERS[0]}.ipynb").read_text())["metadata"]["medclass"]["commit"]
    lines = [
        f"Made by `python -m benchmarks.colab_time` from the published `cpu` run (commit {commit[:7]}) "
        "and each chapter's defaults; times in minutes include the 5-minute setup allowance. "
        "A skin cell that reads every image's pixels adds, per image, "
        + " and ".join(f"{1000 * s:.1f} ms ({marker})" for marker, s in decode_scale.extra_seconds().items())
        + ": what that work took longer on files of Kaggle's size (`python -m benchmarks.decode_scale`).",
        "",
        "| chapter | defaults | CPU (s) | GPU (s) | earlier chapters' work (s) | total | stated "
        "| `full` profile |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in table.itertuples():
        defaults = ", ".join(
            str(part)
            for part in (
                row.backbone,
                f"{row.image_size} px" if row.image_size != "" else "",
                f"{row.epochs} epochs" if row.epochs else "",
                f"{row.max_images} images" if row.max_images != "" else "",
            )
            if part
        )
        lines.append(
            f"| `{row.chapter}` | {defaults or 'no training'} | {row.cpu_s} | {row.gpu_s} | "
            f"{row.earlier_chapters_s} | {row.total_min} min | {row.stated} | "
            f"{row.full_profile_min} min |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    args = parser.parse_args()
    data_dir = Path(args.data_dir)
    if not (data_dir / "brain-tumor-mri").is_dir() or not (data_dir / "ham10000").is_dir():
        raise SystemExit(f"No real data under {data_dir}; pass --data-dir (see ../shared/data/README.md).")
    table = estimate(data_dir)
    table.to_csv(ROOT / "benchmarks" / "results" / "colab_times.csv", index=False)
    (ROOT / "book" / "generated" / "colab_times.md").write_text(markdown(table))
    print(table.to_string(index=False))


if __name__ == "__main__":
    main()
