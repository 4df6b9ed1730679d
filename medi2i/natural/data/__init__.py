"""Data for the natural-image methods: one transform pipeline for photos and medical slices, datasets, defaults.

- :mod:`~medi2i.natural.data.transforms`: :func:`photo_transforms`, :func:`slice_transforms` (MONAI ``Compose``).
- :mod:`~medi2i.natural.data.datasets`: :class:`UnpairedDataset`, :class:`PairedDataset`,
  :class:`ExemplarPairDataset`, :class:`SingleImageDataset` (reproducible per ``(seed, epoch, index)``).
- :mod:`~medi2i.natural.data.defaults`: offline default data (scikit-image photos/textures, demo-cohort slices).
- :mod:`~medi2i.natural.data.synthetic`: the digests' tiny seeded tasks for learning checks.
- :mod:`~medi2i.natural.data.image_io`: :func:`read_image` / :func:`write_image` (png/jpg, NIfTI with geometry).

Batches (the contract every method consumes) are dictionaries of float tensors in [-1, 1] ``(B, C, H, W)``:
``"A"``/``"B"`` (unpaired, single image), ``"label"`` int64 ``(B, 1, H, W)`` + ``"image"`` (paired/semantic),
plus ``"exemplar"``/``"exemplar_label"``/``"pseudo_pair"`` (RABIT).

Names are resolved lazily (module ``__getattr__``), so ``import medi2i.natural.data`` does not import MONAI.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    # transforms
    "LoadPhotod": "transforms",
    "PhotoPreprocess": "transforms",
    "Pipeline": "transforms",
    "resize_image": "transforms",
    "ResizeImaged": "transforms",
    "ResizeToMultipled": "transforms",
    "photo_transforms": "transforms",
    "slice_transforms": "transforms",
    # datasets
    "ExemplarPairDataset": "datasets",
    "PairedDataset": "datasets",
    "SingleImageDataset": "datasets",
    "UnpairedDataset": "datasets",
    "apply_seeded": "datasets",
    "as_items": "datasets",
    "item_seed": "datasets",
    # defaults
    "CONTENT_STYLE_PAIRS": "defaults",
    "DEMO_LABEL_NAMES": "defaults",
    "RGB_PHOTOS": "defaults",
    "TEXTURES": "defaults",
    "UNPAIRED_PRESETS": "defaults",
    "GREY_PHOTOS": "defaults",
    "SliceSubject": "defaults",
    "compact_labels": "defaults",
    "semantic_photo_labels": "defaults",
    "default_semantic_photos": "defaults",
    "default_single_image_pair": "defaults",
    "default_style_pairs": "defaults",
    "default_unpaired_photos": "defaults",
    "demo_exemplar_slices": "defaults",
    "demo_semantic_slices": "defaults",
    "demo_unpaired_slices": "defaults",
    "load_style_image": "defaults",
    "manifest_slices": "defaults",
    "skimage_image_path": "defaults",
    # synthetic tasks
    "X_VALUES": "synthetic",
    "Y_VALUES": "synthetic",
    "SPADE_COLOURS": "synthetic",
    "RABIT_BASE_COLOURS": "synthetic",
    "class_mean_colours": "synthetic",
    "class_means": "synthetic",
    "dtp_lite_pair": "synthetic",
    "nearest_colour_segmentation": "synthetic",
    "palette_distances": "synthetic",
    "pixel_accuracy": "synthetic",
    "rabit_lite_task": "synthetic",
    "random_layout": "synthetic",
    "tiny_palette_dataset": "synthetic",
    "tiny_palette_task": "synthetic",
    "tiny_spade_dataset": "synthetic",
    "tiny_spade_task": "synthetic",
    "tiny_unpaired_dataset": "synthetic",
    "tiny_unpaired_task": "synthetic",
    # image files
    "image_format": "image_io",
    "read_image": "image_io",
    "write_image": "image_io",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
