"""Training and validation data for 2D slice-wise synthesis: partially paired batches of axial slices.

Volumes listed in a synthesis manifest (``subject_id, split, source, target[, mask]``) are loaded
once through the foundation preset :func:`medi2i.data.transforms.synthesis_preprocessing`
(CT: HU window to [-1, 1]; MR: foreground percentiles 0.5-99.5 to [-1, 1], background -1), cut into
axial slices along the axis read from each affine, and fitted to the model size.

Batches are built whole by :class:`PartiallyPairedSliceDataset` (use it with ``batch_size=None``):
the subjects are split once (seeded) into a paired pool (``ceil(pairing_ratio * n)`` subjects, at
least one) and an unpaired pool (the rest). Below 100 % pairing, the first half of every batch is
paired (A and B from the same subject and slice, paired pool only) and the second half unpaired
(A and B from two different subjects of the unpaired pool, independent slices), so the paired and
unpaired halves are equal whatever the ratio (research digest section 6 item 9). At 100 % every row is
paired. The batch carries the ``paired`` mask the method's loss needs.

Every random draw of batch ``i`` in epoch ``e`` comes from ``numpy.random.default_rng((seed, e, i))``,
so a batch is a pure function of (seed, epoch, index): resuming from a checkpoint reproduces the
uninterrupted run, with or without loader workers, as long as the epoch is set before each epoch's
iterator is created (:class:`~medi2i.synthesis.engine.SynthesisTrainer` does it at ``EPOCH_STARTED``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from medi2i.errors import Medi2iInputError

FIT_MODES = ("pad_crop", "resize")


def fit_slices(
    slices: torch.Tensor, size: Sequence[int], mode: str = "pad_crop", background: float = -1.0
) -> torch.Tensor:
    """Fit slices ``(S, C, H, W)`` to ``size`` (centre pad with ``background`` / centre crop, or bilinear resize).

    Example:
        >>> fit_slices(torch.zeros(2, 1, 5, 10), (8, 8)).shape
        torch.Size([2, 1, 8, 8])
    """
    if mode not in FIT_MODES:
        raise ValueError(f"mode must be one of {FIT_MODES}, got {mode!r}")
    height, width = (int(s) for s in size)
    if mode == "resize":
        if tuple(slices.shape[-2:]) == (height, width):
            return slices
        return F.interpolate(slices, size=(height, width), mode="bilinear", align_corners=False)
    out = slices
    for dim, target in ((2, height), (3, width)):
        current = out.shape[dim]
        if current > target:  # centre crop, same split as MONAI's ResizeWithPadOrCrop
            start = (current - target) // 2
            out = out.narrow(dim, start, target)
        elif current < target:
            before = (target - current) // 2
            pad = [0, 0, 0, 0]
            index = 0 if dim == 3 else 2
            pad[index], pad[index + 1] = before, target - current - before
            out = F.pad(out, pad, value=background)
    return out


def unfit_slices(
    slices: torch.Tensor, size: Sequence[int], mode: str = "pad_crop", background: float = -1.0
) -> torch.Tensor:
    """Inverse of :func:`fit_slices`: back to the original in-plane ``size`` (cropped borders come back as
    ``background``).

    Example:
        >>> x = torch.rand(1, 1, 5, 10)
        >>> bool(torch.equal(unfit_slices(fit_slices(x, (8, 12)), (5, 10)), x))
        True
    """
    if mode not in FIT_MODES:
        raise ValueError(f"mode must be one of {FIT_MODES}, got {mode!r}")
    if mode == "resize":
        return fit_slices(slices, size, "resize")
    height, width = (int(s) for s in size)
    out = slices
    for dim, original in ((2, height), (3, width)):
        current = out.shape[dim]
        if current > original:  # the forward padded here: remove the same margins
            before = (current - original) // 2
            out = out.narrow(dim, before, original)
        elif current < original:  # the forward cropped here: pad back with the background
            before = (original - current) // 2
            pad = [0, 0, 0, 0]
            index = 0 if dim == 3 else 2
            pad[index], pad[index + 1] = before, original - current - before
            out = F.pad(out, pad, value=background)
    return out


@dataclass
class SubjectSlices:
    """One subject's normalised axial slices ``(S, 1, H, W)`` and the indices of its foreground slices."""

    subject_id: str
    source: torch.Tensor
    target: torch.Tensor
    foreground: np.ndarray


def load_subject_slices(
    datalist: Sequence[Mapping[str, Any]],
    *,
    source_modality: str = "mr",
    target_modality: str = "ct",
    model_size: Sequence[int] = (96, 96),
    fit_mode: str = "pad_crop",
    min_foreground: float = 0.05,
) -> list[SubjectSlices]:
    """Load, normalise, slice and fit every subject of a synthesis datalist.

    Args:
        datalist: rows of :func:`medi2i.data.manifest.read_manifest` (absolute ``source``/``target``,
            optional ``mask``).
        source_modality: ``"mr"`` or ``"ct"`` (modality A).
        target_modality: ``"mr"`` or ``"ct"`` (modality B).
        model_size: in-plane size ``(H, W)`` of the model.
        fit_mode: ``"pad_crop"`` (keeps the voxel grid) or ``"resize"`` (bilinear, as the paper).
        min_foreground: a slice is drawn for training only if at least this fraction of its pixels is
            foreground (mask when given, else target above background); avoids empty slices.

    Returns:
        One :class:`SubjectSlices` per row, in datalist order.
    """
    from medi2i.data.transforms import axial_axis, synthesis_preprocessing, volume_to_slices

    if not datalist:
        raise Medi2iInputError("no subjects to load", field="datalist", expected="at least one manifest row")
    if not 0.0 <= float(min_foreground) < 1.0:
        raise ValueError(f"min_foreground must be in [0, 1), got {min_foreground!r}")
    has_mask = all(row.get("mask") for row in datalist)
    rows = [{k: row[k] for k in ("source", "target", "mask") if row.get(k)} for row in datalist]
    if not has_mask:
        rows = [{k: row[k] for k in ("source", "target")} for row in rows]
    load = synthesis_preprocessing(
        source_modality, target_modality, mask_key="mask" if has_mask else None, spatial_dims=3
    )
    subjects = []
    for original, row in zip(datalist, rows, strict=True):
        data = load(row)
        axis = axial_axis(data["source"].affine)
        source = fit_slices(volume_to_slices(data["source"].as_tensor(), axis).float(), model_size, fit_mode)
        target = fit_slices(volume_to_slices(data["target"].as_tensor(), axis).float(), model_size, fit_mode)
        if has_mask:
            fg = fit_slices(volume_to_slices(data["mask"].as_tensor().float(), axis), model_size, fit_mode, 0.0) > 0.5
        else:
            fg = target > -1.0 + 1e-6
        fraction = fg.flatten(1).float().mean(dim=1).numpy()
        foreground = np.flatnonzero(fraction >= min_foreground)
        if foreground.size == 0:
            foreground = np.array([int(np.argmax(fraction))])
        subjects.append(SubjectSlices(str(original.get("subject_id", len(subjects))), source, target, foreground))
    return subjects


def split_pools(num_subjects: int, pairing_ratio: float, seed: int) -> tuple[list[int], list[int]]:
    """Split subject indices once into (paired, unpaired) pools: ``ceil(ratio * n)`` (>= 1) paired.

    Example:
        >>> split_pools(10, 0.1, seed=0)[0].__len__(), split_pools(10, 1.0, seed=0)[1]
        (1, [])
    """
    if not 0.0 < float(pairing_ratio) <= 1.0:
        raise ValueError(f"pairing_ratio must be in (0, 1], got {pairing_ratio!r}")
    order = np.random.default_rng(seed).permutation(num_subjects)
    n_paired = min(num_subjects, max(1, math.ceil(pairing_ratio * num_subjects - 1e-9)))
    return sorted(int(i) for i in order[:n_paired]), sorted(int(i) for i in order[n_paired:])


class PartiallyPairedSliceDataset(torch.utils.data.Dataset):
    """Whole training batches of axial slices: ``{"a": (B,1,H,W), "b": (B,1,H,W), "paired": (B,) bool}``.

    Use with ``DataLoader(dataset, batch_size=None)``. See the module docstring for the sampling rule.

    Args:
        subjects: from :func:`load_subject_slices` (training subjects).
        batch_size: rows per batch (even when ``pairing_ratio < 1``).
        pairing_ratio: fraction of subjects whose A/B pairing is used, in (0, 1] (paper: 1, 0.1; also 0.5, 0.01).
        batches_per_epoch: length of the dataset (= ignite epoch length).
        seed: seeds the pool split and every batch.

    Example:
        >>> s = [SubjectSlices(str(k), torch.full((4, 1, 8, 8), k), torch.full((4, 1, 8, 8), -k), np.arange(4))
        ...      for k in range(4)]
        >>> batch = PartiallyPairedSliceDataset(s, batch_size=4, pairing_ratio=0.25, batches_per_epoch=2)[0]
        >>> batch["a"].shape, batch["paired"].tolist()
        (torch.Size([4, 1, 8, 8]), [True, True, False, False])
    """

    def __init__(
        self,
        subjects: Sequence[SubjectSlices],
        batch_size: int = 16,
        pairing_ratio: float = 1.0,
        batches_per_epoch: int = 100,
        seed: int = 0,
    ):
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
        if int(batches_per_epoch) < 1:
            raise ValueError(f"batches_per_epoch must be >= 1, got {batches_per_epoch!r}")
        if not subjects:
            raise Medi2iInputError("no training subjects", field="subjects", expected="at least one")
        self.subjects = list(subjects)
        self.batch_size = int(batch_size)
        self.pairing_ratio = float(pairing_ratio)
        self.batches_per_epoch = int(batches_per_epoch)
        self.seed = int(seed)
        self.epoch = 0
        self.paired_pool, self.unpaired_pool = split_pools(len(self.subjects), self.pairing_ratio, self.seed)
        self.fully_paired = self.pairing_ratio >= 1.0
        if not self.fully_paired:
            if self.batch_size % 2:
                raise ValueError(f"batch_size must be even when pairing_ratio < 1, got {batch_size!r}")
            if len(self.unpaired_pool) < 2:
                raise Medi2iInputError(
                    "too few subjects for unpaired sampling at this pairing ratio",
                    field="pairing_ratio",
                    found=f"{len(self.subjects)} subjects, {len(self.unpaired_pool)} unpaired at {pairing_ratio}",
                    expected="at least 2 subjects in the unpaired pool (A and B come from different subjects)",
                )

    def __len__(self) -> int:
        return self.batches_per_epoch

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose batches ``__getitem__`` returns (0-based)."""
        self.epoch = int(epoch)

    def _draw(self, rng: np.random.Generator, subject: int) -> int:
        return int(rng.choice(self.subjects[subject].foreground))

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < self.batches_per_epoch:
            raise IndexError(index)
        rng = np.random.default_rng((self.seed, self.epoch, int(index)))
        n_paired = self.batch_size if self.fully_paired else self.batch_size // 2
        a, b = [], []
        for _ in range(n_paired):
            subject = int(rng.choice(self.paired_pool))
            k = self._draw(rng, subject)
            a.append(self.subjects[subject].source[k])
            b.append(self.subjects[subject].target[k])
        for _ in range(self.batch_size - n_paired):
            sa, sb = (int(s) for s in rng.choice(self.unpaired_pool, size=2, replace=False))
            a.append(self.subjects[sa].source[self._draw(rng, sa)])
            b.append(self.subjects[sb].target[self._draw(rng, sb)])
        paired = torch.zeros(self.batch_size, dtype=torch.bool)
        paired[:n_paired] = True
        return {"a": torch.stack(a), "b": torch.stack(b), "paired": paired}


def validation_slices(subjects: Sequence[SubjectSlices], slices_per_subject: int = 4) -> dict[str, torch.Tensor]:
    """Fixed held-out slices: ``slices_per_subject`` evenly spaced foreground slices of each subject.

    Returns:
        ``{"a": (V,1,H,W), "b": (V,1,H,W)}`` (paired: validation subjects have both modalities).
    """
    if int(slices_per_subject) < 1:
        raise ValueError(f"slices_per_subject must be >= 1, got {slices_per_subject!r}")
    if not subjects:
        raise Medi2iInputError("no validation subjects", field="subjects", expected="at least one (split 'val')")
    a, b = [], []
    for subject in subjects:
        fg = subject.foreground
        picks = fg[np.linspace(0, fg.size - 1, num=min(slices_per_subject, fg.size)).round().astype(int)]
        a.append(subject.source[picks])
        b.append(subject.target[picks])
    return {"a": torch.cat(a), "b": torch.cat(b)}


def synthesis_datalist(manifest: Any, data_root: Any = None, split: str | Sequence[str] | None = None) -> list[dict]:
    """Rows of a synthesis manifest (``data_root`` defaults to the manifest's folder)."""
    from pathlib import Path

    from medi2i.data.manifest import read_manifest

    path = Path(manifest)
    return read_manifest(path, Path(data_root) if data_root else path.parent, kind="synthesis", split=split)
