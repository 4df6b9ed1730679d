"""Trainer, exact resume, inference and baselines on small synthetic pairs."""

from __future__ import annotations

import pytest
import torch

from medi2i.registration.baselines import VoxelMorphBaseline, register_identity, register_voxelmorph, train_voxelmorph
from medi2i.registration.config import smoke_config
from medi2i.registration.inference import register
from medi2i.registration.learner import RLI2ITLearner
from medi2i.registration.synthetic import synthetic_pairs
from medi2i.registration.trainer import PairSet, RLI2ITTrainer


def _pairs(n: int, seed: int) -> PairSet:
    p = synthetic_pairs(n, seed=seed)
    return PairSet(p.fixed, p.moving, p.fixed_label, p.moving_label, [str(i) for i in range(n)])


def _trainer(tmp, **kw) -> RLI2ITTrainer:
    torch.manual_seed(0)
    cfg = smoke_config(warmup_episodes=1, batch_size=4, buffer_capacity=20, reward_labels="gt")
    learner = RLI2ITLearner(cfg, (32, 32), "cpu")
    return RLI2ITTrainer(learner, _pairs(6, 1), _pairs(2, 2), tmp, **kw)


def test_resume_is_exact_including_buffer_and_pair_sampler(tmp_path):
    reference = _trainer(tmp_path / "ref", log_interval=0)
    reference.fit(4)
    first = _trainer(tmp_path / "run", log_interval=0)
    first.fit(2)
    resumed = _trainer(tmp_path / "other", log_interval=0)
    torch.manual_seed(123)  # scramble the global RNG: the checkpoint must restore it
    resumed.resume(tmp_path / "run" / "rl_i2it_final.pt")
    assert resumed.state.iteration == 2
    resumed.fit(4)
    ref_state, res_state = reference.learner.agent.state_dict(), resumed.learner.agent.state_dict()
    assert all(torch.equal(ref_state[k], res_state[k]) for k in ref_state)
    assert torch.equal(reference.learner.buffer.storage["state"], resumed.learner.buffer.storage["state"])
    assert reference.learner.global_step == resumed.learner.global_step == 20


def test_validation_best_checkpoint_and_tensorboard(tmp_path):
    trainer = _trainer(tmp_path, log_interval=1, val_interval=2)
    trainer.fit(4)
    assert (tmp_path / "rl_i2it_best.pt").is_file() and (tmp_path / "rl_i2it_final.pt").is_file()
    assert 0.0 < trainer.state.metrics["val_dice"] <= 1.0
    assert any((tmp_path / "tensorboard").iterdir())
    logs = trainer.state.output
    assert "losses/qf1_loss" in logs and "charts/episodic_return" in logs
    with pytest.raises(ValueError, match="val_pairs"):
        RLI2ITTrainer(trainer.learner, _pairs(2, 3), None, tmp_path, val_interval=1)


@pytest.mark.parametrize(("dims", "size", "batch"), [(2, (32, 32), 1), (2, (32, 32), 2), (3, (16, 16, 16), 2)])
def test_register_shapes_and_trajectories(dims, size, batch):
    cfg = smoke_config(dims)
    learner = RLI2ITLearner(cfg, size, "cpu")
    fixed, moving = torch.rand(batch, 1, *size), torch.rand(batch, 1, *size)
    labels = (fixed > 0.5).long(), (moving > 0.5).long()
    if dims == 3:  # 3D smoke: 2 episodes with updates exercise Conv3d, warp and composition paths
        for _ in range(2):
            logs = learner.run_episode(fixed, moving)
        assert all(torch.isfinite(v).all() for v in logs.values())
    res = register(learner.agent, fixed, moving, steps=3, fixed_label=labels[0], moving_label=labels[1])
    assert res.ddf.shape == (batch, dims, *size) and res.warped.shape == (batch, 1, *size)
    assert res.dice.shape == res.ssim.shape == (batch, 4)
    assert float(res.ddf.abs().max()) <= 3 * cfg.test_clamp + 1e-4  # D9 test clamp per step
    assert res.warped_label.dtype == torch.long


def test_voxelmorph_baseline_learns_with_the_same_loss():
    pairs = synthetic_pairs(32, seed=5)
    torch.manual_seed(0)
    vm = VoxelMorphBaseline(2)
    cfg = smoke_config(ncc_windows=(9,))
    curve = train_voxelmorph(vm, pairs.fixed, pairs.moving, cfg, iterations=30, batch_size=4, lr=3e-3)
    assert sum(curve[-10:]) / 10 < sum(curve[:10]) / 10
    res = register_voxelmorph(vm, pairs.fixed, pairs.moving, pairs.fixed_label, pairs.moving_label, (1, 2))
    ident = register_identity(pairs.fixed, pairs.moving, pairs.fixed_label, pairs.moving_label, (1, 2))
    assert res.dice.shape == (32, 2)
    torch.testing.assert_close(res.dice[:, 0], ident.dice[:, 1])
