"""ANTs SyN (Avants et al., MedIA 2008) through antspyx, as an optional baseline in the RL-I2IT harness.

antspyx is not a dependency: it pins ``numpy<2.4`` and ``scipy<1.16`` (0.6.3, 2026), older than the core's,
so install it in its own environment (``pip install antspyx``, see ``benchmarks/README.md``). It is imported
only when a function here needs it.

ANTs works in physical space. The images are handed over on a common grid (``spacing``, origin 0, identity
direction); ANTs' forward transforms are composed into one displacement field ``d(p)`` that maps a fixed point
``p`` to the moving point ``p + d(p)`` (a pull field, as ours), in physical units with one component per image
axis. :func:`physical_to_voxel_ddf` turns it into the library's convention: ``(ndim, *spatial)`` voxel
displacements on the fixed grid, ``warped(x) = moving(x + ddf(x))``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from medi2i.registration.inference import RegistrationResult

#: ANTs transform names this wrapper accepts (``ants.registration``'s ``type_of_transform``)
TRANSFORMS = ("SyN", "SyNOnly", "SyNRA", "SyNCC", "ElasticSyN")


def ants_unavailable() -> str | None:
    """``None`` when antspyx imports, else why not (one line)."""
    try:
        import ants  # noqa: F401
    except ImportError as error:
        return f"antspyx is not installed ({error}); install it in its own environment: pip install antspyx"
    return None


def physical_to_voxel_ddf(
    displacement: np.ndarray, spacing: Sequence[float], direction: np.ndarray | None = None
) -> np.ndarray:
    """Physical displacement field ``(*spatial, ndim)`` (ANTs' layout, components in physical axis order) ->
    voxel ddf ``(ndim, *spatial)`` on the same grid: ``u = diag(spacing)^-1 D^-1 d`` per voxel.

    Example:
        >>> d = np.zeros((4, 4, 2), np.float32); d[..., 0] = 3.0  # 3 mm along the first axis
        >>> physical_to_voxel_ddf(d, (1.5, 1.0))[:, 0, 0].tolist()
        [2.0, 0.0]
    """
    ndim = displacement.shape[-1]
    if displacement.ndim != ndim + 1 or len(spacing) != ndim:
        raise ValueError(f"displacement must be (*spatial, {ndim}) with {ndim} spacings, got {displacement.shape}")
    direction = np.eye(ndim) if direction is None else np.asarray(direction, dtype=np.float64)
    index_from_physical = np.linalg.inv(direction @ np.diag(np.asarray(spacing, dtype=np.float64)))
    voxel = np.einsum("ij,...j->...i", index_from_physical, displacement.astype(np.float64))
    return np.moveaxis(voxel, -1, 0).astype(np.float32)


def ants_syn_ddf(
    fixed: np.ndarray,
    moving: np.ndarray,
    *,
    transform: str = "SyN",
    spacing: Sequence[float] | None = None,
    seed: int = 0,
    **options: object,
) -> np.ndarray:
    """Register one pair of arrays on a common grid with ANTs; return the voxel ddf ``(ndim, *spatial)``.

    Args:
        fixed: fixed image, ``(*spatial)`` (2D or 3D).
        moving: moving image on the same grid.
        transform: ANTs ``type_of_transform`` (``SyN`` = affine then SyN, ``SyNOnly`` = deformable only, ...).
        spacing: voxel size per axis (default 1): ANTs' smoothing and step sizes are in physical units.
        seed: ANTs' random seed (its metric sampling), for repeatable runs.
        **options: passed on to ``ants.registration`` (e.g. ``reg_iterations=(40, 20, 0)``).

    Raises:
        ImportError: antspyx is not installed.
        ValueError: mismatched shapes, a dimension other than 2 or 3, non-finite values or an unknown transform.
    """
    import ants

    if fixed.shape != moving.shape or fixed.ndim not in (2, 3):
        raise ValueError(f"fixed and moving must be 2D or 3D arrays of one shape, got {fixed.shape}, {moving.shape}")
    if not (np.isfinite(fixed).all() and np.isfinite(moving).all()):
        raise ValueError("fixed and moving must be finite")
    if transform not in TRANSFORMS:
        raise ValueError(f"transform must be one of {TRANSFORMS}, got {transform!r}")
    spacing = tuple(float(s) for s in (spacing or (1.0,) * fixed.ndim))
    images = []
    for array in (fixed, moving):
        image = ants.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
        image.set_spacing(spacing)
        images.append(image)
    with tempfile.TemporaryDirectory(prefix="medi2i_ants_") as tmp:  # ANTs writes its transforms to files
        prefix = str(Path(tmp) / "pair_")
        result = ants.registration(
            images[0], images[1], type_of_transform=transform, outprefix=prefix, random_seed=seed, **options
        )
        composed = ants.apply_transforms(images[0], images[1], result["fwdtransforms"], compose=prefix + "all_")
        field = ants.image_read(composed)
        displacement = field.numpy()
        direction = np.asarray(field.direction)
    return physical_to_voxel_ddf(displacement, spacing, direction)


@torch.no_grad()
def register_ants(
    fixed: torch.Tensor,
    moving: torch.Tensor,
    fixed_label: torch.Tensor | None = None,
    moving_label: torch.Tensor | None = None,
    label_ids: tuple[int, ...] = (1, 2, 3),
    *,
    transform: str = "SyN",
    spacing: Sequence[float] | None = None,
    seed: int = 0,
    **options: object,
) -> RegistrationResult:
    """:func:`ants_syn_ddf` per pair of a batch ``(B, 1, *spatial)``; the result has the same layout as the
    other baselines' (Dice trajectory ``(B, 2)`` = identity, registered, when labels are given)."""
    from medi2i.registration.baselines import result_from_ddf

    ddfs = [
        ants_syn_ddf(f[0].cpu().numpy(), m[0].cpu().numpy(), transform=transform, spacing=spacing, seed=seed, **options)
        for f, m in zip(fixed, moving, strict=True)
    ]
    ddf = torch.from_numpy(np.stack(ddfs)).to(fixed.device)
    return result_from_ddf(ddf, fixed.float(), moving.float(), fixed_label, moving_label, label_ids, "zeros")
