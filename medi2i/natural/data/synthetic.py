"""The digests' tiny seeded synthetic tasks, for the methods' learning checks (everything in [-1, 1]).

- :func:`random_layout`: the shared "3 classes" layout: background 0, large squares 1, small discs 2
  (park_thesis.md 2.6 / 3.6 / 5.6). Shapes differ by class so a class mapping is identifiable from data.
- :func:`tiny_spade_task` (park_thesis.md 2.6): RGB images with fixed class colours, a random global
  brightness shift per image (the "style" a VAE encoder should capture) plus noise; label maps int64.
  :func:`nearest_colour_segmentation` is the check's segmenter (pixel accuracy vs the majority rate).
- :func:`tiny_unpaired_task` (park_thesis.md 3.6, reused by CUT/FastCUT in 4.6): 1-channel "T1 -> T2" task,
  X = (-1, 0.8, -0.4), Y = (-1, -0.2, 0.8) for (background, squares, discs): the tissue contrast is inverted.
  X and Y come from different random layouts (unpaired). :func:`class_means` gives the check's statistic.
- :func:`tiny_palette_task` (park_thesis.md 5.6, SAE): the layout painted with a random per-image palette
  of 3 RGB colours; :func:`palette_distances` measures which palette a hybrid follows.
- :func:`dtp_lite_pair` (dtp_rabit_nst.md 1.8): content = smooth grey disk-plus-ramp scene, style = blue
  stripes plus noise (they differ in colour and texture). Also a content/style pair for NST checks (3.5).
- :func:`rabit_lite_task` (dtp_rabit_nst.md 2.8): 64x64 RGB, K = 4 (background, disk, square, triangle), each
  class an appearance family (base colour + oriented stripes + noise, colours re-drawn per image), exemplars:
  30 % pseudo-pairs (flipped or shifted ground truth) and 70 % real exemplars (another layout and colours).

Every function takes a ``seed`` and returns the same tensors for the same arguments (numpy ``default_rng``;
no global RNG is touched).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from medi2i.natural.data.datasets import PairedDataset, UnpairedDataset, as_items

__all__ = [
    "RABIT_BASE_COLOURS",
    "RABIT_STRIPE_ANGLES",
    "SPADE_COLOURS",
    "X_VALUES",
    "Y_VALUES",
    "class_mean_colours",
    "class_means",
    "dtp_lite_pair",
    "nearest_colour_segmentation",
    "palette_distances",
    "pixel_accuracy",
    "rabit_lite_task",
    "random_layout",
    "tiny_palette_dataset",
    "tiny_palette_task",
    "tiny_spade_dataset",
    "tiny_spade_task",
    "tiny_unpaired_dataset",
    "tiny_unpaired_task",
]

#: class colours of the tiny SPADE task (background grey, squares red, discs green), RGB in [-1, 1]
SPADE_COLOURS = ((-0.6, -0.6, -0.6), (0.6, -0.5, -0.5), (-0.5, 0.6, -0.3))
#: the tiny CycleGAN/CUT task's intensities (background, class 1 squares, class 2 discs) in domain X and Y
X_VALUES = (-1.0, 0.8, -0.4)
Y_VALUES = (-1.0, -0.2, 0.8)
#: RABIT-lite appearance families: base colour per class (background, disk, square, triangle) and stripe angle
RABIT_BASE_COLOURS = ((-0.5, -0.5, -0.5), (0.6, -0.3, -0.4), (-0.4, 0.5, -0.3), (-0.3, -0.3, 0.6))
RABIT_STRIPE_ANGLES = (0.0, 45.0, 90.0, 135.0)


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    return yy + 0.5, xx + 0.5


def random_layout(
    rng: np.random.Generator,
    size: int = 32,
    *,
    squares: tuple[int, int] = (1, 2),
    square_side: tuple[float, float] = (0.3, 0.5),
    discs: tuple[int, int] = (1, 3),
    disc_radius: tuple[float, float] = (0.06, 0.12),
) -> np.ndarray:
    """One label map ``(size, size)`` int64: 0 background, 1 large squares, 2 small discs (drawn last).

    Counts are uniform in the inclusive ranges; sides and radii are fractions of ``size``.

    Example:
        >>> lab = random_layout(np.random.default_rng(0), 32)
        >>> lab.shape, sorted(np.unique(lab).tolist())
        ((32, 32), [0, 1, 2])
    """
    yy, xx = _grid(size)
    label = np.zeros((size, size), dtype=np.int64)
    for _ in range(int(rng.integers(squares[0], squares[1] + 1))):
        side = max(2, int(round(rng.uniform(*square_side) * size)))
        top, left = (int(v) for v in rng.integers(0, size - side + 1, size=2))
        label[top : top + side, left : left + side] = 1
    for _ in range(int(rng.integers(discs[0], discs[1] + 1))):
        radius = max(1.5, rng.uniform(*disc_radius) * size)
        cy, cx = rng.uniform(radius, size - radius, size=2)
        label[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2] = 2
    return label


def _paint(label: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """``(H, W)`` labels and ``(K, C)`` colours -> ``(C, H, W)``."""
    return np.moveaxis(np.asarray(colours, dtype=np.float64)[label], -1, 0)


def _tensor(x: np.ndarray, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x)).to(dtype)


# --------------------------------------------------------------------------------------------
# SPADE (park_thesis.md 2.6)


def tiny_spade_task(
    n: int, *, size: int = 32, seed: int = 0, max_shift: float = 0.3, noise: float = 0.05
) -> dict[str, torch.Tensor]:
    """Tiny SPADE data: ``label`` (N, 1, H, W) int64 in {0, 1, 2}, ``image`` (N, 3, H, W), ``shift`` (N,).

    ``image = clip(SPADE_COLOURS[label] + shift + noise, -1, 1)`` with ``shift ~ U(-max_shift, max_shift)`` per
    image (the style the VAE should recover) and Gaussian ``noise`` (std).
    """
    rng = np.random.default_rng(seed)
    labels = np.stack([random_layout(rng, size) for _ in range(n)])
    shifts = rng.uniform(-max_shift, max_shift, size=n)
    images = np.stack([_paint(lab, np.array(SPADE_COLOURS)) for lab in labels]) + shifts[:, None, None, None]
    images = np.clip(images + rng.normal(0.0, noise, size=images.shape), -1.0, 1.0)
    return {"label": _tensor(labels[:, None], torch.int64), "image": _tensor(images), "shift": _tensor(shifts)}


def tiny_spade_dataset(n: int = 64, **kwargs: Any) -> PairedDataset:
    """:func:`tiny_spade_task` as a :class:`PairedDataset` of ``{"label", "image"}`` (no augmentation)."""
    return PairedDataset(as_items(tiny_spade_task(n, **kwargs), ("label", "image")), None)


def nearest_colour_segmentation(images: torch.Tensor, colours: Any = SPADE_COLOURS) -> torch.Tensor:
    """Label of the nearest class colour per pixel: ``(N, C, H, W)`` -> ``(N, 1, H, W)`` int64.

    The brightness shift of :func:`tiny_spade_task` (<= 0.3 per channel) never moves a pixel to another
    class's colour (the class colours are > 1.3 apart), so this is the check's reliable segmenter.
    """
    palette = torch.as_tensor(colours, dtype=images.dtype, device=images.device)  # (K, C)
    dist = ((images[:, None] - palette[None, :, :, None, None]) ** 2).sum(dim=2)  # (N, K, H, W)
    return dist.argmin(dim=1, keepdim=True)


def pixel_accuracy(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Fraction of equal labels."""
    return float((pred == target).float().mean())


# --------------------------------------------------------------------------------------------
# CycleGAN / CUT (park_thesis.md 3.6, 4.6)


def tiny_unpaired_task(n: int, *, size: int = 32, seed: int = 0, noise: float = 0.0) -> dict[str, torch.Tensor]:
    """Unpaired "T1 -> T2": ``A``/``B`` (N, 1, H, W) with :data:`X_VALUES` / :data:`Y_VALUES`, labels ``A_label``/
    ``B_label`` (N, 1, H, W). A and B use independent layouts (different random streams). Optional Gaussian
    ``noise`` (clipped to [-1, 1]); the default 0 keeps the background exactly -1 for the "background stays" check.
    """
    rng_x, rng_y, rng_noise = (np.random.default_rng([seed, k]) for k in range(3))
    out = {}
    for name, rng, values in (("A", rng_x, X_VALUES), ("B", rng_y, Y_VALUES)):
        labels = np.stack([random_layout(rng, size) for _ in range(n)])
        images = np.asarray(values, dtype=np.float64)[labels][:, None]
        if noise > 0:
            images = np.clip(images + rng_noise.normal(0.0, noise, size=images.shape), -1.0, 1.0)
        out[name] = _tensor(images)
        out[f"{name}_label"] = _tensor(labels[:, None], torch.int64)
    return out


def tiny_unpaired_dataset(n: int = 64, *, seed: int = 0, **kwargs: Any) -> UnpairedDataset:
    """:func:`tiny_unpaired_task` as an :class:`UnpairedDataset` (A in order, B random; no augmentation)."""
    task = tiny_unpaired_task(n, seed=seed, **kwargs)
    a = [{"A": task["A"][i], "A_label": task["A_label"][i]} for i in range(n)]
    b = [{"B": task["B"][i], "B_label": task["B_label"][i]} for i in range(n)]
    return UnpairedDataset(a, b, None, None, seed=seed)


def class_means(images: torch.Tensor, labels: torch.Tensor, num_classes: int = 3) -> torch.Tensor:
    """Mean value of ``images`` (N, 1, H, W) inside each class of ``labels`` over the whole batch -> ``(K,)``
    (NaN for an absent class). The CycleGAN/CUT check: ``G(x)``'s class means move from X_VALUES to Y_VALUES.

    Example:
        >>> t = tiny_unpaired_task(4)
        >>> [round(v, 2) for v in class_means(t["A"], t["A_label"]).tolist()]
        [-1.0, 0.8, -0.4]
    """
    flat, lab = images.detach().float().flatten(), labels.flatten().to(images.device)
    out = torch.full((num_classes,), float("nan"))
    for k in range(num_classes):
        sel = lab == k
        if sel.any():
            out[k] = flat[sel].mean().cpu()
    return out


# --------------------------------------------------------------------------------------------
# SAE (park_thesis.md 5.6)


def tiny_palette_task(n: int, *, size: int = 32, seed: int = 0, noise: float = 0.0) -> dict[str, torch.Tensor]:
    """Tiny SAE data: ``image`` (N, 3, H, W) = the layout painted with a random ``palette`` (N, 3, 3) of RGB colours
    uniform in [-0.9, 0.9] (row k = colour of class k), ``label`` (N, 1, H, W) int64.
    """
    rng = np.random.default_rng(seed)
    labels = np.stack([random_layout(rng, size) for _ in range(n)])
    palettes = rng.uniform(-0.9, 0.9, size=(n, 3, 3))
    images = np.stack([_paint(lab, pal) for lab, pal in zip(labels, palettes, strict=True)])
    if noise > 0:
        images = np.clip(images + rng.normal(0.0, noise, size=images.shape), -1.0, 1.0)
    return {"image": _tensor(images), "label": _tensor(labels[:, None], torch.int64), "palette": _tensor(palettes)}


def tiny_palette_dataset(n: int = 64, **kwargs: Any) -> PairedDataset:
    """:func:`tiny_palette_task` as a dataset of ``{"image", "label", "palette"}`` (SAE uses ``image``)."""
    return PairedDataset(as_items(tiny_palette_task(n, **kwargs)), None)


def class_mean_colours(images: torch.Tensor, labels: torch.Tensor, num_classes: int = 3) -> torch.Tensor:
    """Per-image class-mean colours: ``(N, C, H, W)``, ``(N, 1, H, W)`` -> ``(N, K, C)`` (NaN where absent)."""
    onehot = torch.nn.functional.one_hot(labels[:, 0].long(), num_classes).permute(0, 3, 1, 2).to(images.dtype)
    counts = onehot.sum(dim=(2, 3))  # (N, K)
    sums = torch.einsum("nkhw,nchw->nkc", onehot, images)
    return sums / counts[..., None].where(counts[..., None] > 0, torch.full_like(counts[..., None], float("nan")))


def palette_distances(images: torch.Tensor, labels: torch.Tensor, palettes: torch.Tensor) -> torch.Tensor:
    """Mean over present classes of ``||class-mean colour of images in labels' region k - palettes[:, k]||`` -> (N,).

    SAE swap check: for a hybrid ``G(z_s^1, z_t^2)``, ``palette_distances(hybrid, label_1, palette_2)`` should be
    smaller than ``palette_distances(hybrid, label_1, palette_1)``.
    """
    means = class_mean_colours(images, labels, palettes.shape[1])
    dist = (means - palettes.to(means)).norm(dim=-1)  # (N, K), NaN for absent classes
    return torch.nanmean(dist, dim=1)


# --------------------------------------------------------------------------------------------
# DTP-lite / NST (dtp_rabit_nst.md 1.8, 3.5)


def dtp_lite_pair(size: int = 64, *, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``(content, style)``, each ``(3, size, size)`` in [-1, 1].

    Content: a smooth grey scene, a horizontal ramp (-0.6 -> 0.2) plus a bright disk with a soft edge, the same in
    the 3 channels. Style: a strong blue cast with diagonal stripes (period ``size / 8``) plus noise.
    """
    rng = np.random.default_rng(seed)
    yy, xx = _grid(size)
    ramp = -0.6 + 0.8 * xx / size
    cy, cx = rng.uniform(0.35, 0.65, size=2) * size
    radius = rng.uniform(0.18, 0.28) * size
    disk = 1.0 / (1.0 + np.exp((np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2) - radius) / (0.03 * size)))
    grey = ramp * (1.0 - disk) + 0.7 * disk
    content = np.repeat(grey[None], 3, axis=0)
    period = max(2.0, size / 8.0)
    stripes = np.sin(2.0 * math.pi * (xx + yy) / period)
    base = np.array([-0.7, -0.3, 0.5])[:, None, None]
    style = base + 0.3 * stripes[None] * np.array([0.3, 0.6, 1.0])[:, None, None]
    style = style + rng.normal(0.0, 0.08, size=style.shape)
    return _tensor(np.clip(content, -1.0, 1.0)), _tensor(np.clip(style, -1.0, 1.0))


# --------------------------------------------------------------------------------------------
# RABIT-lite (dtp_rabit_nst.md 2.8)


def _rabit_layout(rng: np.random.Generator, size: int) -> np.ndarray:
    """0 background, 1 disk, 2 square, 3 triangle; random placement and size (later shapes on top)."""
    yy, xx = _grid(size)
    label = np.zeros((size, size), dtype=np.int64)
    r = rng.uniform(0.12, 0.22) * size
    cy, cx = rng.uniform(r, size - r, size=2)
    label[(yy - cy) ** 2 + (xx - cx) ** 2 <= r**2] = 1
    side = int(round(rng.uniform(0.2, 0.4) * size))
    top, left = (int(v) for v in rng.integers(0, size - side + 1, size=2))
    label[top : top + side, left : left + side] = 2
    h = rng.uniform(0.25, 0.45) * size  # isosceles triangle, apex up
    ty, tx = rng.uniform(0, size - h), rng.uniform(h / 2, size - h / 2)
    inside = (yy >= ty) & (yy <= ty + h) & (np.abs(xx - tx) <= (yy - ty) / 2.0)
    label[inside] = 3
    return label


def _rabit_render(label: np.ndarray, colours: np.ndarray, rng: np.random.Generator, noise: float) -> np.ndarray:
    size = label.shape[0]
    yy, xx = _grid(size)
    image = np.zeros((3, size, size))
    period = max(3.0, size / 10.0)
    for k, angle in enumerate(RABIT_STRIPE_ANGLES[: colours.shape[0]]):
        theta = math.radians(angle)
        stripes = 0.15 * np.sin(2.0 * math.pi * (xx * math.cos(theta) + yy * math.sin(theta)) / period)
        region = label == k
        image[:, region] = colours[k][:, None] + stripes[region][None]
    return np.clip(image + rng.normal(0.0, noise, size=image.shape), -1.0, 1.0)


def rabit_lite_task(
    n: int,
    *,
    size: int = 64,
    seed: int = 0,
    pseudo_pair_prob: float = 0.3,
    colour_jitter: float = 0.15,
    noise: float = 0.05,
) -> dict[str, torch.Tensor]:
    """RABIT-lite exemplar pairs (K = 4 classes).

    Returns:
        ``label``/``exemplar_label`` (N, 1, H, W) int64, ``image``/``exemplar`` (N, 3, H, W), ``pseudo_pair`` (N,)
        bool, ``colours``/``exemplar_colours`` (N, 4, 3) (the class colours drawn from the families: base colour
        plus ``N(0, colour_jitter)``). A pseudo-pair's exemplar is the ground truth flipped left-right or
        circularly shifted by up to 1/8 of the side (50/50); a real exemplar has its own layout and colours.
    """
    rng = np.random.default_rng(seed)
    base = np.asarray(RABIT_BASE_COLOURS)
    out: dict[str, list] = {k: [] for k in ("label", "image", "exemplar", "exemplar_label", "pseudo_pair")}
    out.update(colours=[], exemplar_colours=[])
    for _ in range(n):
        label = _rabit_layout(rng, size)
        colours = np.clip(base + rng.normal(0.0, colour_jitter, size=base.shape), -0.9, 0.9)
        image = _rabit_render(label, colours, rng, noise)
        pseudo = bool(rng.random() < pseudo_pair_prob)
        if pseudo:
            if rng.random() < 0.5:
                ex_label, ex_image = label[:, ::-1], image[:, :, ::-1]
            else:
                dy, dx = (int(v) for v in rng.integers(-size // 8, size // 8 + 1, size=2))
                ex_label = np.roll(label, (dy, dx), axis=(0, 1))
                ex_image = np.roll(image, (dy, dx), axis=(1, 2))
            ex_colours = colours
        else:
            ex_label = _rabit_layout(rng, size)
            ex_colours = np.clip(base + rng.normal(0.0, colour_jitter, size=base.shape), -0.9, 0.9)
            ex_image = _rabit_render(ex_label, ex_colours, rng, noise)
        for key, value in (("label", label[None]), ("image", image), ("exemplar", ex_image),
                           ("exemplar_label", ex_label[None]), ("pseudo_pair", pseudo), ("colours", colours),
                           ("exemplar_colours", ex_colours)):  # fmt: skip
            out[key].append(np.ascontiguousarray(value))
    result = {k: _tensor(np.stack(v)) for k, v in out.items()}
    for key in ("label", "exemplar_label"):
        result[key] = result[key].to(torch.int64)
    result["pseudo_pair"] = result["pseudo_pair"].reshape(-1).to(torch.bool)
    return result
