"""Pins the plan-inflation fix of the 2D demo overlay (``bundles/rl_i2it/demo_cpu.json``, helper H-RL).

The critic is ``Linear(LeakyReLU([f(s), p]))``: piecewise linear (and convex) in the plan, so ``-Q`` has no
interior optimum in ``p`` and the planner's RL loss pushes the plan mean along the critic's weights (and the
log-variance to its upper bound). Only the plan KL (D18) holds it. With the code's ``kl_weight = 0.01`` the
demo run reached mean ``|mu| ~ 10.5`` (std across pairs 0.58), KL ~ 270 and sigma = e (the bound) within 100
episodes; that nearly constant plan dominated the actor, whose per-step field became state independent
(cosine 1.0 between pairs, the same field for ``(F, F)`` as for ``(F, M)``), so every test step added the
same ~0.4 px shift and Dice fell below the identity. The overlay raises ``kl_weight`` to 1.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from medi2i.registration.config import RLI2ITConfig
from medi2i.registration.sac import RLI2ITAgent, make_optimizers, planner_alpha_step

OVERLAY = Path(__file__).resolve().parents[2] / "bundles" / "rl_i2it" / "demo_cpu.json"


def _overlay_config(**changes) -> RLI2ITConfig:
    config = json.loads(OVERLAY.read_text())["config"]
    config = {k: v for k, v in config.items() if not k.startswith("_")}
    config.update(spatial_dims=2, seed=0, **changes)
    return RLI2ITConfig(**config)


def _plan_after_planner_steps(cfg: RLI2ITConfig, steps: int = 150) -> float:
    """Mean |mu| after ``steps`` planner+alpha updates against the (frozen, random) initial critics."""
    torch.manual_seed(0)
    agent = RLI2ITAgent(cfg, (32, 32))
    optimizers = make_optimizers(agent, cfg)
    g = torch.Generator().manual_seed(0)
    batch = {"state": torch.rand(16, 2, 32, 32, generator=g), "weight": torch.ones(16)}
    for _ in range(steps):
        planner_alpha_step(agent, optimizers, batch)
    with torch.no_grad():
        return float(agent.policy(batch["state"], deterministic=True).mean.abs().mean())


def test_demo_overlay_keeps_the_plan_bounded():
    # measured: overlay (kl_weight 1) 0.42; the code's 0.01 with the same overlay 20.1
    assert _plan_after_planner_steps(_overlay_config()) < 2.0


def test_code_kl_weight_lets_the_plan_run_away():
    # the failure mode the overlay avoids (guards that the check above can fail)
    assert _plan_after_planner_steps(_overlay_config(kl_weight=0.01)) > 5.0
