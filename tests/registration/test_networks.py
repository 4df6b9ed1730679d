"""Networks: exact parameter counts of the ``spac`` preset, budgets, shape tables, plan head properties."""

from __future__ import annotations

import math

import pytest
import torch

from medi2i.registration.config import RLI2ITConfig, smoke_config
from medi2i.registration.networks import (
    Actor,
    Critic,
    Planner,
    architecture,
    count_parameters,
    gaussian_log_prob,
)
from medi2i.registration.sac import RLI2ITAgent


def _parts(spatial_dims: int, size: tuple[int, ...], preset: str):
    arch = architecture(RLI2ITConfig(spatial_dims=spatial_dims, network=preset))
    planner = Planner(spatial_dims, size, arch.channels, arch.plan_dim)
    actor = Actor(spatial_dims, planner.bottleneck, arch.channels, arch.decoder_channels, arch.plan_dim)
    critic = Critic(spatial_dims, size, arch.channels, arch.plan_dim)
    return planner, actor, critic


def test_spac_preset_parameter_counts_at_128_cubed():
    # digest section 8.4: bias-free convs, Linear with bias
    planner, actor, critic = _parts(3, (128, 128, 128), "spac")
    assert count_parameters(planner) == 1_301_248
    assert count_parameters(actor) == 1_051_920
    assert count_parameters(critic) == 755_841


def test_spac_2d_and_smoke_counts():
    planner, actor, _ = _parts(2, (128, 128), "spac")
    assert 0.69e6 < count_parameters(planner) + count_parameters(actor) < 0.71e6  # digest: ~0.70 M
    agent = RLI2ITAgent(smoke_config(), (32, 32))  # digest 8.1: 19.8 K / 16.3 K / 10.5 K
    assert count_parameters(agent.planner) == 19_776
    assert count_parameters(agent.actor) == 16_272
    assert count_parameters(agent.critics[0]) == 10_529


@pytest.mark.parametrize(("dims", "size", "paper"), [(2, (128, 128), 107_000), (3, (128, 128, 128), 458_000)])
def test_vm_budget_matches_paper_size(dims, size, paper):
    planner, actor, _ = _parts(dims, size, "vm_budget")
    total = count_parameters(planner) + count_parameters(actor)
    assert abs(total - paper) / paper < 0.05


@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize(("dims", "size"), [(2, (32, 32)), (2, (32, 64)), (3, (16, 16, 16))])
def test_shapes(dims, size, batch):
    cfg = smoke_config(dims)
    agent = RLI2ITAgent(cfg, size)
    state = torch.rand(batch, 2, *size)
    out = agent.policy(state)
    assert out.plan.shape == out.mean.shape == out.logvar.shape == (batch, agent.arch.plan_dim)
    assert agent.decode(out.plan, out.skips).shape == (batch, dims, *size)
    for q in agent.q_values(state, out.plan) + agent.q_values(state, out.plan, target=True):
        assert q.shape == (batch,)


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="multiple of 2"):
        Planner(2, (30, 32), (8, 16, 16), 16)
    planner = Planner(2, (32, 32), (8, 16, 16), 16)
    with pytest.raises(ValueError, match="expected state"):
        planner(torch.rand(1, 1, 32, 32))
    with pytest.raises(ValueError, match="decoder_channels"):
        Actor(2, (4, 4), (8, 16, 16), (16, 8), 16)


def test_log_prob_is_sum_of_normals_and_logvar_is_bounded():
    planner = Planner(2, (32, 32), (8, 16, 16), 16, logvar_min=-10.0, logvar_max=2.0)
    with torch.no_grad():  # push the raw head far out so the tanh bound is exercised on both sides
        planner.head[0].weight.mul_(1e4)
    with torch.no_grad():
        mean, logvar, _ = planner(torch.rand(3, 2, 32, 32))
    assert float(logvar.min()) >= -10.0 and float(logvar.max()) <= 2.0
    p = torch.randn(3, 16)
    ref = torch.distributions.Normal(mean, torch.exp(0.5 * logvar)).log_prob(p).sum(-1)
    torch.testing.assert_close(gaussian_log_prob(p, mean, logvar), ref, rtol=1e-4, atol=1e-3)
    assert math.isclose(
        float(gaussian_log_prob(torch.zeros(1, 1), torch.zeros(1, 1), torch.zeros(1, 1))),
        -0.5 * math.log(2 * math.pi),
        rel_tol=1e-6,
    )


def test_deterministic_policy_returns_the_mean():
    agent = RLI2ITAgent(smoke_config(), (32, 32))
    state = torch.rand(2, 2, 32, 32)
    a1, p1 = agent.act(state, deterministic=True, clamp=2.0)
    a2, p2 = agent.act(state, deterministic=True, clamp=2.0)
    assert torch.equal(a1, a2) and torch.equal(p1, agent.policy(state, deterministic=True).mean)
    _, p3 = agent.act(state, deterministic=False, clamp=2.0)
    assert not torch.equal(p1, p3)


def test_illegal_configs_raise():
    for bad in (
        dict(spatial_dims=4),
        dict(network="unet"),
        dict(composition="backwards"),
        dict(reward_labels="otsu"),
        dict(gamma=1.5),
        dict(tau=0.0),
        dict(update_every=8, planner_every=12),
        dict(batch_size=1000, buffer_capacity=10),
        dict(ncc_windows=(8,)),
        dict(ncc_windows=(9, 7), ncc_weights=(1.0,)),
        dict(logvar_min=3.0),
        dict(buffer_dtype="int8"),
        dict(precision="fp8"),
    ):
        with pytest.raises(ValueError):
            RLI2ITConfig(**bad)
    with pytest.raises(ValueError, match="image_size"):
        RLI2ITAgent(smoke_config(), (32, 32, 32))


def _plan_gradient(critic: Critic, state: torch.Tensor, plan: torch.Tensor) -> torch.Tensor:
    plan = plan.clone().requires_grad_(True)
    critic(state, plan).sum().backward()
    return plan.grad


def test_code_critic_plan_gradient_ignores_the_state():
    # Q = v . LeakyReLU([f(s), p]) + b: dQ/dp depends on the sign of p only, never on s
    torch.manual_seed(0)
    critic = Critic(2, (32, 32), channels=(8, 16, 16), plan_dim=16)
    plan = torch.randn(1, 16).expand(3, 16)
    grads = _plan_gradient(critic, torch.rand(3, 2, 32, 32), plan)
    torch.testing.assert_close(grads[0], grads[1])
    torch.testing.assert_close(grads[0], grads[2])


def test_hidden_critic_plan_gradient_depends_on_the_state():
    torch.manual_seed(0)
    critic = Critic(2, (32, 32), channels=(8, 16, 16), plan_dim=16, hidden=(32, 32))
    assert [m.out_features for m in critic.head if isinstance(m, torch.nn.Linear)] == [32, 32, 1]
    plan = torch.randn(1, 16).expand(3, 16)
    x = 100 * torch.randn(1, 2, 32, 32)  # bias-free encoder: f(-x) flips the hidden activation pattern
    grads = _plan_gradient(critic, torch.cat([x, -x, torch.zeros_like(x)]), plan)
    assert (grads[0] - grads[1]).abs().max() > 0.1 * grads.abs().max()
    agent = RLI2ITAgent(smoke_config(critic_hidden=(32,)), (32, 32))
    assert count_parameters(agent.critics[0]) == 10_529 - 33 + (32 * 32 + 32) + 33


def test_critic_hidden_is_validated():
    with pytest.raises(ValueError, match="critic_hidden"):
        RLI2ITConfig(critic_hidden=(0,))
