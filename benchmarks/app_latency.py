"""How long the demo app takes to answer: loading each exported model, and for one upload the
decoding, the prediction (with the evaluation's flip averaging and temperature) and Grad-CAM,
on real images, in the process the app runs in (no browser, no network).

Usage: python benchmarks/app_latency.py [--models _build/outputs/cpu/brain_mri _build/outputs/cpu/ham10000]
       [--data-dir ../shared/data] [--images 30]
The first upload after a model loads pays for tracing the prediction and Grad-CAM graphs; it is
reported apart from the median and 90th percentile of the others. Results go in
book/performance.md and benchmarks/results/app_latency.csv.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from medclass import serving  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
IMAGE_FOLDERS = {"brain_mri": "brain-tumor-mri/Testing", "ham10000": "ham10000"}


def images_for(model_dir: Path, data_dir: Path, count: int) -> list[Path]:
    folder = data_dir / IMAGE_FOLDERS.get(model_dir.name, "")
    paths = sorted(folder.rglob("*.jpg"))
    if not paths:
        raise SystemExit(f"No JPEG images under {folder}; pass --data-dir (see ../shared/data/README.md).")
    return [paths[int(i)] for i in np.linspace(0, len(paths) - 1, count)]


def measure(model_dir: Path, images: list[Path]) -> dict:
    started = time.perf_counter()
    bundle = serving.load_bundle(model_dir)
    load = time.perf_counter() - started
    stages = {"decode": [], "predict": [], "gradcam": [], "total": []}
    for path in images:
        t0 = time.perf_counter()
        pixels, _ = serving.read_image(path.read_bytes(), path.name)
        t1 = time.perf_counter()
        probabilities = serving.predict(bundle, pixels)
        t2 = time.perf_counter()
        serving.explain(bundle, pixels, max(probabilities, key=probabilities.get))
        t3 = time.perf_counter()
        for name, seconds in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t3 - t0), strict=True):
            stages[name].append(seconds * 1000)
    row = {"model": model_dir.name, "backbone": bundle.info.get("backbone"), "tta": bundle.tta}
    row["load_s"] = load
    row["first_upload_ms"] = stages["total"][0]
    for name, values in stages.items():
        later = np.array(values[1:])
        row[f"{name}_median_ms"] = float(np.median(later))
        row[f"{name}_p90_ms"] = float(np.percentile(later, 90))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    default_models = [ROOT / "_build/outputs/cpu/brain_mri", ROOT / "_build/outputs/cpu/ham10000"]
    parser.add_argument("--models", nargs="+", type=Path, default=default_models)
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--images", type=int, default=30)
    args = parser.parse_args()
    rows = [measure(model, images_for(model, args.data_dir, args.images)) for model in args.models]
    table = pd.DataFrame(rows)
    print(table.round(1).to_markdown(index=False))
    out = ROOT / "benchmarks" / "results" / "app_latency.csv"
    table.round(2).to_csv(out, index=False)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
