"""ANTs SyN baseline: the physical -> voxel ddf conversion (always), and with antspyx (optional) that the
converted field reproduces ANTs' own resampling and registers a shifted pair."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from medi2i.registration.ants_syn import ants_unavailable, physical_to_voxel_ddf
from medi2i.spatial import warp


def test_conversion_divides_by_spacing_and_moves_components_first():
    d = np.zeros((5, 6, 4, 3), np.float32)
    d[..., 0], d[..., 1], d[..., 2] = 3.0, -2.0, 1.0  # mm along the three image axes
    u = physical_to_voxel_ddf(d, (1.5, 2.0, 0.5))
    assert u.shape == (3, 5, 6, 4) and u.dtype == np.float32
    assert u[:, 2, 3, 1].tolist() == [2.0, -1.0, 2.0]


def test_conversion_undoes_a_rotated_direction():
    theta = np.deg2rad(30.0)
    direction = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    voxel = np.array([1.0, -2.0])  # the voxel displacement we want back
    physical = direction @ (np.array([2.0, 0.5]) * voxel)
    d = np.broadcast_to(physical, (4, 4, 2)).copy()
    np.testing.assert_allclose(physical_to_voxel_ddf(d, (2.0, 0.5), direction)[:, 1, 1], voxel, atol=1e-6)


def test_conversion_refuses_mismatched_components():
    with pytest.raises(ValueError, match="spacings"):
        physical_to_voxel_ddf(np.zeros((4, 4, 2)), (1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match=r"\(\*spatial, 3\)"):
        physical_to_voxel_ddf(np.zeros((4, 4, 3)), (1.0, 1.0, 1.0))


def test_missing_antspyx_is_reported_with_the_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "ants", None)  # import ants -> ImportError
    assert "pip install antspyx" in ants_unavailable()


def _blob_pair(shape: tuple[int, ...], shift: int) -> tuple[np.ndarray, np.ndarray]:
    grid = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij")
    centre = [n / 2 for n in shape]

    def blob(offset: int) -> np.ndarray:
        return np.exp(-sum((g - c - offset) ** 2 / (0.02 * n**2) for g, c, n in zip(grid, centre, shape, strict=True)))

    return blob(0).astype(np.float32), blob(shift).astype(np.float32)


@pytest.mark.skipif(ants_unavailable() is not None, reason="antspyx is not installed (optional extra)")
@pytest.mark.parametrize("shape", [(48, 64), (32, 40, 36)])
def test_ants_field_reproduces_ants_resampling_and_registers_a_shifted_blob(shape, tmp_path):
    import ants

    from medi2i.registration.ants_syn import register_ants

    fixed, moving = _blob_pair(shape, shift=3)
    f, m = ants.from_numpy(fixed), ants.from_numpy(moving)
    reference = ants.registration(f, m, "SyNOnly", outprefix=str(tmp_path / "r_"), random_seed=0)["warpedmovout"]
    fl = torch.from_numpy(fixed > 0.5).long()[None, None]
    ml = torch.from_numpy(moving > 0.5).long()[None, None]
    result = register_ants(
        torch.from_numpy(fixed)[None, None], torch.from_numpy(moving)[None, None], fl, ml, (1,), transform="SyNOnly"
    )
    assert result.ddf.shape == (1, len(shape), *shape)
    ours = warp(torch.from_numpy(moving)[None, None], result.ddf)[0, 0].numpy()
    np.testing.assert_allclose(ours, reference.numpy(), atol=1e-4)  # same field, same resampling
    before, after = result.dice[0].tolist()
    assert after > before + 0.2 and after > 0.9
    centre = tuple(n // 2 for n in shape)
    np.testing.assert_allclose(result.ddf[0][(slice(None), *centre)].numpy(), 3.0, atol=0.5)  # pull: +3 voxels
