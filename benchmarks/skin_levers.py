"""Levers for the skin-lesion recipe, each measured on the validation split (issue 17).

Usage:
    python benchmarks/skin_levers.py probe [--variants square-160 ...]
    python benchmarks/skin_levers.py finetune --name NAME [--height 168 --width 224]
        [--shades-of-gray] [--colour] [--loss class_weight|logit_adjusted] [--epochs 8]
        [--learning-rate 2e-4] [--seed 42]
    python benchmarks/skin_levers.py table

Both read the split the data chapter wrote (``--manifest``, by default the ``cpu`` profile's
``_build/outputs/cpu/ham10000/manifest.csv``: run ``skin_01_data`` with that profile first) and
the images under ``--data-dir``. The test split is never read.

- ``probe``: the frozen MobileNetV2 0.35 (ImageNet weights from ``../shared/weights``) turns
  every image into pooled features once per input treatment (square 160 px or the images' own
  aspect at 168 x 224; Shades of Gray colour constancy or none); a logistic regression on the
  training features then scores the validation split, with and without the metadata (age, sex,
  body site), on the last block's features or on three blocks' (multi-level). About 5 minutes.
- ``finetune``: the head trained 2 epochs on the frozen backbone, then the whole network
  (BatchNorm statistics kept) for ``--epochs`` at a learning rate warmed up over one epoch and
  decayed on a cosine; flips, a random crop of 80-100% and mild brightness and contrast, plus
  saturation, hue and per-channel gain with ``--colour``. ``--loss logit_adjusted`` trains on
  logits plus the log class prior (Menon et al. 2021) instead of class weights. About 6 minutes
  at 160 px and 8 epochs on two cores.

Every run adds rows to ``benchmarks/results/skin_levers.csv`` (a row of the same kind, name and
rule is replaced); ``table`` writes ``book/generated/skin_levers.md`` from it, the table of the
performance appendix.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import tensorflow as tf  # noqa: E402
from keras import layers, ops  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from medclass import evaluation, images  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "skin_levers.csv"
TABLE = ROOT / "book" / "generated" / "skin_levers.md"
WEIGHTS = ROOT / ".." / "shared" / "weights" / "mobilenet_v2_0.35_imagenet_notop.weights.h5"
CLASSES = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]
# name: (height, width, Shades of Gray)
PROBES = {
    "square-160": (160, 160, False),
    "square-160+shades-of-gray": (160, 160, True),
    "native-168x224": (168, 224, False),
    "native-168x224+shades-of-gray": (168, 224, True),
}
PROBE_LAYERS = ("block_6_expand_relu", "block_13_expand_relu", "out_relu")


def load(manifest: Path, data_dir: Path, cache: Path):
    """The manifest's training and validation rows, their labels, metadata and decoded images
    (kept in ``cache`` as one array: decoding 10,000 JPEGs takes longer than a probe)."""
    if not manifest.is_file():
        raise SystemExit(
            f"No split at {manifest}. Run the data chapter with the cpu profile first: "
            "make book PROFILE=cpu (or tools.book --profile cpu --only skin_01_data)."
        )
    frame = pd.read_csv(manifest)
    frame = frame[frame.split.isin(["train", "val"])].reset_index(drop=True)
    if cache.is_file():
        raw = np.load(cache)
    else:
        raw = np.stack([images.read_rgb(str(data_dir / p)) for p in frame.path])  # the chapters' decoder
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.save(cache, raw)
    labels = frame.label.map({c: i for i, c in enumerate(CLASSES)}).to_numpy()
    train = (frame.split == "train").to_numpy()
    meta = pd.get_dummies(frame[["sex", "localization"]].fillna("unknown")).astype("float32").to_numpy()
    age = frame.age.fillna(frame.age[train].mean()).to_numpy()[:, None] / 100
    meta = np.hstack([meta, age, frame.age.isna().to_numpy()[:, None]]).astype("float32")
    return frame, raw, labels, train, meta


def scores(y_true, y_pred) -> dict:
    k = len(CLASSES)
    return {
        "balanced accuracy": evaluation.balanced_accuracy(y_true, y_pred),
        "macro-F1": evaluation.macro_f1(y_true, y_pred, k),
        "accuracy": evaluation.accuracy(y_true, y_pred),
    }


def shades_of_gray(images, power: float = 6.0):
    """Shades of Gray colour constancy (Finlayson and Trezzi 2004): each channel divided by its
    Minkowski p-norm over the image, scaled back to the grey mean."""
    images = ops.cast(images, "float32")
    norm = ops.power(ops.mean(ops.power(images / 255.0 + 1e-6, power), axis=(1, 2), keepdims=True), 1 / power)
    return ops.clip(images * ops.mean(norm, axis=-1, keepdims=True) / (norm + 1e-6), 0, 255)


def probe(args) -> list[dict]:
    frame, raw, y, train, meta = load(args.manifest, args.data_dir, args.cache)
    val = ~train
    rows = []
    for name in args.variants:
        height, width, constancy = PROBES[name]
        start = time.time()
        base = keras.applications.MobileNetV2(
            alpha=0.35, include_top=False, weights=str(WEIGHTS), input_shape=(height, width, 3)
        )
        pooled = [layers.GlobalAveragePooling2D()(base.get_layer(n).output) for n in PROBE_LAYERS]
        extractor = keras.Model(base.input, pooled)
        parts = [[] for _ in PROBE_LAYERS]
        for first in range(0, len(raw), 64):
            images = tf.image.resize(tf.cast(raw[first : first + 64], tf.float32), (height, width))
            if constancy:
                images = shades_of_gray(images)
            for part, out in zip(parts, extractor(images / 127.5 - 1.0, training=False), strict=True):
                part.append(np.asarray(out))
        features = [np.concatenate(part) for part in parts]
        seconds = time.time() - start
        last, multi = features[-1], np.hstack(features)
        heads = {
            "last block": last,
            "last block + metadata": np.hstack([last, meta]),
            "three blocks": multi,
            "three blocks + metadata": np.hstack([multi, meta]),
        }
        for head, x in heads.items():
            x = StandardScaler().fit(x[train]).transform(x)
            model = LogisticRegression(
                C=0.05 if x.shape[1] > 500 else 1.0, max_iter=3000, class_weight="balanced"
            )
            predicted = model.fit(x[train], y[train]).predict(x[val])
            rows.append(
                {
                    "kind": "frozen features, logistic regression",
                    "name": f"{name}, {head}",
                    "rule": "argmax (class-weighted fit)",
                    **scores(y[val], predicted),
                    "seconds": round(seconds, 1),
                }
            )
            print(rows[-1], flush=True)
    return rows


def finetune(args) -> list[dict]:
    keras.utils.set_random_seed(args.seed)
    frame, raw, y, train, _ = load(args.manifest, args.data_dir, args.cache)
    train_index, val_index = np.where(train)[0], np.where(~train)[0]
    prior = np.bincount(y[train_index], minlength=len(CLASSES)) / len(train_index)

    inputs = keras.Input((None, None, 3))
    x = layers.Resizing(args.height, args.width)(inputs)
    if args.shades_of_gray:
        x = layers.Lambda(shades_of_gray)(x)
    x = layers.Rescaling(1 / 127.5, -1)(x)
    base = keras.applications.MobileNetV2(
        alpha=0.35, include_top=False, weights=str(WEIGHTS), input_shape=(args.height, args.width, 3)
    )
    x = layers.Dropout(0.3)(layers.GlobalAveragePooling2D()(base(x, training=False)))
    model = keras.Model(inputs, layers.Dense(len(CLASSES), dtype="float32")(x))

    def augment(image, label):
        image = tf.image.convert_image_dtype(image, tf.float32)
        image = tf.image.random_flip_up_down(tf.image.random_flip_left_right(image))
        shape, scale = tf.cast(tf.shape(image), tf.float32), tf.random.uniform([], 0.8, 1.0)
        crop = tf.cast(tf.stack([shape[0] * scale, shape[1] * scale, 3.0]), tf.int32)
        image = tf.image.resize(tf.image.random_crop(image, crop), raw.shape[1:3])
        image = tf.image.random_contrast(tf.image.random_brightness(image, 0.1), 0.9, 1.1)
        if args.colour:
            image = tf.image.random_hue(tf.image.random_saturation(image, 0.7, 1.3), 0.03)
            image = image * tf.random.uniform([1, 1, 3], 0.9, 1.1)
        return tf.clip_by_value(image, 0, 1) * 255.0, label

    def dataset(index, training):
        data = tf.data.Dataset.from_tensor_slices((raw[index], y[index]))
        if training:
            data = data.shuffle(len(index), seed=args.seed).map(augment, num_parallel_calls=2)
        else:
            data = data.map(lambda image, label: (tf.cast(image, tf.float32), label))
        return data.batch(32).prefetch(2)

    if args.loss == "logit_adjusted":
        log_prior = tf.constant(np.log(prior), tf.float32)

        def loss(labels, logits):
            return keras.losses.sparse_categorical_crossentropy(labels, logits + log_prior, from_logits=True)

        class_weight = None
    else:
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        class_weight = dict(enumerate(len(train_index) / (len(CLASSES) * np.bincount(y[train_index]))))
    train_ds, val_ds = dataset(train_index, True), dataset(val_index, False)
    steps = len(train_ds)

    def fit(epochs, learning_rate, cosine):
        if cosine:  # one epoch of warm-up from 1/20 of the rate, then a cosine decay
            learning_rate = keras.optimizers.schedules.CosineDecay(
                learning_rate / 20, (epochs - 1) * steps, warmup_target=learning_rate, warmup_steps=steps
            )
        model.compile(keras.optimizers.AdamW(learning_rate, weight_decay=1e-4), loss=loss)
        model.fit(train_ds, epochs=epochs, class_weight=class_weight, verbose=2)

    def rows_for(kind):
        logits = model.predict(val_ds, verbose=0)
        rules = {"argmax": logits.argmax(1)}
        if args.loss == "logit_adjusted":  # the log prior added back: the plain posterior
            rules["argmax of logits + log prior"] = (logits + np.log(prior)).argmax(1)
        rows = [
            {
                "kind": kind,
                "name": args.name,
                "rule": rule,
                **scores(y[val_index], predicted),
                "seconds": round(time.time() - start, 1),
            }
            for rule, predicted in rules.items()
        ]
        for row in rows:
            print(row, flush=True)
        return rows

    start = time.time()
    base.trainable = False
    fit(2, 1e-3, cosine=False)
    head_rows = rows_for("head only, 2 epochs on the frozen backbone")
    base.trainable = True
    for layer in base.layers:
        if isinstance(layer, layers.BatchNormalization):
            layer.trainable = False
    fit(args.epochs, args.learning_rate, cosine=True)
    return head_rows + rows_for(f"whole network fine-tuned, + {args.epochs} epochs")


def save(rows: list[dict], path: Path = RESULTS) -> None:
    old = pd.read_csv(path) if path.is_file() else pd.DataFrame(columns=list(rows[0]))
    new = pd.DataFrame(rows)
    key = ["kind", "name", "rule"]
    keep = ~old.set_index(key).index.isin(new.set_index(key).index)
    pd.concat([old[keep], new], ignore_index=True).to_csv(path, index=False)


def write_table(path: Path = TABLE, results: Path = RESULTS) -> Path:
    table = pd.read_csv(results)
    order = {"frozen features, logistic regression": 0, "head only, 2 epochs on the frozen backbone": 1}
    table = table.sort_values("kind", key=lambda kinds: kinds.map(order).fillna(2), kind="stable")
    lines = [
        "| how | lever | decision rule | val balanced accuracy | val macro-F1 | val accuracy | seconds |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in table.itertuples(index=False):
        lines.append(
            f"| {row.kind} | {row.name} | {row.rule} | {row[3]:.3f} | {row[4]:.3f} | {row[5]:.3f} "
            f"| {'–' if pd.isna(row.seconds) else f'{row.seconds:.0f}'} |"
        )
    path.write_text("\n".join(lines) + "\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["probe", "finetune", "table"])
    parser.add_argument("--manifest", type=Path, default=ROOT / "_build/outputs/cpu/ham10000/manifest.csv")
    parser.add_argument("--data-dir", type=Path, default=ROOT / ".." / "shared" / "data" / "ham10000")
    # images_pil: decoded by medclass.images, not the TF-decoded images.npy of earlier runs
    parser.add_argument("--cache", type=Path, default=ROOT / "_build" / "skin_levers" / "images_pil.npy")
    parser.add_argument("--variants", nargs="+", default=list(PROBES), choices=list(PROBES))
    parser.add_argument("--name")
    parser.add_argument("--height", type=int, default=160)
    parser.add_argument("--width", type=int, default=160)
    parser.add_argument("--shades-of-gray", action="store_true")
    parser.add_argument("--colour", action="store_true")
    parser.add_argument("--loss", choices=["class_weight", "logit_adjusted"], default="class_weight")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--learning-rate", type=float, default=2e-4)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    if args.command == "finetune" and not args.name:
        parser.error("finetune needs --name, the row's name in the table")
    if args.command != "table":
        save(probe(args) if args.command == "probe" else finetune(args))
    print(f"wrote {write_table()}")


if __name__ == "__main__":
    main()
