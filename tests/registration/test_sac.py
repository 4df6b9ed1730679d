"""SAC pieces: gradient isolation per optimiser, targets, alpha direction, bootstrap mask, replay buffer."""

from __future__ import annotations

import pytest
import torch

from medi2i.registration.config import smoke_config
from medi2i.registration.replay import ReplayBuffer
from medi2i.registration.sac import (
    AuxLoss,
    RLI2ITAgent,
    aux_step,
    critic_loss,
    critic_step,
    make_optimizers,
    offset_l2_smoothness,
    planner_alpha_step,
    update,
)


def _batch(n: int = 4, size: int = 32, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "state": torch.rand(n, 2, size, size, generator=g),
        "plan": torch.randn(n, 16, generator=g),
        "reward": torch.randn(n, generator=g),
        "next_state": torch.rand(n, 2, size, size, generator=g),
        "done": torch.zeros(n, dtype=torch.bool),
        "weight": torch.ones(n),
    }


def _snapshot(agent: RLI2ITAgent) -> dict[str, dict[str, torch.Tensor]]:
    parts = {"planner": agent.planner, "actor": agent.actor, "critics": agent.critics, "targets": agent.targets}
    snap = {k: {n: p.detach().clone() for n, p in m.named_parameters()} for k, m in parts.items()}
    snap["alpha"] = {"log_alpha": agent.log_alpha.detach().clone()}
    return snap


def _changed(before, agent: RLI2ITAgent) -> set[str]:
    after = _snapshot(agent)
    return {part for part in before if any(not torch.equal(before[part][n], after[part][n]) for n in before[part])}


@pytest.fixture
def setup():
    cfg = smoke_config()
    agent = RLI2ITAgent(cfg, (32, 32))
    return cfg, agent, make_optimizers(agent, cfg), AuxLoss(cfg)


def test_critic_step_changes_only_critics(setup):
    _, agent, opts, _ = setup
    before = _snapshot(agent)
    critic_step(agent, opts, _batch())
    assert _changed(before, agent) == {"critics"}


def test_planner_step_changes_planner_and_alpha_and_q_gradient_reaches_planner(setup):
    _, agent, opts, _ = setup
    before = _snapshot(agent)
    planner_alpha_step(agent, opts, _batch())
    assert _changed(before, agent) == {"planner", "alpha"}
    assert all(p.grad is None for p in agent.critics.parameters())
    # reparameterisation: -Q alone (no entropy, no KL) has a gradient w.r.t. the planner
    out = agent.policy(_batch()["state"])
    (-agent.q_values(_batch()["state"], out.plan)[0].mean()).backward()
    assert sum(float(p.grad.abs().sum()) for p in agent.planner.parameters() if p.grad is not None) > 0


@pytest.mark.parametrize("updates_planner", [True, False])
def test_aux_step_updates_actor_and_planner_only_if_flagged(updates_planner):
    cfg = smoke_config(aux_updates_planner=updates_planner)
    agent = RLI2ITAgent(cfg, (32, 32))
    opts = make_optimizers(agent, cfg)
    before = _snapshot(agent)
    aux_step(agent, opts, AuxLoss(cfg), _batch())
    assert _changed(before, agent) == ({"actor", "planner"} if updates_planner else {"actor"})


def test_targets_move_only_by_polyak_average(setup):
    cfg, agent, opts, aux = setup
    target0 = [p.detach().clone() for p in agent.targets.parameters()]
    update(agent, opts, aux, _batch(), update_planner=True)
    for t0, t, o in zip(target0, agent.targets.parameters(), agent.critics.parameters(), strict=True):
        torch.testing.assert_close(t, (1 - cfg.tau) * t0 + cfg.tau * o.detach())


@pytest.mark.parametrize(("log_prob", "direction"), [(10.0, 1.0), (-10.0, -1.0)])
def test_alpha_update_direction(log_prob, direction):
    # log kappa + H_target > 0 (entropy below target) -> log alpha must increase, and vice versa
    cfg = smoke_config()
    agent = RLI2ITAgent(cfg, (32, 32))
    opts = make_optimizers(agent, cfg)
    from medi2i.registration.sac import alpha_loss

    before = float(agent.log_alpha.detach())
    loss = alpha_loss(agent.log_alpha, torch.tensor([log_prob]), agent.target_entropy)
    opts["alpha"].zero_grad()
    loss.backward()
    opts["alpha"].step()
    assert (float(agent.log_alpha.detach()) - before) * direction > 0


def test_done_masks_the_bootstrap(setup):
    _, agent, _, _ = setup
    batch = _batch()
    batch["done"] = torch.ones(4, dtype=torch.bool)
    loss, per, _ = critic_loss(agent, batch)
    with torch.no_grad():
        q = agent.q_values(batch["state"], batch["plan"])
    expected = [((qi - batch["reward"]) ** 2).mean() for qi in q]  # y = r exactly
    torch.testing.assert_close(torch.stack(per).detach(), torch.stack(expected))


def test_update_returns_stable_finite_keys(setup):
    _, agent, opts, aux = setup
    logs = update(agent, opts, aux, _batch(), update_planner=True)
    for key in (
        "losses/qf1_loss",
        "losses/qf2_loss",
        "losses/planner_loss",
        "losses/alpha_loss",
        "losses/aux_loss",
        "charts/alpha",
    ):
        assert key in logs and torch.isfinite(logs[key]) and not logs[key].requires_grad


def test_offset_smoothness_formula():
    u = torch.randn(2, 2, 6, 5)
    expected = ((torch.diff(u, dim=2).abs() - 0.01) ** 2).mean() / 2 + (
        (torch.diff(u, dim=3).abs() - 0.01) ** 2
    ).mean() / 2
    torch.testing.assert_close(offset_l2_smoothness(u, 0.01), expected)


def test_replay_fifo_filter_and_sampling_without_replacement():
    buf = ReplayBuffer(capacity=4, seed=0)
    for i in range(3):  # push pairs where only the first passes the filter
        buf.push({"x": torch.tensor([[float(i)], [100.0 + i]])}, keep=torch.tensor([True, False]))
    assert len(buf) == 3 and 100.0 not in buf.storage["x"][:4].flatten().tolist()
    buf.push({"x": torch.tensor([[3.0], [4.0]])}, keep=torch.tensor([True, True]))  # evicts 0
    assert sorted(buf.storage["x"][:4, 0].tolist()) == [1.0, 2.0, 3.0, 4.0]
    sample = buf.sample(4)
    assert sorted(sample["x"][:, 0].tolist()) == [1.0, 2.0, 3.0, 4.0] and sample["weight"].sum() == 4
    small = ReplayBuffer(capacity=8)
    small.push({"x": torch.ones(2, 1)}, keep=torch.tensor([True, True]))
    assert small.sample(4)["weight"].tolist().count(1.0) == 2  # padding picks carry weight 0


def test_replay_state_dict_round_trip_and_fp16_storage():
    buf = ReplayBuffer(capacity=5, storage_dtype="float16", seed=3)
    buf.push({"img": torch.rand(3, 2, 4, 4), "r": torch.rand(3)}, keep=torch.ones(3, dtype=torch.bool))
    assert buf.storage["img"].dtype == torch.float16 and buf.storage["r"].dtype == torch.float32
    clone = ReplayBuffer(capacity=5, storage_dtype="float16", seed=99)
    clone.load_state_dict(buf.state_dict())
    a, b = buf.sample(2), clone.sample(2)
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="capacity"):
        ReplayBuffer(capacity=6).load_state_dict(buf.state_dict())


@pytest.mark.parametrize(
    "changes",
    [
        {"aux_target": "accumulated"},
        {"twin_critics": False},
        {"smoothness": "diffusion"},
        {"smoothness": "l2", "auto_alpha": False},
        {"composition": "paper", "reward": "ssim"},
    ],
)
def test_option_paths_run_an_update(changes):
    from medi2i.registration.learner import RLI2ITLearner
    from medi2i.registration.synthetic import synthetic_pairs

    cfg = smoke_config(warmup_episodes=1, batch_size=4, train_steps=4, **changes)
    learner = RLI2ITLearner(cfg, (32, 32), "cpu")
    pairs = synthetic_pairs(2, seed=4)
    for _ in range(2):
        logs = learner.run_episode(pairs.fixed, pairs.moving)
    assert "losses/qf1_loss" in logs and all(torch.isfinite(v) for v in logs.values())
    assert ("losses/qf2_loss" in logs) == cfg.twin_critics
    assert ("losses/alpha_loss" in logs) == cfg.auto_alpha
    if cfg.aux_target == "accumulated":
        assert {"moving", "field"} <= set(learner.buffer.storage)
