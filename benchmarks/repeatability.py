"""Whether a training run repeats from its seed, with TensorFlow's op determinism off and on,
and what determinism costs in time.

Method: the brain training chapter's path with the ``cpu`` profile's recipe
(``prerequisites.split_for``, then ``prerequisites.train``: the head on the frozen backbone's
cached features, then the top blocks fine-tuned with the ``mild+source`` augmentation), on a
smaller split and fewer epochs (``--max-images``, ``--image-size``, ``--epochs-frozen``,
``--epochs-finetune``). Each run is a fresh process seeded by ``runtime.seed_everything(seed,
repeatable_ops=...)``; ``--runs`` runs with the ops as TensorFlow runs them by default and as many
with op determinism on, alternating, so that whatever else the machine does falls on both. Each
run records a hash of its final weights, its validation loss per epoch and its seconds of
training (the split made once, beforehand, and shared).

Usage: python -m benchmarks.repeatability [--data-dir ../shared/data] [--runs 2]
Writes benchmarks/results/repeatability.csv and, from it, book/generated/repeatability.md
(``--table-only``: the table again from the CSV).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from tools.provenance import machine

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "repeatability.csv"
TABLE = ROOT / "book" / "generated" / "repeatability.md"
CHAPTER = "brain_02_training"
MODES = {"default": False, "deterministic": True}  # how the table names it -> repeatable_ops


def settings_for(args, run_dir: Path) -> dict:
    """The training chapter's parameters under the ``cpu`` profile, made smaller by ``args``."""
    from tools.chapters import notebook_defaults
    from tools.profiles import parameters_for, read_profile

    settings = notebook_defaults(ROOT / "notebooks" / f"{CHAPTER}.ipynb")
    settings.update(parameters_for(read_profile("cpu"), CHAPTER))
    if settings.get("weights") not in (None, "imagenet"):
        settings["weights"] = str((ROOT / settings["weights"]).resolve())
    settings.update(
        data_dir=str(args.data_dir),
        synthetic=args.synthetic,
        max_images=args.max_images,
        image_size=args.image_size,
        epochs_frozen=args.epochs_frozen,
        epochs_finetune=args.epochs_finetune,
        output_dir=str(run_dir / "tracking"),
    )
    return settings


def make_split(args, split_dir: Path) -> None:
    from medclass import case_studies, prerequisites, runtime

    settings = settings_for(args, split_dir)
    runtime.seed_everything(settings["seed"])
    chosen = {name: settings[name] for name in case_studies.BRAIN.split_settings}
    prerequisites.split_for(
        "brain_mri",
        split_dir,
        data_dir=settings["data_dir"],
        synthetic=settings["synthetic"],
        seed=settings["seed"],
        max_images=settings["max_images"],
        **chosen,
    )


def one_run(args) -> dict:
    """Train once in this process (the child): what :func:`main` tabulates."""
    from medclass import prerequisites, runtime

    run_dir = Path(args.run_dir)
    settings = settings_for(args, run_dir)
    runtime.seed_everything(settings["seed"], repeatable_ops=MODES[args.child])
    from tensorflow.python.framework import config

    if config.is_op_determinism_enabled() != MODES[args.child]:
        raise SystemExit(
            f"Op determinism is {'off' if MODES[args.child] else 'on'} in the {args.child} run: "
            "runtime.make_ops_repeatable leaves it off on a GPU or TPU, so there is nothing to compare."
        )
    started = time.perf_counter()
    result = prerequisites.train("brain_mri", run_dir, settings, verbose=0)
    seconds = time.perf_counter() - started
    digest = hashlib.sha256()
    for weights in result.model.get_weights():
        digest.update(weights.tobytes())
    return {
        "ops": args.child,
        "op_determinism": config.is_op_determinism_enabled(),
        "weights": digest.hexdigest()[:12],
        "val_loss": " ".join(f"{loss:.6f}" for loss in result.history["val_loss"]),
        "seconds": round(seconds, 1),
    }


def child_command(args, mode: str, run_dir: Path) -> list[str]:
    command = [sys.executable, "-m", "benchmarks.repeatability", "--child", mode, "--run-dir", str(run_dir)]
    for name in ("data_dir", "max_images", "image_size", "epochs_frozen", "epochs_finetune"):
        command += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    return command + (["--synthetic"] if args.synthetic else [])


def measure(args) -> pd.DataFrame:
    """One row per run, with what was measured on which split and machine."""
    from medclass import splits

    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        split_dir = Path(scratch) / "split"
        make_split(args, split_dir)
        setting = {
            "data": "synthetic" if args.synthetic else "real",
            "max_images": args.max_images,
            "images": len(splits.read_manifest(split_dir / "manifest.csv")),
            "image_size": args.image_size,
            "epochs_frozen": args.epochs_frozen,
            "epochs_finetune": args.epochs_finetune,
            "machine": machine(),
        }
        for number in range(1, args.runs + 1):
            for mode in args.modes:
                run_dir = Path(scratch) / f"{mode}-{number}"
                shutil.copytree(split_dir, run_dir)  # the manifest and its sidecar
                rows.append({"run": number, **run_child(args, mode, run_dir), **setting})
    return pd.DataFrame(rows)


def run_child(args, mode: str, run_dir: Path) -> dict:
    done = subprocess.run(
        child_command(args, mode, run_dir),
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    if done.returncode != 0:
        raise SystemExit(f"The {mode} run in {run_dir} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def describe(table: pd.DataFrame) -> str:
    """The appendix's table and what it shows, in words made from the measured rows alone."""
    first = table.iloc[0]
    command = (
        f"python -m benchmarks.repeatability --runs {table['run'].max()} --max-images "
        f"{first.max_images} --image-size {first.image_size} --epochs-frozen {first.epochs_frozen} "
        f"--epochs-finetune {first.epochs_finetune}" + (" --synthetic" if first.data == "synthetic" else "")
    )
    if list(table["ops"].unique()) != list(MODES):
        command += " --modes " + " ".join(table["ops"].unique())
    header = (
        f"The brain recipe of the `cpu` profile on the {first.data} data, cut by the data chapter's "
        f"`max_images` to {first.max_images} Brain Tumor MRI images, with Br35H's and LGG's parts cut "
        f"with it: {first.images} images in all (slices and sequences), at {first.image_size} px; "
        f"{first.epochs_frozen} frozen and {first.epochs_finetune} fine-tuning epochs. Measured by "
        f"`{command}` on {first.machine}."
    )
    lines = []
    for mode, group in table.groupby("ops", sort=False):
        distinct = group["weights"].nunique()
        same = "the same weights" if distinct == 1 else f"{distinct} different sets of weights"
        how = "made deterministic" if MODES[mode] else "as TensorFlow runs them by default"
        lines.append(
            f"With the ops {how}, {len(group)} runs from one seed ended with {same}; their training "
            f"took {group['seconds'].mean():.0f} s on average."
        )
    shown = table[["run", "ops", "weights", "val_loss", "seconds"]].rename(
        columns={"weights": "final weights (hash)", "val_loss": "validation loss per epoch"}
    )
    return "\n\n".join([header, " ".join(lines), shown.to_markdown(index=False)]) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument(
        "--synthetic", action="store_true", help="the embedded phantoms, written under --data-dir"
    )
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--max-images", type=int, default=600)
    parser.add_argument("--image-size", type=int, default=160)
    parser.add_argument("--epochs-frozen", type=int, default=2)
    parser.add_argument("--epochs-finetune", type=int, default=2)
    parser.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES))
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--table", type=Path, default=TABLE)
    parser.add_argument("--table-only", action="store_true", help="write the table from --out again")
    parser.add_argument("--child", choices=list(MODES), help=argparse.SUPPRESS)
    parser.add_argument("--run-dir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(one_run(args)))
        return
    if not (args.synthetic or args.table_only) and not (args.data_dir / "brain-tumor-mri").is_dir():
        raise SystemExit(
            f"No brain-tumor-mri folder under {args.data_dir}: pass --data-dir (the folder of "
            "../shared/data), or --synthetic to measure on the embedded phantoms."
        )
    if not args.table_only:
        measure(args).to_csv(args.out, index=False)
    args.table.write_text(describe(pd.read_csv(args.out)))
    print(args.table.read_text())


if __name__ == "__main__":
    main()
