"""Training throughput (images/s) of a backbone on this machine, frozen and fully trained.

Usage: python benchmarks/train_throughput.py [--backbone resnet50] [--sizes 64 96 128]
Random pixels, batch 32, one warm-up epoch, then two timed epochs of 128 images each.
Results go in book/performance.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from medclass import models  # noqa: E402


def images_per_second(model: keras.Model, images: np.ndarray, labels: np.ndarray, epochs: int = 2) -> float:
    model.fit(images, labels, batch_size=32, epochs=1, verbose=0)  # warm-up: tracing and compilation
    started = time.perf_counter()
    model.fit(images, labels, batch_size=32, epochs=epochs, verbose=0)
    return epochs * len(images) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backbone", default="resnet50", choices=sorted(models.BACKBONES))
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 96, 128])
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, keras {keras.__version__} "
        f"on {keras.backend.backend()}"
    )
    print("| backbone | size | all layers trained (img/s) | backbone frozen (img/s) |")
    print("|---|---|---|---|")
    for size in args.sizes:
        images = rng.uniform(0, 255, (128, size, size, 3)).astype("float32")
        labels = rng.integers(0, 2, 128).astype("float32")
        model, base = models.build_classifier(args.backbone, None, (size, size), num_classes=2)
        base.trainable = True
        model.compile(optimizer="adam", loss="binary_crossentropy")
        trained = images_per_second(model, images, labels)
        base.trainable = False
        model.compile(optimizer="adam", loss="binary_crossentropy")
        frozen = images_per_second(model, images, labels)
        print(f"| {args.backbone} | {size} | {trained:.1f} | {frozen:.1f} |", flush=True)


if __name__ == "__main__":
    main()
