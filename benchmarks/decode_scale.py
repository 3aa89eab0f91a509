"""How much longer the skin data chapter's image-reading cells take on Kaggle's HAM10000 files
(600x450 px) than on the copies this book runs on (200x150 px).

``benchmarks/colab_time.py`` adds, to each such cell of the published ``cpu`` run, the extra
seconds per image measured here times the images the cell read, to estimate a Colab user's
time. The pixels are 9 times as many, but each image also costs a file open, a 64x64 DCT (the
perceptual hash) and Python's own work that do not grow with them, and the cells do work on
the whole set that no image's size changes (the all-pairs comparison of hashes): the extra is
measured rather than the cell multiplied by 9.

Method: ``--images`` HAM10000 copies (the first by name) are enlarged to 600x450 with Lanczos
and written as JPEG (quality 90) to a temporary folder; each function the data chapter runs on
every image (``audit.perceptual_hashes``, ``shortcuts.file_properties``) is then timed on the
copies and on the enlarged files, alternately, ``--repeats`` times, in CPU seconds of this process,
and the fastest of each is kept. The work is one thread's, so on an idle machine its CPU
seconds are its wall-clock seconds, which the published run recorded.

Usage: python -m benchmarks.decode_scale [--data-dir ../shared/data] [--images 300] [--repeats 5]
Writes benchmarks/results/decode_scale.csv.
"""

from __future__ import annotations

import argparse
import functools
import tempfile
import time
from pathlib import Path

import pandas as pd
from PIL import Image

from medclass import audit, shortcuts
from tools.provenance import machine

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "decode_scale.csv"
KAGGLE_SIZE = (600, 450)
# The marker colab_time finds in a cell's source -> what that cell runs on every image.
FUNCTIONS = {
    "perceptual_hashes": audit.perceptual_hashes,
    "file_properties": lambda paths: shortcuts.file_properties(pd.DataFrame({"path": paths})),
}


def enlarged(paths: list[Path], folder: Path) -> list[str]:
    """``paths`` written again at Kaggle's size into ``folder``."""
    written = []
    for path in paths:
        with Image.open(path) as image:
            image.convert("RGB").resize(KAGGLE_SIZE, Image.Resampling.LANCZOS).save(
                folder / path.name, quality=90
            )
        written.append(str(folder / path.name))
    return written


def timed(function, paths: list[str]) -> float:
    """The CPU seconds of ``function(paths)`` in this process: unlike the wall clock, they do
    not grow when another process shares the cores."""
    started = time.process_time()
    function(paths)
    return time.process_time() - started


def measure(data_dir: Path, images: int, repeats: int) -> pd.DataFrame:
    copies = sorted((data_dir / "ham10000").rglob("*.jpg"))[:images]
    if len(copies) < images:
        raise SystemExit(f"Found {len(copies)} HAM10000 images under {data_dir}; pass --data-dir.")
    with Image.open(copies[0]) as first:
        measured_size = first.size
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        large = enlarged(copies, Path(scratch))
        small = [str(path) for path in copies]
        for marker, function in FUNCTIONS.items():
            times = {"small": [], "large": []}
            for _ in range(repeats):
                times["small"].append(timed(function, small))
                times["large"].append(timed(function, large))
            small_s, large_s = min(times["small"]), min(times["large"])
            rows.append(
                {
                    "marker": marker,
                    "images": images,
                    "copies_px": "x".join(map(str, measured_size)),
                    "kaggle_px": "x".join(map(str, KAGGLE_SIZE)),
                    "copies_s": round(small_s, 3),
                    "kaggle_s": round(large_s, 3),
                    "ratio": round(large_s / small_s, 2),
                    "extra_s_per_image": round((large_s - small_s) / images, 5),
                    "repeats": repeats,
                    "machine": machine(),
                }
            )
    return pd.DataFrame(rows)


@functools.cache
def extra_seconds(path: Path = RESULTS) -> dict[str, float]:
    """The seconds each image adds to each marker's work at Kaggle's size, as colab_time reads
    them (read once a process: the estimate asks for every cell)."""
    if not path.is_file():
        raise SystemExit(f"{path} is missing: run python -m benchmarks.decode_scale first.")
    return dict(pd.read_csv(path).set_index("marker")["extra_s_per_image"])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    table = measure(args.data_dir, args.images, args.repeats)
    table.to_csv(RESULTS, index=False)
    print(table.to_string(index=False))


if __name__ == "__main__":
    main()
