"""Whole-volume registration on the fixed image's grid, shared by ``medi2i register`` and the bundle's
``inference.json`` (:class:`ManifestRegistrar`).

The agent works on ``[0, 1]`` images (registration preset) padded/cropped to its training size; the
accumulated field is brought back to the fixed grid exactly (the pad/crop record inverted; where the model
size cropped the image, the field continues with its edge displacement, so no displacement jump creates
spurious folding at the seam). Fields follow the project's DDF convention (voxel units, pull,
``warped(x) = moving(x + u(x))``) and are written in the Learn2Reg layout by :func:`medi2i.spatial.write_ddf`.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from medi2i.io import Volume
    from medi2i.registration.sac import RLI2ITAgent
    from medi2i.typing import PathLike

logger = logging.getLogger(__name__)


@dataclass
class VolumeRegistration:
    """Result on the fixed grid: ``ddf`` ``(ndim, *spatial)`` float32 voxels, ``warped`` ``(*spatial)`` in
    the moving image's original intensities, ``dice_over_steps`` (empty without labels)."""

    ddf: np.ndarray
    warped: np.ndarray
    steps: int


def register_volumes(agent: RLI2ITAgent, fixed: Volume, moving: Volume, steps: int | None = None) -> VolumeRegistration:
    """Register ``moving`` onto ``fixed`` (same grid, already checked) with ``steps`` mean-plan steps.

    Raises:
        Medi2iInputError: the volumes' dimensionality differs from the agent's.
    """
    from monai.data import MetaTensor

    from medi2i.data.intensity import RegistrationNormalized
    from medi2i.data.slices import model_size_transform
    from medi2i.errors import Medi2iInputError
    from medi2i.registration.inference import register
    from medi2i.spatial import warp

    cfg = agent.config
    if fixed.array.ndim != cfg.spatial_dims:
        raise Medi2iInputError(
            "image dimensionality does not match the model",
            path=fixed.path,
            found=f"{fixed.array.ndim}D {tuple(fixed.array.shape)}",
            expected=f"{cfg.spatial_dims}D (the model was trained on {cfg.spatial_dims}D images)",
        )
    device = next(agent.parameters()).device
    data = {"fixed": fixed.to_metatensor(), "moving": moving.to_metatensor()}
    data = RegistrationNormalized(["fixed", "moving"])(data)
    fit = model_size_transform(["fixed", "moving"], agent.image_size, background=0.0, allow_missing_keys=True)
    data = fit(data)
    result = register(
        agent,
        data["fixed"].as_tensor()[None].to(device),
        data["moving"].as_tensor()[None].to(device),
        steps=steps,
        track_ssim=False,
    )

    def invert(tensor: torch.Tensor) -> torch.Tensor:
        meta = MetaTensor(tensor, applied_operations=copy.deepcopy(data["fixed"].applied_operations))
        return fit.inverse({"fixed": meta})["fixed"].as_tensor().float()

    ddf = invert(result.ddf[0].cpu())
    kept = invert(torch.ones(1, *agent.image_size))[0] > 0
    for axis in range(cfg.spatial_dims):
        inside = kept.any(dim=tuple(a for a in range(cfg.spatial_dims) if a != axis)).nonzero().flatten()
        index = torch.arange(kept.shape[axis]).clamp(int(inside.min()), int(inside.max()))
        ddf = ddf.index_select(axis + 1, index)
    if tuple(ddf.shape[1:]) != tuple(fixed.array.shape):  # pad/crop inverse must restore the grid exactly
        raise RuntimeError(f"field shape {tuple(ddf.shape)} does not match the fixed grid {fixed.array.shape}")
    image = torch.as_tensor(moving.array, dtype=torch.float32)[None, None]
    warped = warp(image, ddf[None], padding_mode=cfg.image_padding)[0, 0].numpy()
    return VolumeRegistration(ddf.numpy(), warped, cfg.test_steps if steps is None else int(steps))


def warp_label(label: np.ndarray, ddf: np.ndarray) -> np.ndarray:
    """Nearest-neighbour warp of an integer label map ``(*spatial)`` by ``ddf`` ``(ndim, *spatial)``; dtype kept."""
    from medi2i.spatial import warp

    moved = warp(torch.as_tensor(label.astype(np.int64))[None, None], torch.as_tensor(ddf)[None], mode="nearest")
    return moved[0, 0].round().numpy().astype(label.dtype)


class ManifestRegistrar:
    """Register every pair of a manifest split and write ``disp_<pair_id>.nii.gz`` (Learn2Reg layout, the
    file names :func:`medi2i.metrics.registration_cases_from_manifest` reads) and ``warped_<pair_id>.nii.gz``.

    Every pair's files are validated (same grid) before the agent is loaded and before anything is written.

    Args:
        agent: a loaded agent, or a bundle folder / agent file (:func:`medi2i.registration.model_files.load_agent`,
            loaded after every pair has been checked).
        manifest: registration manifest (``pair_id, split, fixed, moving[, fixed_label, moving_label]``).
        data_root: folder the manifest's paths are relative to (default: the manifest's folder).
        output_dir: where the fields and warped images go (created).
        split: the manifest split to register (``None`` = all rows).
        steps: mean-plan steps (default: the agent's ``test_steps``).
        device: torch device (default: CUDA when available).
        max_cases: register only the first ``max_cases`` pairs.
    """

    def __init__(
        self,
        agent: RLI2ITAgent | PathLike,
        manifest: PathLike,
        output_dir: PathLike,
        *,
        data_root: PathLike | None = None,
        split: str | None = "test",
        steps: int | None = None,
        device: str | torch.device | None = None,
        max_cases: int | None = None,
    ) -> None:
        if max_cases is not None and max_cases < 1:
            raise ValueError(f"max_cases must be >= 1 or None, got {max_cases}")
        self.agent, self.manifest = agent, Path(manifest)
        self.data_root = Path(data_root) if data_root else self.manifest.parent
        self.output_dir, self.split, self.steps = Path(output_dir), split, steps
        self.device, self.max_cases = device, max_cases

    def rows(self) -> list[dict]:
        """The selected manifest rows (paths resolved and validated by :func:`~medi2i.data.manifest.read_manifest`)."""
        from medi2i.data.manifest import read_manifest
        from medi2i.errors import Medi2iInputError

        rows = read_manifest(self.manifest, self.data_root, kind="registration", split=self.split)
        if not rows:
            raise Medi2iInputError("no registration pairs", path=self.manifest, field="split", found=self.split)
        for row in rows:
            pair_id = str(row["pair_id"])
            if not pair_id or any(sep in pair_id for sep in "/\\") or pair_id in (".", ".."):
                raise Medi2iInputError(
                    "pair_id cannot name an output file", path=self.manifest, field="pair_id", found=pair_id
                )
        return rows[: self.max_cases] if self.max_cases else rows

    def run(self) -> list[Path]:
        """Register the pairs; returns the written displacement-field paths."""
        from medi2i.io import check_same_grid, load_volume, save_like
        from medi2i.registration.model_files import load_agent
        from medi2i.spatial import write_ddf

        rows = self.rows()
        for row in rows:  # check every pair before loading the model or writing anything
            fixed, moving = load_volume(row["fixed"], kind="image"), load_volume(row["moving"], kind="image")
            check_same_grid(fixed, moving, names=("fixed", "moving"))
        agent = self.agent if isinstance(self.agent, torch.nn.Module) else load_agent(self.agent, device=self.device)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        written = []
        for row in _progress(rows):
            fixed, moving = load_volume(row["fixed"], kind="image"), load_volume(row["moving"], kind="image")
            result = register_volumes(agent, fixed, moving, self.steps)
            path = self.output_dir / f"disp_{row['pair_id']}.nii.gz"
            write_ddf(path, result.ddf, fixed.affine)
            save_like(self.output_dir / f"warped_{row['pair_id']}.nii.gz", result.warped, fixed, dtype=np.float32)
            written.append(path)
        logger.info("registered %d pairs into %s", len(written), self.output_dir)
        return written


def _progress(rows: Sequence[dict]):
    from tqdm.auto import tqdm

    return tqdm(rows, desc="register", unit="pair", leave=False, disable=len(rows) < 2)
