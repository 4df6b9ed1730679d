"""``similarity_sigma`` (NCC on Gaussian-smoothed images) and ``drift_weight`` (mean-translation penalty).

The issue (#6): on noisy images the auxiliary NCC is lower for a constant sub-voxel shift than for the
correct (identity) alignment, because bilinear resampling at a fractional offset averages neighbouring
voxels and so removes part of the noise; the actor learned such a state-independent shift and re-applied
it at every step until Dice collapsed. These tests pin the mechanism on a phantom and show that smoothing
both images first removes it.
"""

from __future__ import annotations

import pytest
import torch
from monai.networks.layers import GaussianFilter

from medi2i.registration.config import RLI2ITConfig, smoke_config
from medi2i.registration.sac import AuxLoss, RLI2ITAgent, aux_loss, drift_penalty
from medi2i.spatial import warp


def _noisy_pair(noise: float = 0.05, size: int = 48) -> tuple[torch.Tensor, torch.Tensor]:
    """Two noisy copies ``(1, 1, size, size)`` of one smooth 'head': perfectly aligned anatomy."""
    yy, xx = torch.meshgrid(torch.arange(size) - size / 2 + 0.5, torch.arange(size) - size / 2 + 0.5, indexing="ij")
    r = (yy**2 + xx**2).sqrt()
    base = torch.zeros(size, size)
    base[r < 21], base[r < 17], base[r < 11] = 0.22, 0.37, 0.46
    base[r >= 21] = torch.where(r[r >= 21] < 24, 0.8, 0.0)
    base = GaussianFilter(2, 1.0)(base[None, None])
    g = torch.Generator().manual_seed(1)
    return base + noise * torch.randn(base.shape, generator=g), base + noise * torch.randn(base.shape, generator=g)


def _similarity(config: RLI2ITConfig, shift: float) -> float:
    fixed, moving = _noisy_pair()
    aux = AuxLoss(config)
    u = torch.full((1, 2, *fixed.shape[2:]), shift)
    return float(aux.similarity(aux.presmooth(fixed), warp(aux.presmooth(moving), u, padding_mode="zeros")))


@pytest.mark.parametrize("window", [5, 9])
def test_raw_ncc_prefers_a_subvoxel_shift_of_aligned_noisy_images(window):
    # the failure mode: a quarter-voxel diagonal shift of perfectly aligned images lowers the loss
    cfg = smoke_config(ncc_windows=(window,))
    assert _similarity(cfg, 0.25) < _similarity(cfg, 0.0) - 0.01


@pytest.mark.parametrize("window", [5, 9])
def test_presmoothed_ncc_prefers_the_alignment(window):
    cfg = smoke_config(ncc_windows=(window,), similarity_sigma=1.0)
    identity = _similarity(cfg, 0.0)
    # measured: window 9, identity -0.869 vs -0.858 (0.25 px) and -0.809 (0.5 px)
    assert identity < _similarity(cfg, 0.25) - 0.005
    assert identity < _similarity(cfg, 0.5) - 0.03


def test_presmooth_is_off_by_default_and_smooths_when_set():
    image = torch.rand(1, 1, 16, 16)
    assert AuxLoss(smoke_config()).presmooth(image) is image
    smoothed = AuxLoss(smoke_config(similarity_sigma=1.0)).presmooth(image)
    assert smoothed.shape == image.shape and float(smoothed.std()) < 0.6 * float(image.std())


def test_drift_penalty_is_the_squared_mean_displacement():
    u = torch.randn(3, 2, 8, 8)
    expected = (u.mean(dim=(2, 3)) ** 2).sum(dim=1).mean()
    assert float(drift_penalty(u)) == pytest.approx(float(expected), rel=1e-6)
    assert float(drift_penalty(u - u.mean(dim=(2, 3), keepdim=True))) == pytest.approx(0.0, abs=1e-10)


def _aux_batch(size: int = 32):
    g = torch.Generator().manual_seed(0)
    state = torch.rand(4, 2, size, size, generator=g)
    return {
        "state": state,
        "moving": state[:, 1:],
        "field": torch.zeros(4, 2, size, size),
    }


def _aux_with_and_without(cfg, weight_field: str):
    """Auxiliary-loss logs of one agent and batch with ``cfg`` and with ``weight_field`` set to 0 (same plan noise)."""
    batch = _aux_batch()
    torch.manual_seed(0)
    agent = RLI2ITAgent(cfg, (32, 32))
    with torch.no_grad():
        torch.manual_seed(1)
        logs = aux_loss(agent, AuxLoss(cfg), batch)
        torch.manual_seed(1)
        plain = aux_loss(agent, AuxLoss(cfg.replace(**{weight_field: 0.0})), batch)
    return logs, plain


@pytest.mark.parametrize("target", ["step", "accumulated"])
def test_drift_weight_adds_the_penalty_to_the_aux_loss(target):
    logs, plain = _aux_with_and_without(smoke_config(aux_target=target, drift_weight=5.0), "drift_weight")
    assert "losses/drift" in logs and "losses/drift" not in plain
    assert float(logs["losses/aux_loss"]) == pytest.approx(
        float(plain["losses/aux_loss"]) + 5.0 * float(logs["losses/drift"]), rel=1e-5
    )


def _drift_after_training(drift_weight: float, steps: int = 30) -> float:
    """Actor-only training on the auxiliary loss from a fixed initialisation; the final mean-shift penalty."""
    cfg = smoke_config(drift_weight=drift_weight)
    torch.manual_seed(0)
    agent = RLI2ITAgent(cfg, (32, 32))
    batch = _aux_batch()
    optimizer = torch.optim.Adam(agent.actor.parameters(), lr=1e-3)
    aux = AuxLoss(cfg)
    for _ in range(steps):
        logs = aux_loss(agent, aux, batch)
        optimizer.zero_grad()
        logs["losses/aux_loss"].backward()
        optimizer.step()
    with torch.no_grad():
        out = agent.policy(batch["state"], deterministic=True)
        return float(drift_penalty(agent.decode(out.plan, out.skips)))


def test_drift_weight_suppresses_the_mean_shift():
    free, penalised = _drift_after_training(0.0), _drift_after_training(10.0)
    assert penalised < 0.3 * free, (free, penalised)


@pytest.mark.parametrize("changes", [dict(similarity_sigma=-1.0), dict(drift_weight=-0.1), dict(identity_weight=-1.0)])
def test_config_rejects_negative_weights(changes):
    with pytest.raises(ValueError, match="similarity_sigma, drift_weight and identity_weight"):
        RLI2ITConfig(spatial_dims=2, **changes)


def test_identity_weight_adds_the_fixed_point_term():
    logs, plain = _aux_with_and_without(smoke_config(aux_target="accumulated", identity_weight=3.0), "identity_weight")
    assert "losses/identity" in logs and "losses/identity" not in plain
    assert float(logs["losses/aux_loss"]) == pytest.approx(
        float(plain["losses/aux_loss"]) + 3.0 * float(logs["losses/identity"]), rel=1e-5
    )


def test_identity_weight_teaches_no_motion_for_aligned_states():
    def field_norm_after_training(weight: float) -> float:
        cfg = smoke_config(identity_weight=weight)
        torch.manual_seed(0)
        agent = RLI2ITAgent(cfg, (32, 32))
        batch = _aux_batch()
        optimizer = torch.optim.Adam(agent.actor.parameters(), lr=1e-3)
        aux = AuxLoss(cfg)
        for _ in range(30):
            loss = aux_loss(agent, aux, batch)["losses/aux_loss"]
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            aligned = torch.cat([batch["state"][:, :1]] * 2, dim=1)
            out = agent.policy(aligned, deterministic=True)
            return float(agent.decode(out.plan, out.skips).pow(2).mean())

    assert field_norm_after_training(10.0) < 0.3 * field_norm_after_training(0.0)
