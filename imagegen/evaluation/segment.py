"""Pixels to coloured blobs: background estimate, palette unmixing and connected components.

Owns the first half of the Shapes scorer (the second half, naming each blob's shape, is
`shape_features` + `shape_model`). Every pixel is explained as a blend of the background
and one palette colour, `pixel = bg + alpha * (colour - bg)`, which is exactly how the renderer
antialiases edges and how a blur mixes them; a pixel belongs to the colour whose blend line it
lies closest to, when that blend is at least half object. Connected components of one colour
are the candidate objects, as a detector's boxes are in GenEval (Ghosh et al. 2023).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from imagegen.data.prompts import BACKGROUNDS, COLORS
from imagegen.utils.images import to_levels

COLOR_NAMES: tuple[str, ...] = tuple(COLORS)
PALETTE = np.array([COLORS[name] for name in COLOR_NAMES], dtype=np.float32)  # [8, 3]
BACKGROUND_NAMES: tuple[str, ...] = tuple(BACKGROUNDS)
BACKGROUND_PALETTE = np.array([BACKGROUNDS[name] for name in BACKGROUND_NAMES], dtype=np.float32)

BACKGROUND_MAX_DISTANCE = 60.0  # RGB distance from the border median to name a background
OBJECT_ALPHA = 0.5  # a pixel is object when it is at least half palette colour
MAX_RESIDUAL = 45.0  # RGB distance from the blend line beyond which a colour is unrecognised
RIM_ALPHA = 0.15  # least weight of an unlabelled pixel next to a blob to count as its edge
MIN_AREA_FRACTION = 0.004  # components smaller than this share of the image are specks
_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)
_GROW = np.ones((2, 2), dtype=bool)


@dataclass
class Blob:
    """One connected component of one palette colour.

    `alpha` is the component's soft coverage on a crop of the image whose top-left pixel is
    (`top`, `left`): float32 [h, w] in [0, 1], zero outside the component and its antialiased rim.
    """

    color: str
    alpha: np.ndarray
    top: int
    left: int


def to_pixels(image: Any) -> np.ndarray:
    """PIL image, uint8 [H, W, 3], or float [3, H, W] in [-1, 1] (numpy or torch) -> float32 [H, W, 3].

    The result is in [0, 255]. A float array is read as the package's own layout (NCHW minus N,
    [-1, 1]); anything else must be RGB(A) uint8 with channels last.
    """
    if hasattr(image, "convert"):  # PIL
        return np.asarray(image.convert("RGB"), dtype=np.float32)
    if hasattr(image, "detach"):  # torch tensor
        image = image.detach().float().cpu().numpy()
    array = np.asarray(image)
    if np.issubdtype(array.dtype, np.floating):
        if array.ndim != 3 or array.shape[0] != 3:
            raise ValueError(f"float images must be [3, H, W] in [-1, 1], got shape {array.shape}")
        return np.clip(to_levels(array), 0, 255).astype(np.float32)  # unrounded: no quantization
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise ValueError(f"uint8 images must be [H, W, 3], got shape {array.shape}")
    return array[..., :3].astype(np.float32)


def estimate_background(pixels: np.ndarray) -> tuple[np.ndarray, str | None]:
    """pixels float32 [H, W, 3] -> (background RGB [3], its name or None when no named one fits).

    The median of the one-pixel border ring: the renderer keeps every object off the border, and
    a median ignores an object that strays onto less than half of it.
    """
    ring = np.concatenate([pixels[0], pixels[-1], pixels[1:-1, 0], pixels[1:-1, -1]])  # [4(S-1), 3]
    colour = np.median(ring, axis=0).astype(np.float32)
    distances = np.sqrt(((BACKGROUND_PALETTE - colour) ** 2).sum(axis=1))
    nearest = int(np.argmin(distances))
    return colour, BACKGROUND_NAMES[nearest] if distances[nearest] <= BACKGROUND_MAX_DISTANCE else None


def unmix(pixels: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Explain each pixel as background blended with one palette colour.

    pixels float32 [H, W, 3], background [3] -> labels int [H, W]: palette index, or -1 for
    background and unrecognised colours. With d_k = c_k - bg, alpha_k = <p - bg, d_k> / |d_k|^2
    is the least-squares blend weight and the residual is the distance from p to the clipped blend
    bg + clip(alpha_k) d_k. A pixel takes the colour of least residual, if that colour's weight is
    at least OBJECT_ALPHA and its residual at most MAX_RESIDUAL; off every blend line, it is ignored.
    """
    offsets = (pixels - background).reshape(-1, 3)  # [HW, 3]
    directions = PALETTE - background  # [8, 3]
    lengths = np.maximum(np.einsum("kc,kc->k", directions, directions), 1.0)  # [8] |d_k|^2
    norms = np.einsum("nc,nc->n", offsets, offsets)  # [HW] |o|^2
    labels = np.full(offsets.shape[0], -1, dtype=np.int64)
    # only pixels far enough from the background can be half an object: skip the rest
    candidates = np.flatnonzero(norms >= OBJECT_ALPHA**2 * lengths.min())
    if candidates.size:
        raw = offsets[candidates] @ (directions / lengths[:, None]).T  # [N, 8] alpha_k
        clipped = np.clip(raw, 0.0, 1.0)
        # |o - a d|^2 = |o|^2 - 2 a (o . d) + a^2 |d|^2, with o . d = alpha |d|^2
        residual = norms[candidates, None] + (clipped**2 - 2 * clipped * raw) * lengths  # [N, 8] squared
        best = np.argmin(residual, axis=1)  # the closest blend line, whatever its weight
        row = np.arange(best.size)
        ok = (raw[row, best] >= OBJECT_ALPHA) & (residual[row, best] <= MAX_RESIDUAL**2)
        labels[candidates[ok]] = best[ok]
    return labels.reshape(pixels.shape[:2])


def _touching(mask: np.ndarray) -> np.ndarray:
    """bool [h, w] -> bool [h, w]: pixels 8-adjacent to the mask (the mask itself included)."""
    padded = np.pad(mask, 1)  # [h + 2, w + 2]
    rows = padded[:-2] | padded[1:-1] | padded[2:]  # [h, w + 2] vertical neighbours
    return rows[:, :-2] | rows[:, 1:-1] | rows[:, 2:]


def _blob(
    pixels: np.ndarray,
    background: np.ndarray,
    labels: np.ndarray,
    components: np.ndarray,
    index: int,
    box: tuple[slice, slice],
    color: int,
) -> Blob:
    """Crop one component with a one-pixel margin and weigh each pixel by its blend weight.

    Unlabelled pixels touching the component (its antialiased rim) count with their clipped
    weight when it reaches RIM_ALPHA; below that a weight is mostly noise and would bias the
    moments. Farther pixels, such as the empty corners of a diamond's box, never count.
    """
    height, width = labels.shape
    rows = slice(max(box[0].start - 1, 0), min(box[0].stop + 1, height))
    cols = slice(max(box[1].start - 1, 0), min(box[1].stop + 1, width))
    direction = PALETTE[color] - background  # [3]
    weights = (pixels[rows, cols] - background) @ (direction / max(direction @ direction, 1.0))  # [h, w]
    np.clip(weights, 0.0, 1.0, out=weights)
    own = components[rows, cols] == index
    keep = own | (_touching(own) & (labels[rows, cols] == -1) & (weights >= RIM_ALPHA))
    return Blob(COLOR_NAMES[color], np.where(keep, weights, 0.0).astype(np.float32), rows.start, cols.start)


def _components(mask: np.ndarray) -> np.ndarray:
    """bool [H, W] -> int [H, W] component ids (0 outside), fragments a 1-pixel crack apart merged.

    Growing every pixel one step right and down (a 2 x 2 element) closes gaps of one pixel but
    not of two; the renderer keeps same-coloured objects at least two clear pixels apart.
    """
    grown = ndimage.binary_dilation(mask, _GROW, origin=-1)  # [H, W] mask grown right and down
    components, _ = ndimage.label(grown, structure=_EIGHT_CONNECTED)
    return np.where(mask, components, 0)


def find_blobs(pixels: np.ndarray, background: np.ndarray, labels: np.ndarray) -> list[Blob]:
    """Connected components of each colour, specks below MIN_AREA_FRACTION dropped.

    pixels float32 [H, W, 3], background [3], labels from `unmix` -> blobs, in colour order.
    Components are 8-connected, and fragments one pixel apart count as one object.
    """
    min_pixels = MIN_AREA_FRACTION * labels.size
    counts = np.bincount(labels[labels >= 0], minlength=len(COLOR_NAMES))
    blobs = []
    for color in np.flatnonzero(counts >= min_pixels):
        components = _components(labels == color)
        for index, box in enumerate(ndimage.find_objects(components), start=1):
            if box is not None and (components[box] == index).sum() >= min_pixels:
                blobs.append(_blob(pixels, background, labels, components, index, box, int(color)))
    return blobs


def segment(image: Any) -> tuple[np.ndarray, str | None, list[Blob], tuple[int, int]]:
    """image (see `to_pixels`) -> (background RGB [3], background name or None, blobs, (H, W))."""
    pixels = to_pixels(image)
    background_rgb, background = estimate_background(pixels)
    labels = unmix(pixels, background_rgb)
    return background_rgb, background, find_blobs(pixels, background_rgb, labels), labels.shape
