"""Peak memory of decoding one large upload in the demo app: the app's reader
(:func:`medclass.serving.read_image`) on 40-megapixel images that compress to a few hundred KiB,
each in a fresh process, measured as the growth of the process's peak resident set (Linux).

Usage: python benchmarks/upload_memory.py [--side 6324]
Results go in benchmarks/results/upload_memory.csv and the performance appendix.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
# VmHWM, the peak resident set of this process's memory (not ru_maxrss, which a child inherits
# from the process that started it).
MEASURE = """
import sys
import tensorflow  # loaded in the app with the model, before any upload
from medclass import serving


def peak_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024


data = open(sys.argv[1], "rb").read()
before = peak_mb()
pixels, notes = serving.read_image(data, sys.argv[1])
print(peak_mb() - before, pixels.shape[0], pixels.shape[1])
"""


def write_uploads(folder: Path, side: int) -> dict[str, Path]:
    """Smooth test patterns, so that 40 megapixels fit in an upload of a few hundred KiB."""
    y, x = np.ogrid[:side, :side]
    grey = ((x + y) % 256).astype("uint8")
    images = {
        "PNG, 8-bit grey": Image.fromarray(grey, "L"),
        "PNG, RGB": Image.fromarray(grey, "L").convert("RGB"),
        "PNG, 16-bit grey": Image.fromarray(((x * 7 + y * 3) % 65536).astype("uint16")),
        "JPEG, RGB": Image.fromarray(grey, "L").convert("RGB"),
        "PNG, palette with transparency": Image.fromarray(grey, "L").convert("P"),
    }
    images["PNG, palette with transparency"].info["transparency"] = 0
    paths = {}
    for name, image in images.items():
        paths[name] = folder / (
            name.replace(", ", "_").replace(" ", "_") + (".jpg" if "JPEG" in name else ".png")
        )
        image.save(paths[name], quality=60) if "JPEG" in name else image.save(paths[name])
    return paths


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--side", type=int, default=6324, help="pixels a side (6324: just under the 40-megapixel limit)"
    )
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name, path in write_uploads(Path(folder), args.side).items():
            out = subprocess.run([sys.executable, "-c", MEASURE, str(path)], capture_output=True, text=True)
            if out.returncode:
                raise SystemExit(f"{name}: {out.stderr.strip().splitlines()[-1]}")
            peak, height, width = out.stdout.split()
            rows.append(
                {
                    "upload": name,
                    "megapixels": round(args.side**2 / 1e6, 1),
                    "file KiB": round(path.stat().st_size / 1024),
                    "decoded to": f"{width}x{height}",
                    "peak memory MB": round(float(peak)),
                }
            )
    table = pd.DataFrame(rows)
    out = ROOT / "benchmarks" / "results" / "upload_memory.csv"
    table.to_csv(out, index=False)
    print(table.to_markdown(index=False))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
