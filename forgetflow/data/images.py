"""Image files -> uint8 arrays (H, W, C), with the channels the file stores.

Grayscale files (PIL modes 1, L, LA, I;16, I, F) stay one channel; colour files (RGB, RGBA, P,
CMYK, YCbCr, ...) become RGB. Alpha is dropped: the classifier sees no transparency. 16-bit and
float grayscale is scaled to 0..255. One dataset has one image shape, so a set mixing grayscale and
colour files is stored as RGB, each grayscale image repeated over the three channels (lossless).
Images must share one size unless `data.resize` names one (then every image is resized to it).
Two samples may not hold the same pixels: erasure finds a forgotten image by its SHA-256, so a
duplicate kept under another sample would make it remove (or fail to prove removed) the wrong data.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from forgetflow.errors import DataSourceError

GRAYSCALE_MODES = {"1", "L", "LA", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"}


def read_image(path: Path, resize: tuple[int, int] | None = None) -> np.ndarray:
    """One file as uint8 (H, W, 1) or (H, W, 3); raises OSError/ValueError if PIL cannot read it."""
    from PIL import Image

    with Image.open(path) as img:
        img.load()
        img = _grayscale_8bit(img) if img.mode in GRAYSCALE_MODES else img.convert("RGB")
        if resize is not None:
            img = img.resize((resize[1], resize[0]), Image.Resampling.BILINEAR)
        array = np.asarray(img, dtype=np.uint8)
    return array[..., None] if array.ndim == 2 else array


def _grayscale_8bit(img):
    from PIL import Image

    if img.mode in ("1", "L", "LA"):
        return img.convert("L")
    values = np.asarray(img, dtype=np.float64)
    if img.mode == "F":
        scaled = values * 255.0 if np.nanmax(values, initial=0.0) <= 1.0 else values
    else:  # 16/32-bit integers: a 16-bit range unless every value fits in 8 bits
        scaled = values / 257.0 if values.max(initial=0) > 255 else values
    return Image.fromarray(np.clip(np.rint(np.nan_to_num(scaled)), 0, 255).astype(np.uint8), mode="L")


def resize_shape(resize) -> tuple[int, int] | None:
    """`data.resize` (null, N or [H, W]) as (H, W)."""
    if resize is None:
        return None
    if isinstance(resize, int):
        return (resize, resize)
    return (int(resize[0]), int(resize[1]))


def stack_images(arrays: list[np.ndarray], names: list[str], *, what: str) -> tuple[np.ndarray, str]:
    """One (N, H, W, C) array, and how the channels were kept (for the dataset's description).

    `names` says where each image came from (a file, or a manifest line) for the error message.
    """
    channels = {a.shape[2] for a in arrays}
    note = "as stored (grayscale)" if channels == {1} else "as stored (RGB)"
    if channels == {1, 3}:
        arrays = [np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a for a in arrays]
        note = "RGB (the grayscale images repeated over three channels)"
    sizes = Counter(a.shape[:2] for a in arrays)
    if len(sizes) > 1:
        (h, w), _ = sizes.most_common(1)[0]
        odd = [f"{name} is {a.shape[0]}x{a.shape[1]}" for name, a in zip(names, arrays) if a.shape[:2] != (h, w)]
        raise DataSourceError(
            f"{what}: images have different shapes: {len(odd)} of {len(arrays)} are not {h}x{w} (height x width), e.g. {'; '.join(odd[:5])}",
            "set `data.resize: [H, W]` (or `data.resize: N` for N x N) in params.yaml to resize every image on import, or resize the files to one size",
        )
    return np.stack(arrays), note


def duplicates(images: np.ndarray) -> list[tuple[int, int]]:
    """(first, later) index pairs of images with identical stored bytes."""
    from forgetflow.data.store import content_hashes

    first: dict[str, int] = {}
    pairs = []
    for index, digest in enumerate(content_hashes(images)):
        if digest in first:
            pairs.append((first[digest], index))
        else:
            first[digest] = index
    return pairs
