"""Whole-volume translation: NIfTI in, NIfTI out on exactly the input's grid.

Steps (:func:`translate_volume`):

1. load with :func:`medi2i.io.load_volume` (3D, finite; a mask must share the grid) -- every check runs
   before anything is written;
2. normalise with the preset of the source modality: CT HU window [-1024, 3000] -> [-1, 1], or MR
   foreground percentiles 0.5-99.5 -> [-1, 1] (inside the mask when given);
3. cut into axial slices along the array axis that runs superior-inferior in the affine (not assumed to
   be the last axis), fit them to the model size (pad/crop or resize, as in training);
4. translate every slice, ``batch_size`` at a time, on the translator's device;
5. undo the fitting (original in-plane size), restack along the same axis, and undo the normalisation
   of the target modality:

   - CT target: the inverse HU window, ``HU = -1024 + (y + 1) / 2 * 4024``;
   - MR target from an MR source: the source's own percentile window, ``v = lo + (y + 1) / 2 * (hi - lo)``,
     so the output has the input's intensity scale (MR has no absolute unit);
   - MR target from a CT source: the translator's ``mr_output_range`` ``(lo, hi)`` (default ``(0, 1000)``,
     the demo cohort's scale) in the same formula;

6. with a mask, voxels outside it are set to the target's background (-1024 HU for CT, 0 for MR);
7. :func:`write` writes float32 with :func:`medi2i.io.save_like`, i.e. the input's affine and shape.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from medi2i.errors import Medi2iInputError
from medi2i.io import Volume, check_same_grid, load_volume, save_like

if TYPE_CHECKING:
    from medi2i.synthesis.model_files import Translator
    from medi2i.typing import PathLike

CT_BACKGROUND_HU = -1024.0
MR_BACKGROUND = 0.0


def _as_volume(x: Volume | PathLike, kind: str) -> Volume:
    volume = x if isinstance(x, Volume) else load_volume(x, kind=kind, spatial_dims=3)
    if volume.array.ndim != 3:
        raise Medi2iInputError(
            "whole-volume translation needs a 3D volume",
            path=volume.path,
            field="shape",
            found=volume.array.shape,
            expected="(X, Y, Z)",
        )
    if kind == "image" and not np.all(np.isfinite(volume.array)):
        raise Medi2iInputError("image contains NaN or Inf", path=volume.path, field="values", expected="finite")
    return volume


def load_inputs(image: Volume | PathLike, mask: Volume | PathLike | None = None) -> tuple[Volume, Volume | None]:
    """Load and check the input volume and optional mask (same grid) before any work is done."""
    volume = _as_volume(image, "image")
    mask_volume = None
    if mask is not None:
        mask_volume = _as_volume(mask, "mask")
        check_same_grid(volume, mask_volume, names=(str(volume.path or "input"), str(mask_volume.path or "mask")))
    return volume, mask_volume


def translate_volume(
    translator: Translator,
    image: Volume | PathLike,
    direction: str,
    *,
    mask: Volume | PathLike | None = None,
    batch_size: int = 16,
) -> tuple[np.ndarray, Volume]:
    """Translate a whole 3D volume slice by slice.

    Args:
        translator: from :func:`medi2i.synthesis.model_files.load_translator`.
        image: input volume (path or :class:`~medi2i.io.Volume`) of the direction's source modality.
        direction: ``"a2b"`` or ``"b2a"``.
        mask: optional foreground mask on the same grid.
        batch_size: slices per network call.

    Returns:
        ``(array, reference)``: the translated float32 array in on-disk order (HU for CT) and the input
        volume whose geometry it shares.
    """
    from monai.data import MetaTensor

    from medi2i.data.transforms import CTWindow, MRPercentileNormalize, axial_axis, slices_to_volume, volume_to_slices
    from medi2i.synthesis.data import fit_slices, unfit_slices
    from medi2i.synthesis.model_files import check_direction

    check_direction(direction)
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
    volume, mask_volume = load_inputs(image, mask)
    source, target = translator.source_modality(direction), translator.target_modality(direction)
    tensor = torch.from_numpy(np.ascontiguousarray(volume.array, dtype=np.float32))[None]
    mask_tensor = None if mask_volume is None else torch.from_numpy(np.asarray(mask_volume.array, dtype=bool))[None]
    if source == "ct":
        normaliser: Any = CTWindow()
        normalised = normaliser(tensor)
        window = (normaliser.mapping.src_lo, normaliser.mapping.src_hi)
    else:
        normaliser = MRPercentileNormalize()
        normalised = normaliser(MetaTensor(tensor), mask_tensor)
        info = normalised.applied_operations[-1]["extra_info"]  # the recorded percentile window
        window = (float(info["src_lo"]), float(info["src_hi"]))
    normalised = torch.as_tensor(normalised).float()

    axis = axial_axis(volume.affine)
    slices = volume_to_slices(normalised, axis)  # (S, 1, H, W)
    in_plane = tuple(slices.shape[-2:])
    fitted = fit_slices(slices, translator.model_size, translator.fit_mode)
    outputs = []
    for start in range(0, fitted.shape[0], int(batch_size)):
        outputs.append(translator.translate(fitted[start : start + int(batch_size)], direction).float().cpu())
    translated = unfit_slices(torch.cat(outputs), in_plane, translator.fit_mode)
    out = slices_to_volume(translated, axis)[0].clamp(-1.0, 1.0)

    if target == "ct":
        lo, hi = CT_BACKGROUND_HU, 3000.0
    elif source == "mr":
        lo, hi = float(window[0]), float(window[1])
    else:
        lo, hi = translator.mr_output_range
    result = (lo + (out + 1.0) / 2.0 * (hi - lo)).numpy().astype(np.float32)
    if mask_volume is not None:
        background = CT_BACKGROUND_HU if target == "ct" else MR_BACKGROUND
        result[~np.asarray(mask_volume.array, dtype=bool)] = background
    return result, volume


def write(path: PathLike, array: np.ndarray, reference: Volume) -> Any:
    """Write ``array`` as float32 on ``reference``'s exact grid (atomic)."""
    return save_like(path, array.astype(np.float32), reference, dtype=np.float32)


def synthesize_file(
    translator: Translator,
    input_path: PathLike,
    output_path: PathLike,
    direction: str,
    *,
    mask: PathLike | None = None,
    batch_size: int = 16,
) -> Any:
    """Translate ``input_path`` and write ``output_path`` with the input's geometry; returns the written path."""
    array, reference = translate_volume(translator, input_path, direction, mask=mask, batch_size=batch_size)
    return write(output_path, array, reference)


def prediction_path(output_dir: PathLike, subject_id: str) -> Any:
    """``<output_dir>/<subject_id>.nii.gz`` (the layout :mod:`medi2i.metrics.evaluate` reads)."""
    from pathlib import Path

    if not subject_id or "/" in subject_id or "\\" in subject_id or subject_id in (".", ".."):
        raise Medi2iInputError("subject_id cannot be used as a file name", field="subject_id", found=subject_id)
    return Path(output_dir) / f"{subject_id}.nii.gz"


class ManifestTranslator:
    """Translate every volume of a synthesis datalist and write ``<output_dir>/<subject_id>.nii.gz``.

    The input of row ``r`` is ``r["source"]`` for ``a2b`` and ``r["target"]`` for ``b2a`` (manifest columns are
    modality A and modality B of the bundle); the row's ``mask`` is used when ``use_mask`` and present.
    Every row's files are checked (loaded) before the first output is written.

    Args:
        translator: a loaded :class:`~medi2i.synthesis.model_files.Translator`.
        dataset: rows of :func:`medi2i.synthesis.data.synthesis_datalist` (any sequence of dicts).
        output_dir: destination folder (created).
        direction: ``"a2b"`` or ``"b2a"``.
        use_mask: apply the row's mask (outside -> target background).
        batch_size: slices per network call.
        max_cases: translate only the first ``max_cases`` rows (``None``: all).
    """

    def __init__(
        self,
        translator: Translator,
        dataset: Any,
        output_dir: PathLike,
        direction: str = "a2b",
        use_mask: bool = True,
        batch_size: int = 16,
        max_cases: int | None = None,
    ):
        from medi2i.synthesis.model_files import check_direction

        self.direction = check_direction(direction)
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
        if max_cases is not None and int(max_cases) < 1:
            raise ValueError(f"max_cases must be >= 1 or None, got {max_cases!r}")
        self.translator = translator
        self.rows = [dict(dataset[i]) for i in range(len(dataset))][: None if max_cases is None else int(max_cases)]
        self.output_dir = output_dir
        self.use_mask = bool(use_mask)
        self.batch_size = int(batch_size)

    def run(self) -> list[Any]:
        """Translate and write every row; returns the written paths."""
        from pathlib import Path

        if not self.rows:
            raise Medi2iInputError("no volumes to translate", field="dataset", expected="at least one manifest row")
        column = "source" if self.direction == "a2b" else "target"
        jobs = []
        for row in self.rows:  # validate everything first: nothing is written for a bad manifest
            out = prediction_path(self.output_dir, str(row.get("subject_id", "")))
            mask = row.get("mask") if self.use_mask else None
            jobs.append((load_inputs(row[column], mask or None), out))
        Path(self.output_dir).mkdir(parents=True, exist_ok=True)
        written = []
        for (volume, mask_volume), out in jobs:
            array, reference = translate_volume(
                self.translator, volume, self.direction, mask=mask_volume, batch_size=self.batch_size
            )
            written.append(write(out, array, reference))
        return written


def manifest_cases(dataset: Any, pred_dir: PathLike, direction: str = "a2b", max_cases: int | None = None) -> list:
    """:class:`~medi2i.metrics.evaluate.SynthesisCase` per row: prediction ``<pred_dir>/<id>.nii.gz`` against the
    direction's reference column (``target`` for ``a2b``, ``source`` for ``b2a``), with the row's mask."""
    from pathlib import Path

    from medi2i.metrics.evaluate import SynthesisCase
    from medi2i.synthesis.model_files import check_direction

    reference = "target" if check_direction(direction) == "a2b" else "source"
    rows = [dict(dataset[i]) for i in range(len(dataset))][: None if max_cases is None else int(max_cases)]
    return [
        SynthesisCase(
            str(row["subject_id"]),
            prediction_path(pred_dir, str(row["subject_id"])),
            Path(row[reference]),
            Path(row["mask"]) if row.get("mask") else None,
        )
        for row in rows
    ]


def report_outputs(**folders: Any) -> dict[str, str]:
    """Print where a bundle run left its outputs (one ``name: absolute path`` line each); returns them."""
    from pathlib import Path

    lines = {name: str(Path(folder).resolve()) for name, folder in folders.items()}
    for name, path in lines.items():
        print(f"medi2i bidpm outputs -- {name}: {path}")
    return lines
