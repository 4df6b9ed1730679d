"""``test_stop="similarity"``: test-time steps are kept only while they lower the pair's similarity loss.

The issue (#6): an agent that keeps moving after the images are aligned walks away from the alignment when
its steps are re-applied for a fixed number of test steps (D17); on the demo the training-pair Dice fell from
0.586 (identity) to 0.40-0.50. The guard stops each pair at its first step that does not lower the auxiliary
NCC, using no labels.
"""

from __future__ import annotations

import pytest
import torch

from medi2i.registration.config import RLI2ITConfig, smoke_config
from medi2i.registration.inference import register
from medi2i.registration.sac import RLI2ITAgent


class _ConstantAgent(RLI2ITAgent):
    """An agent whose every action is the same shift along axis 0 (state independent, like the failure)."""

    def __init__(self, config: RLI2ITConfig, size: int, shift: float) -> None:
        super().__init__(config, (size, size))
        self.shift = shift

    @torch.no_grad()
    def act(self, state, deterministic, clamp):
        action = torch.zeros(state.shape[0], 2, *state.shape[2:])
        action[:, 0] = self.shift
        return action.clamp(-clamp, clamp), torch.zeros(state.shape[0], self.config.plan_dim)


def _blob_pair(offset: int, size: int = 32) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A smooth blob and a copy shifted down by ``offset`` rows, with their label maps."""
    axis = torch.arange(size, dtype=torch.float32) - size / 2 + 0.5
    yy, xx = torch.meshgrid(axis, axis, indexing="ij")
    fixed = torch.exp(-(yy**2 + xx**2) / 60.0)[None, None] + 0.1 * torch.exp(-((yy - 4) ** 2 + xx**2) / 8.0)
    moving = torch.roll(fixed, offset, dims=2)
    return fixed, moving, (fixed > 0.5).long(), (moving > 0.5).long()


@pytest.mark.parametrize("stop", ["none", "similarity"])
def test_guard_stops_once_the_steps_stop_helping(stop):
    fixed, moving, fixed_label, moving_label = _blob_pair(offset=2)
    cfg = smoke_config(test_steps=6, test_clamp=1.0, ncc_windows=(9,), test_stop=stop)
    agent = _ConstantAgent(cfg, 32, shift=1.0)  # pulls one row further each step: 2 steps undo the offset
    result = register(agent, fixed, moving, fixed_label=fixed_label, moving_label=moving_label, track_ssim=False)
    dice = result.dice[0]
    if stop == "similarity":
        assert float(result.ddf[0, 0].mean()) == pytest.approx(2.0, abs=1e-4)  # stopped at the alignment
        assert float(dice[-1]) == pytest.approx(1.0) and torch.equal(dice[2:], dice[2:3].expand(5))
    else:
        assert float(result.ddf[0, 0, 8:24, 8:24].mean()) == pytest.approx(6.0, abs=1e-4)  # walked past it
        assert float(dice[2]) == pytest.approx(1.0) and float(dice[-1]) < 0.7


def test_guard_keeps_an_aligned_pair_at_the_identity():
    fixed, _, label, _ = _blob_pair(offset=0)
    noisy = fixed + 0.02 * torch.randn(fixed.shape, generator=torch.Generator().manual_seed(0))
    cfg = smoke_config(test_steps=4, test_clamp=1.0, test_stop="similarity", similarity_sigma=1.0)
    result = register(_ConstantAgent(cfg, 32, shift=1.0), fixed, noisy, fixed_label=label, moving_label=label)
    assert float(result.ddf.abs().max()) == 0.0 and torch.equal(result.warped, noisy)


def test_guard_is_per_pair():
    pairs = [_blob_pair(offset) for offset in (2, 0)]
    fixed = torch.cat([p[0] for p in pairs])
    moving = torch.cat([p[1] for p in pairs])
    cfg = smoke_config(test_steps=4, test_clamp=1.0, ncc_windows=(9,), test_stop="similarity")
    result = register(_ConstantAgent(cfg, 32, shift=1.0), fixed, moving, track_ssim=False)
    means = result.ddf[:, 0].mean(dim=(1, 2)).tolist()
    assert means == pytest.approx([2.0, 0.0], abs=1e-4)


def test_stop_option_is_validated():
    with pytest.raises(ValueError, match="test_stop"):
        RLI2ITConfig(spatial_dims=2, test_stop="early")
    agent = RLI2ITAgent(smoke_config(), (32, 32))
    with pytest.raises(ValueError, match="stop"):
        register(agent, torch.rand(1, 1, 32, 32), torch.rand(1, 1, 32, 32), stop="early")
