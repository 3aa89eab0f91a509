"""One image decoder for training, evaluation, the external report and the demo app.

Whatever reads an image file turns it into the same RGB ``uint8`` pixels: the input pipeline
(:func:`medclass.pipeline.decode_and_resize`, which every chapter, Grad-CAM figure and
``medclass.report`` goes through) and the app's uploads (:func:`medclass.serving.read_image`,
which adds its size limits). A file that training saw one way is never shown to the model
another way.

Reached through ``medclass.pipeline`` from chapter "Transfer learning"
(notebooks/concepts_03_transfer.ipynb) on. First used in chapter "Brain MRI: the data"
(notebooks/brain_01_data.ipynb), to show LGG's sequences, each channel of a slice read through a
channel path; explained in chapter "Brain MRI: training" (notebooks/brain_02_training.ipynb).
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import threading

import numpy as np
from PIL import Image, ImageOps

# Smaller than this on either side, an image carries too little to classify: training skips
# it, the app refuses it.
MIN_IMAGE_SIDE = 32
_STDERR = threading.Lock()  # one JPEG check at a time holds file descriptor 2
# A path that names one channel of a multi-channel file, as a greyscale image:
# ``slice_12.tif#channel=1`` is the FLAIR channel of an LGG slice (medclass.datasets.lgg).
CHANNEL_MARK = "#channel="


def channel_path(path, channel: int) -> str:
    """The path that stands for channel ``channel`` of the file at ``path``."""
    return f"{os.fsdecode(path)}{CHANNEL_MARK}{int(channel)}"


def split_channel(path) -> tuple[str, int | None]:
    """``(file, channel)`` of a path from :func:`channel_path`; ``(path, None)`` for a plain path."""
    path = os.fsdecode(path)
    file, mark, channel = path.rpartition(CHANNEL_MARK)
    if not mark or not channel.isdigit():
        return path, None
    return file, int(channel)


@contextlib.contextmanager
def open_image(path):
    """Open the image at ``path`` with Pillow: the file itself, or for a path from
    :func:`channel_path` that channel of it as a greyscale (``L``) image. Every reader of pixels
    in medclass opens images here, so a channel path is read the same way everywhere."""
    file, channel = split_channel(path)
    with Image.open(file) as image:
        if channel is None:
            yield image
            return
        image.load()
        if channel >= len(image.getbands()):
            raise ValueError(f"{file} has {len(image.getbands())} channel(s); channel {channel} asked for.")
        plane = image.getchannel(channel)
        plane.format = image.format  # what the file is, for the audits of file properties
        yield plane


def to_rgb(image: Image.Image) -> tuple[np.ndarray, list[str]]:
    """The pixels of an opened Pillow image as RGB ``uint8``, and notes on what was converted.

    The EXIF orientation is applied; palette images are expanded; images of more than 8 bits per
    pixel are scaled to 0-255 by their maximum; transparency is flattened onto black (the
    background of MRI and of most dermatoscopy borders); grayscale is copied to three channels;
    CMYK and other modes are converted.
    """
    notes = []
    if image.getexif().get(0x0112, 1) != 1:  # the EXIF Orientation tag
        notes.append("rotated as its EXIF orientation says")
    image = ImageOps.exif_transpose(image)
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        notes.append("palette colours expanded to RGB")
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        pixels = np.asarray(image, dtype="float32")
        pixels = pixels / max(pixels.max(), 1) * 255
        image = Image.fromarray(pixels.round().astype("uint8"), "L")
        notes.append("scaled from more than 8 bits per pixel")
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        background = Image.new("RGBA", image.size, (0, 0, 0, 255))
        image = Image.alpha_composite(background, image.convert("RGBA"))
        notes.append("transparency flattened onto black")
    if image.mode in ("L", "1"):
        notes.append("grayscale copied to three channels")
    elif image.mode not in ("RGB", "RGBA"):
        notes.append(f"converted from {image.mode} to RGB")
    return np.asarray(image.convert("RGB"), dtype="uint8"), notes


def read_rgb(path) -> np.ndarray:
    """The file at ``path`` (a path, or the bytes of one in a NumPy scalar, as
    ``tf.numpy_function`` passes it) as RGB ``uint8`` pixels, by :func:`to_rgb`."""
    if isinstance(path, np.ndarray):
        path = path.item()
    with open_image(path) as image:
        image.load()
        return to_rgb(image)[0]


def jpeg_damage(data: bytes) -> str | None:
    """What libjpeg says is wrong with the compressed data of a JPEG, or None when it says nothing.

    Pillow decodes a JPEG whose entropy-coded data is damaged (a changed or lost byte in the
    middle of the file) without a word: libjpeg fills what it cannot read and only prints
    "Corrupt JPEG data: ..." to the process's standard error. This decodes ``data`` once more
    with TensorFlow's libjpeg, at 1/8 scale (the whole compressed stream is still read), and
    catches that message. JPEG has no checksum: a changed byte that leaves the stream valid
    (11 of 40 damaged copies in ``tests/test_data.py``) is caught by no decoder.
    """
    import tensorflow as tf

    with _STDERR, tempfile.TemporaryFile() as sink:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            tf.io.decode_jpeg(data, ratio=8)
        except tf.errors.InvalidArgumentError:
            pass  # a stream libjpeg cannot decode at all: Pillow, which read it first, decides
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        sink.seek(0)
        said = sink.read().decode("utf-8", "replace").splitlines()
    damage = [line for line in said if line.startswith("Corrupt JPEG data")]
    others = [line for line in said if line not in damage]
    if others:  # anything else written meanwhile goes where it was going
        print("\n".join(others), file=sys.stderr)
    return damage[0].removeprefix("Corrupt JPEG data: ") if damage else None
