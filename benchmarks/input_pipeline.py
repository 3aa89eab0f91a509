"""Input-pipeline throughput on the real brain-MRI images: this book's tf.data pipeline against
the reference notebooks' style, ``ImageDataGenerator.flow_from_dataframe`` (Keras 3 keeps it as
``keras.src.legacy``), with comparable augmentation, the same image size and batch size.

Usage: python benchmarks/input_pipeline.py [--data-dir ../shared/data] [--images 2000]
       [--image-size 224] [--batch-size 32] [--epochs 3]
Epoch 1 includes decoding every file; later epochs read tf.data's cache (the reference style
has none and decodes every file every epoch). Both apply a random rotation, zoom and shift to
every image, every epoch; a third row shows this book's pipeline without augmentation.
Results go in book/performance.md.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pandas as pd  # noqa: E402
from keras.src.legacy.preprocessing.image import ImageDataGenerator  # noqa: E402

from medclass import augment, data, pipeline, splits  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def time_epochs(batches_of_epoch, epochs: int, n_images: int) -> list[float]:
    """Images per second for each epoch of iterating ``batches_of_epoch()``."""
    rates = []
    for _ in range(epochs):
        started = time.perf_counter()
        for _batch in batches_of_epoch():
            pass
        rates.append(n_images / (time.perf_counter() - started))
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    if (
        not (Path(args.data_dir) / "brain-tumor-mri").is_dir()
        and not (Path(args.data_dir) / "Training").is_dir()
    ):
        raise SystemExit(
            f"No brain-MRI data under {args.data_dir}; pass --data-dir (see ../shared/data/README.md)."
        )

    frame = splits.cap_images(data.load_dataset("brain_mri", args.data_dir), args.images, seed=0)
    size = (args.image_size, args.image_size)
    n_images = len(frame) - len(frame) % args.batch_size  # whole batches only, for both
    frame = frame.iloc[:n_images]
    class_names = ["Healthy", "Tumor"]

    ours = pipeline.make_dataset(
        frame,
        class_names,
        size,
        args.batch_size,
        training=True,
        augment=augment.make_augmentation("mild", seed=0, num_classes=2),
        seed=0,
    )
    ours_plain = pipeline.make_dataset(frame, class_names, size, args.batch_size, training=True, seed=0)
    generator = ImageDataGenerator(
        rotation_range=10,
        zoom_range=0.1,
        width_shift_range=0.05,
        height_shift_range=0.05,
        fill_mode="constant",
    )
    reference = generator.flow_from_dataframe(
        pd.DataFrame({"filename": frame["path"], "class": frame["label"]}),
        x_col="filename",
        y_col="class",
        target_size=size,
        batch_size=args.batch_size,
        class_mode="binary",
        shuffle=True,
        seed=0,
    )

    def reference_epoch():
        for index in range(len(reference)):
            yield reference[index]
        reference.on_epoch_end()

    rates = {
        "tf.data + cache (this book)": time_epochs(lambda: ours, args.epochs, n_images),
        "ImageDataGenerator.flow_from_dataframe": time_epochs(reference_epoch, args.epochs, n_images),
        "tf.data + cache, no augmentation": time_epochs(lambda: ours_plain, args.epochs, n_images),
    }
    print(
        f"{n_images} real brain-MRI images, {args.image_size} px, batch {args.batch_size}, "
        f"{os.cpu_count()} CPU cores"
    )
    print(
        "| pipeline | epoch 1 (img/s) | "
        + " | ".join(f"epoch {e + 1} (img/s)" for e in range(1, args.epochs))
        + " |"
    )
    print("|---|" + "---|" * args.epochs)
    for name, values in rates.items():
        print(f"| {name} | " + " | ".join(f"{value:.0f}" for value in values) + " |")
    ours_rates, reference_rates, _ = rates.values()
    cached_ratio = sum(ours_rates[1:]) / sum(reference_rates[1:])
    print(
        f"ratio after the first epoch: {cached_ratio:.1f}x; "
        f"first epoch: {ours_rates[0] / reference_rates[0]:.1f}x"
    )


if __name__ == "__main__":
    main()
