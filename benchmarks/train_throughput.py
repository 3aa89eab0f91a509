"""Training throughput (images/s) per backbone, image size and precision, on this machine.

Usage:
    python benchmarks/train_throughput.py --backbones resnet50 efficientnet_b0 mobilenet_v2 \
        --sizes 96 160 224 --precisions float32 mixed [--xla on off] [--out results.csv]
    KERAS_BACKEND=jax python benchmarks/train_throughput.py ...   # e.g. on a GPU without TensorFlow

Each row trains the book's classifier (random initialisation, every layer trainable, AdamW, the
book's compile settings) on random pixels: one warm-up epoch for tracing and compilation, then
timed epochs. ``--xla auto`` (the default) uses what medclass.hardware chooses: on on a GPU, off
on a CPU. Results go in book/performance.md with the hardware named.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from medclass import hardware, models, training  # noqa: E402


def images_per_second(
    model: keras.Model, images: np.ndarray, labels: np.ndarray, batch_size: int, epochs: int
):
    model.fit(images, labels, batch_size=batch_size, epochs=1, verbose=0)  # warm-up: tracing, compilation
    started = time.perf_counter()
    model.fit(images, labels, batch_size=batch_size, epochs=epochs, verbose=0)
    return epochs * len(images) / (time.perf_counter() - started)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    accelerator = hardware.configure()
    return (
        f"{cpu}, {os.cpu_count()} cores; {accelerator.kind.upper()} x{accelerator.devices}; "
        f"keras {keras.__version__} on {keras.backend.backend()}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backbones", nargs="+", default=["resnet50", "efficientnet_b0", "mobilenet_v2"])
    parser.add_argument("--sizes", type=int, nargs="+", default=[96, 160])
    parser.add_argument("--precisions", nargs="+", default=["float32", "mixed"], choices=["float32", "mixed"])
    parser.add_argument("--xla", nargs="+", default=["auto"], choices=["auto", "on", "off"])
    parser.add_argument("--images", type=int, default=128, help="images per timed epoch")
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--alpha", type=float, default=0.35, help="MobileNetV2 width multiplier")
    parser.add_argument("--out", help="also write the rows to this CSV file")
    args = parser.parse_args()
    for name in args.backbones:
        models.backbone_spec(name)  # fail early on a typo
    print(machine(), flush=True)
    print("| backbone | size | precision | XLA | train img/s |")
    print("|---|---|---|---|---|", flush=True)
    rng = np.random.default_rng(0)
    rows = []
    for backbone in args.backbones:
        for size in args.sizes:
            images = rng.uniform(0, 255, (args.images, size, size, 3)).astype("float32")
            labels = rng.integers(0, 2, args.images).astype("float32")
            for precision in args.precisions:
                for xla in args.xla:
                    accelerator = hardware.configure(mixed_precision=precision == "mixed")
                    jit = accelerator.jit_compile if xla == "auto" else xla == "on"
                    model, base = models.build_classifier(backbone, None, size, 2, alpha=args.alpha)
                    base.trainable = True
                    loss, metrics = training.Recipe().loss_and_metrics(2)
                    optimizer = keras.optimizers.AdamW(1e-4)
                    model.compile(optimizer=optimizer, loss=loss, metrics=metrics, jit_compile=jit)
                    speed = images_per_second(model, images, labels, args.batch_size, args.epochs)
                    row = {
                        "backbone": backbone,
                        "size": size,
                        "precision": precision,
                        "xla": "on" if jit else "off",
                        "images_per_s": round(speed, 1),
                    }
                    rows.append(row)
                    print(f"| {backbone} | {size} | {precision} | {row['xla']} | {speed:.1f} |", flush=True)
                    keras.backend.clear_session()
    keras.mixed_precision.set_global_policy("float32")
    if args.out:
        with open(args.out, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)


if __name__ == "__main__":
    main()
