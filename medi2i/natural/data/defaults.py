"""Default data that works offline: scikit-image's bundled photos and textures, and the demo cohort's slices.

Photos. The scikit-image wheel ships a few images in ``skimage/data`` (no pooch download: they are read
here straight from that folder with PIL, never through ``skimage.data.<name>()``):

- RGB photos: astronaut, chelsea, coffee, rocket, motorcycle_left, motorcycle_right, hubble_deep_field, ihc,
  retina, color; grey photos: camera, moon, coins, page, text, clock_motion, cell;
- grey textures (512x512): brick, grass, gravel.

Builders (each returns a ready dataset of the :mod:`medi2i.natural.data.datasets` kind):

- :func:`default_unpaired_photos`: unpaired domains, presets ``photo2texture`` (RGB photos -> the three
  textures, default), ``grass2gravel``, ``brick2gravel`` (each texture image repeated so an epoch has several
  random crops).
- :func:`default_semantic_photos`: label map -> photo pairs where the "semantics" are the ``num_classes``
  clusters of one colour codebook (k-means in RGB over all the photos, seeded): class ``k`` is the same colour
  cluster in every photo. An honest stand-in for a segmentation dataset, offline (SPADE, RABIT exemplars).
- :func:`default_style_pairs`: content/style pairs for NST and DTP (:data:`CONTENT_STYLE_PAIRS`).
- :func:`demo_unpaired_slices` (T1w <-> T2w or MR <-> CT), :func:`demo_semantic_slices` (tissue label map ->
  T1w/T2w/CT slice, SPADE) and :func:`demo_exemplar_slices` (RABIT) from the demo cohort
  (:func:`medi2i.data.demo.ensure_demo_cohort`), through :func:`manifest_slices` which works on any synthesis
  manifest: volumes normalised with the foundation presets (MR foreground 0.5-99.5 percentiles, CT window), cut
  into axial slices along the affine's superior-inferior axis, padded/cropped to the model size (no resampling),
  near-empty slices dropped (foreground fraction < ``min_foreground``). Demo labels are already compact
  (:data:`DEMO_LABEL_NAMES`: 0 background, 1 CSF, 2 GM, 3 WM, 4 bone, 5 scalp); other manifests' label values are
  mapped to ``0..K-1`` in sorted order and the mapping is recorded on the dataset (``label_mapping``).
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medi2i.errors import Medi2iInputError
from medi2i.natural.data.datasets import ExemplarPairDataset, PairedDataset, SingleImageDataset, UnpairedDataset
from medi2i.natural.data.transforms import photo_transforms, read_photo_array, slice_transforms
from medi2i.options import choose_key

__all__ = [
    "CONTENT_STYLE_PAIRS",
    "DEMO_LABEL_NAMES",
    "GREY_PHOTOS",
    "RGB_PHOTOS",
    "TEXTURES",
    "UNPAIRED_PRESETS",
    "SliceSubject",
    "compact_labels",
    "default_semantic_photos",
    "default_single_image_pair",
    "default_style_pairs",
    "default_unpaired_photos",
    "demo_exemplar_slices",
    "demo_semantic_slices",
    "demo_unpaired_slices",
    "load_style_image",
    "manifest_slices",
    "semantic_photo_labels",
    "skimage_image_path",
]

_FILES = {
    "astronaut": "astronaut.png", "chelsea": "chelsea.png", "coffee": "coffee.png", "rocket": "rocket.jpg",
    "motorcycle_left": "motorcycle_left.png", "motorcycle_right": "motorcycle_right.png",
    "hubble_deep_field": "hubble_deep_field.jpg", "ihc": "ihc.png", "retina": "retina.jpg", "color": "color.png",
    "camera": "camera.png", "moon": "moon.png", "coins": "coins.png", "page": "page.png", "text": "text.png",
    "clock_motion": "clock_motion.png", "cell": "cell.png",
    "brick": "brick.png", "grass": "grass.png", "gravel": "gravel.png",
}  # fmt: skip
RGB_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "motorcycle_left", "motorcycle_right")
GREY_PHOTOS = ("camera", "moon", "coins", "page", "text", "clock_motion", "cell")
TEXTURES = ("brick", "grass", "gravel")
#: unpaired presets: name -> (domain A images, domain B images, repeats of each list)
UNPAIRED_PRESETS: dict[str, tuple[tuple[str, ...], tuple[str, ...], int]] = {
    "photo2texture": (RGB_PHOTOS, TEXTURES, 1),
    "grass2gravel": (("grass",), ("gravel",), 8),
    "brick2gravel": (("brick",), ("gravel",), 8),
}
#: (content, style) pairs for NST / DTP: photo -> strongly coloured or textured style
CONTENT_STYLE_PAIRS = (
    ("chelsea", "ihc"),
    ("astronaut", "hubble_deep_field"),
    ("rocket", "coffee"),
    ("coffee", "brick"),
)
DEMO_LABEL_NAMES = ("background", "csf", "gray_matter", "white_matter", "bone", "scalp")


def skimage_image_path(name: str) -> Path:
    """Path of one of scikit-image's bundled images (found without importing skimage or downloading).

    Raises:
        Medi2iInputError: unknown name, scikit-image missing, or the file absent from the installation.

    Example:
        >>> skimage_image_path("brick").name
        'brick.png'
    """
    filename = choose_key(name, _FILES, field="image")
    spec = importlib.util.find_spec("skimage")
    if spec is None or spec.origin is None:
        raise Medi2iInputError("scikit-image is not installed", field="image", expected="pip install scikit-image")
    path = Path(spec.origin).parent / "data" / filename
    if not path.is_file():
        raise Medi2iInputError(
            "scikit-image's bundled image is missing from this installation", path=path, field="image", found=name
        )
    return path


def _paths(names: Sequence[str]) -> list[str]:
    return [str(skimage_image_path(n)) for n in names]


def default_unpaired_photos(
    preset: str = "photo2texture",
    *,
    load_size: int = 286,
    crop_size: int = 256,
    train: bool = True,
    channels: int = 3,
    repeats: int | None = None,
    seed: int = 0,
) -> UnpairedDataset:
    """Offline unpaired photos ``{"A", "B", "A_path", "B_path"}`` (see :data:`UNPAIRED_PRESETS`).

    Args:
        preset: ``"photo2texture"``, ``"grass2gravel"`` or ``"brick2gravel"``.
        load_size: resize size before the random crop.
        crop_size: crop (training) / resize (evaluation) size.
        train: random crop and flip (else the official test-time resize).
        channels: 3 (grey repeated to RGB) or 1.
        repeats: how often each domain's list is repeated per epoch (default: the preset's).
        seed: dataset seed.
    """
    a, b, default_repeats = choose_key(preset, UNPAIRED_PRESETS, field="preset")
    n = default_repeats if repeats is None else int(repeats)
    if n < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats!r}")
    kwargs = dict(load_size=load_size, crop_size=crop_size, train=train, channels=channels)
    return UnpairedDataset(
        _paths(a) * n,
        _paths(b) * n,
        photo_transforms("A", **kwargs),  # type: ignore[arg-type]
        photo_transforms("B", **kwargs),  # type: ignore[arg-type]
        seed=seed,
    )


def default_single_image_pair(
    a: str = "chelsea", b: str = "gravel", *, crop_size: int = 64, crops_per_epoch: int = 16, seed: int = 0
) -> SingleImageDataset:
    """SinCUT default: random ``crop_size`` crops (flipped) of one photo per domain (no resize)."""
    transform = photo_transforms(("A", "B"), crop_size=crop_size, preprocess="crop", allow_missing_keys=True)
    return SingleImageDataset(
        str(skimage_image_path(a)), str(skimage_image_path(b)), transform, crops_per_epoch=crops_per_epoch, seed=seed
    )


# --------------------------------------------------------------------------------------------
# semantic photos: one shared k-means colour codebook


def _kmeans(pixels: np.ndarray, k: int, rng: np.random.Generator, iterations: int = 25) -> np.ndarray:
    centres = pixels[rng.choice(len(pixels), size=k, replace=False)].copy()
    for _ in range(iterations):
        assign = ((pixels[:, None] - centres[None]) ** 2).sum(-1).argmin(1)
        for j in range(k):
            members = pixels[assign == j]
            if len(members):
                centres[j] = members.mean(0)
    # order the clusters by luminance so class ids are stable and readable (0 = darkest)
    return centres[np.argsort(centres @ np.array([0.299, 0.587, 0.114]))]


@functools.lru_cache(maxsize=8)
def _semantic_codebook(names: tuple[str, ...], num_classes: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    samples = []
    for name in names:
        rgb = read_photo_array(skimage_image_path(name), mode="RGB").reshape(-1, 3).astype(np.float64) / 255.0
        samples.append(rgb[rng.choice(len(rgb), size=min(len(rgb), 4000), replace=False)])
    return _kmeans(np.concatenate(samples), num_classes, rng)


def semantic_photo_labels(
    names: Sequence[str] = RGB_PHOTOS, *, num_classes: int = 6, seed: int = 0
) -> tuple[list[np.ndarray], np.ndarray]:
    """Label maps ``(H, W)`` int64 of each photo under one shared colour codebook, and the codebook ``(K, 3)``
    (RGB in [0, 1], sorted by luminance)."""
    if int(num_classes) < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes!r}")
    codebook = _semantic_codebook(tuple(names), int(num_classes), int(seed))
    labels = []
    for name in names:
        rgb = read_photo_array(skimage_image_path(name), mode="RGB").astype(np.float64) / 255.0
        dist = ((rgb[:, :, None, :] - codebook[None, None]) ** 2).sum(-1)
        labels.append(dist.argmin(-1).astype(np.int64))
    return labels, codebook


def _semantic_items(names: Sequence[str], num_classes: int, seed: int) -> list[dict[str, Any]]:
    labels, _ = semantic_photo_labels(names, num_classes=num_classes, seed=seed)
    return [{"image": str(skimage_image_path(n)), "label": lab} for n, lab in zip(names, labels, strict=True)]


def default_semantic_photos(
    *,
    names: Sequence[str] = RGB_PHOTOS,
    num_classes: int = 6,
    load_size: int = 286,
    crop_size: int = 256,
    train: bool = True,
    exemplars: bool = False,
    pseudo_pair_prob: float = 0.3,
    seed: int = 0,
) -> PairedDataset:
    """Offline label map -> photo pairs ``{"label" (1,H,W) int64 in 0..K-1, "image" (3,H,W)}`` (SPADE), or with
    ``exemplars=True`` an :class:`ExemplarPairDataset` adding ``exemplar``/``exemplar_label``/``pseudo_pair`` (RABIT).
    The labels are colour clusters of one codebook (module docstring); crop and flip are shared by label and image.
    """
    transform = photo_transforms("image", label_keys="label", load_size=load_size, crop_size=crop_size, train=train)
    items = _semantic_items(names, num_classes, seed)
    if exemplars:
        return ExemplarPairDataset(items, transform, pseudo_pair_prob=pseudo_pair_prob, seed=seed)
    return PairedDataset(items, transform, seed=seed)


def load_style_image(name_or_path: str | Path, *, size: int = 256, channels: int = 3) -> torch.Tensor:
    """One image ``(C, size, size)`` in [-1, 1]: a bundled image name or a file; short side scaled, centre crop."""
    source = str(skimage_image_path(name_or_path)) if str(name_or_path) in _FILES else str(name_or_path)
    transform = photo_transforms(
        "x", load_size=size, crop_size=size, train=False, preprocess="scale_shortside_and_crop", channels=channels
    )
    return transform({"x": source})["x"]


def default_style_pairs(
    pairs: Sequence[tuple[str, str]] = CONTENT_STYLE_PAIRS, *, size: int = 256, channels: int = 3
) -> list[dict[str, Any]]:
    """Content/style pairs for NST and DTP.

    Returns:
        ``[{"content": (C, H, W), "style": (C, H, W), "content_name": str, "style_name": str}, ...]``.
    """
    return [
        {
            "content": load_style_image(c, size=size, channels=channels),
            "style": load_style_image(s, size=size, channels=channels),
            "content_name": c,
            "style_name": s,
        }
        for c, s in pairs
    ]


# --------------------------------------------------------------------------------------------
# medical slices from synthesis manifests (the demo cohort by default)


@dataclass
class SliceSubject:
    """One subject's normalised, size-fitted axial slices.

    Attributes:
        subject_id: the manifest's id.
        source: ``(S, 1, H, W)`` in [-1, 1] (manifest column ``source``).
        target: ``(S, 1, H, W)`` in [-1, 1] (column ``target``).
        label: ``(S, 1, H, W)`` int64 compact class ids, or ``None``.
        foreground: indices of the slices kept for training (foreground fraction >= ``min_foreground``).
    """

    subject_id: str
    source: torch.Tensor
    target: torch.Tensor
    label: torch.Tensor | None
    foreground: np.ndarray


def compact_labels(labels: torch.Tensor, values: Sequence[int]) -> torch.Tensor:
    """Map label ``values[k]`` to ``k`` (compact ``0..K-1``); any other value is an error.

    Example:
        >>> compact_labels(torch.tensor([0, 5, 7]), (0, 5, 7)).tolist()
        [0, 1, 2]
    """
    table = torch.full((int(max(values)) + 1,), -1, dtype=torch.int64)
    table[torch.as_tensor(list(values), dtype=torch.int64)] = torch.arange(len(values))
    if labels.numel() and (labels.min() < 0 or labels.max() >= len(table)):
        raise Medi2iInputError("label value outside the mapping", field="label", found=int(labels.max()))
    out = table[labels.long()]
    if (out < 0).any():
        bad = sorted(set(labels[out < 0].unique().tolist()))
        raise Medi2iInputError("label values outside the mapping", field="label", found=bad, expected=list(values))
    return out


def manifest_slices(
    manifest: str | Path,
    *,
    data_root: str | Path | None = None,
    split: str | Sequence[str] | None = "train",
    source_modality: str = "mr",
    target_modality: str = "mr",
    size: Sequence[int] = (128, 128),
    min_foreground: float = 0.1,
    with_labels: bool = False,
    label_values: Sequence[int] | None = None,
    fit: str = "pad_crop",
) -> tuple[list[SliceSubject], dict[int, int]]:
    """Load the axial slices of every subject of a synthesis manifest (module docstring for the steps).

    Returns:
        ``(subjects, label_mapping)`` where ``label_mapping`` maps original label values to compact ids
        (``{}`` without labels). ``label_values`` fixes the mapping (default: the sorted union of values found).
        ``fit`` is ``"pad_crop"`` (default: the pixel grid is kept, digest 4.6) or ``"resize"`` (whole slice
        resampled to ``size``: bilinear images, nearest labels; for small CPU sizes).
    """
    from medi2i.data.slices import axial_axis, volume_to_slices
    from medi2i.io import load_volume
    from medi2i.synthesis.data import fit_slices, load_subject_slices, synthesis_datalist

    datalist = synthesis_datalist(manifest, data_root, split)
    if not datalist:
        raise Medi2iInputError("no subjects in this split", path=manifest, field="split", found=split)
    if with_labels and not all(row.get("label") for row in datalist):
        raise Medi2iInputError("the manifest has no label column for every row", path=manifest, field="label")
    loaded = load_subject_slices(
        datalist,
        source_modality=source_modality,
        target_modality=target_modality,
        model_size=tuple(size),
        fit_mode=fit,
        min_foreground=min_foreground,
    )
    labels: list[torch.Tensor | None] = [None] * len(loaded)
    mapping: dict[int, int] = {}
    if with_labels:
        raw = []
        for row in datalist:
            volume = load_volume(row["label"], kind="label", spatial_dims=3)
            slices = volume_to_slices(torch.from_numpy(volume.array.astype(np.int64))[None], axial_axis(volume.affine))
            if fit == "resize":
                fitted = torch.nn.functional.interpolate(slices.float(), size=tuple(size), mode="nearest-exact")
            else:
                fitted = fit_slices(slices.float(), tuple(size), "pad_crop", background=0.0)
            raw.append(fitted.round().long())
        values = (
            sorted({int(v) for r in raw for v in r.unique().tolist()} | {0})
            if label_values is None
            else list(label_values)
        )
        mapping = {int(v): k for k, v in enumerate(values)}
        labels = [compact_labels(r, values) for r in raw]
    subjects = [
        SliceSubject(s.subject_id, s.source, s.target, lab, s.foreground) for s, lab in zip(loaded, labels, strict=True)
    ]
    return subjects, mapping


_DEMO_PAIRS = {"t1w_t2w": ("synthesis_t1w_t2w_3d", "mr"), "mr_ct": ("synthesis_mr_ct_3d", "ct")}


def _demo_manifest(pair: str, root: str | Path | None) -> tuple[Path, str]:
    from medi2i.data.demo import demo_manifest

    name, target = choose_key(pair, _DEMO_PAIRS, field="pair")
    return demo_manifest(name, root), target


def _slice_items(subjects: Sequence[SliceSubject], column: str, key: str, modality: str) -> list[dict[str, Any]]:
    items = []
    for subject in subjects:
        volume = getattr(subject, column)
        for k in subject.foreground:
            items.append({key: volume[int(k)], f"{key}_path": f"{subject.subject_id}:{modality}:slice={int(k)}"})
    return items


def demo_unpaired_slices(
    pair: str = "t1w_t2w",
    split: str = "train",
    *,
    root: str | Path | None = None,
    manifest: str | Path | None = None,
    size: Sequence[int] = (128, 128),
    train: bool = True,
    disjoint: bool = True,
    min_foreground: float = 0.1,
    fit: str = "pad_crop",
    seed: int = 0,
) -> UnpairedDataset:
    """Unpaired demo-cohort slices: ``A`` = T1w, ``B`` = T2w (``pair="t1w_t2w"``) or CT (``"mr_ct"``), ``(1, H, W)``.

    With ``disjoint`` (default) A comes from the even-numbered subjects of the split and B from the odd ones, so no
    anatomy appears in both domains (needs >= 2 subjects). ``manifest`` overrides the demo manifest (any synthesis
    manifest; its ``data_root`` is its folder). ``fit``: ``"pad_crop"`` (default, grid kept) or ``"resize"``
    (see :func:`manifest_slices`).
    """
    if manifest is None:
        manifest, target = _demo_manifest(pair, root)
    else:
        target = choose_key(pair, _DEMO_PAIRS, field="pair")[1]
    subjects, _ = manifest_slices(
        manifest, split=split, target_modality=target, size=size, min_foreground=min_foreground, fit=fit
    )
    if disjoint and len(subjects) < 2:
        raise Medi2iInputError(
            "disjoint unpaired slices need at least 2 subjects in the split", field="split", found=len(subjects)
        )
    a_subjects, b_subjects = (subjects[0::2], subjects[1::2]) if disjoint else (subjects, subjects)
    names = pair.split("_")
    return UnpairedDataset(
        _slice_items(a_subjects, "source", "A", names[0]),
        _slice_items(b_subjects, "target", "B", names[1]),
        slice_transforms("A", size=size, train=train),
        slice_transforms("B", size=size, train=train),
        seed=seed,
    )


_CONTRASTS = {"t1w": ("t1w_t2w", "source"), "t2w": ("t1w_t2w", "target"), "ct": ("mr_ct", "target")}


def _semantic_slice_items(
    contrast: str, split: str, root: Any, manifest: Any, size: Sequence[int], min_foreground: float, fit: str
) -> tuple[list[dict[str, Any]], dict[int, int]]:
    pair, column = choose_key(contrast, _CONTRASTS, field="contrast")
    if manifest is None:
        manifest, target = _demo_manifest(pair, root)
        values: Sequence[int] | None = range(len(DEMO_LABEL_NAMES))
    else:
        target, values = _DEMO_PAIRS[pair][1], None
    subjects, mapping = manifest_slices(
        manifest,
        split=split,
        target_modality=target,
        size=size,
        min_foreground=min_foreground,
        with_labels=True,
        label_values=values,
        fit=fit,
    )
    items = []
    for subject in subjects:
        volume = getattr(subject, column)
        for k in subject.foreground:
            items.append({"image": volume[int(k)], "label": subject.label[int(k)]})  # type: ignore[index]
    return items, mapping


def demo_semantic_slices(
    split: str = "train",
    *,
    contrast: str = "t1w",
    root: str | Path | None = None,
    manifest: str | Path | None = None,
    size: Sequence[int] = (128, 128),
    train: bool = True,
    min_foreground: float = 0.1,
    fit: str = "pad_crop",
    seed: int = 0,
) -> PairedDataset:
    """Label map -> slice pairs ``{"label" (1,H,W) int64, "image" (1,H,W)}`` (SPADE medical use).

    ``contrast`` is ``"t1w"``, ``"t2w"`` or ``"ct"``. Demo labels: :data:`DEMO_LABEL_NAMES` (6 classes, identity
    mapping); the dataset's ``label_mapping`` attribute records original value -> compact id, ``num_classes`` K.
    """
    items, mapping = _semantic_slice_items(contrast, split, root, manifest, size, min_foreground, fit)
    dataset = PairedDataset(items, slice_transforms("image", size=size, label_keys="label", train=train), seed=seed)
    dataset.label_mapping = mapping  # type: ignore[attr-defined]
    dataset.num_classes = len(mapping)  # type: ignore[attr-defined]
    return dataset


def demo_exemplar_slices(
    split: str = "train",
    *,
    contrast: str = "t1w",
    root: str | Path | None = None,
    manifest: str | Path | None = None,
    size: Sequence[int] = (128, 128),
    train: bool = True,
    pseudo_pair_prob: float = 0.3,
    min_foreground: float = 0.1,
    fit: str = "pad_crop",
    seed: int = 0,
) -> ExemplarPairDataset:
    """RABIT medical use: :func:`demo_semantic_slices` items as exemplar pairs (exemplar = another slice, or a
    flipped copy of the ground truth for pseudo-pairs)."""
    items, mapping = _semantic_slice_items(contrast, split, root, manifest, size, min_foreground, fit)
    dataset = ExemplarPairDataset(
        items,
        slice_transforms("image", size=size, label_keys="label", train=train),
        pseudo_pair_prob=pseudo_pair_prob,
        seed=seed,
    )
    dataset.label_mapping = mapping  # type: ignore[attr-defined]
    dataset.num_classes = len(mapping)  # type: ignore[attr-defined]
    return dataset
