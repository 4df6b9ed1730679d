"""Soft actor-critic on the plan, with the auxiliary registration loss (digest section 3).

Notation map (paper -> code): kappa_psi -> ``agent.planner``, pi_phi -> ``agent.actor``,
Q_theta_i -> ``agent.critics[i]``, Q_theta_bar_i -> ``agent.targets[i]``, alpha = ``exp(agent.log_alpha)``,
J_Aux -> :func:`aux_loss`. Each loss is a short function next to its equation; :func:`update` runs one
update call in the code's order (critics, then planner and alpha every ``planner_every`` steps, then the
auxiliary step, then the Polyak targets) and returns detached scalars keyed by :class:`Keys`, which stay on
the device (no host sync) until a logger reads them.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

import torch
import torch.nn.functional as F
from monai.losses import DiffusionLoss, LocalNormalizedCrossCorrelationLoss
from monai.networks.layers import GaussianFilter
from torch import nn

from medi2i.registration.config import AuxTarget, Precision, RLI2ITConfig, Smoothness
from medi2i.registration.networks import (
    Actor,
    Critic,
    Planner,
    architecture,
    gaussian_log_prob,
    kl_to_standard_normal,
)
from medi2i.spatial import compose, warp


class Keys(StrEnum):
    """Stable names of the logged scalars (TensorBoard tags)."""

    QF1 = "losses/qf1_loss"
    QF2 = "losses/qf2_loss"
    QF = "losses/qf_loss"
    PLANNER = "losses/planner_loss"
    ALPHA_LOSS = "losses/alpha_loss"
    AUX = "losses/aux_loss"
    NCC = "losses/ncc"
    SMOOTH = "losses/smooth"
    KL = "losses/kl"
    DRIFT = "losses/drift"
    IDENTITY = "losses/identity"
    ALPHA = "charts/alpha"
    ENTROPY = "charts/entropy"
    Q_MEAN = "charts/q_mean"
    RETURN = "charts/episodic_return"
    DICE = "charts/dice"
    DICE_GAIN = "charts/dice_gain"
    BUFFER = "charts/buffer_size"


@dataclass
class Plan:
    """Output of the planner: a sample (or the mean), the Gaussian's parameters and the skips."""

    plan: torch.Tensor
    mean: torch.Tensor
    logvar: torch.Tensor
    skips: list[torch.Tensor]

    def log_prob(self) -> torch.Tensor:
        return gaussian_log_prob(self.plan, self.mean, self.logvar)


class RLI2ITAgent(nn.Module):
    """Planner, actor, (twin) critics with Polyak targets and the learnable ``log_alpha``.

    Args:
        config: hyperparameters (network preset, plan bounds, alpha).
        image_size: spatial shape of the state; each axis a multiple of ``2**levels``.

    Example:
        >>> from medi2i.registration.config import smoke_config
        >>> agent = RLI2ITAgent(smoke_config(), (32, 32))
        >>> action, plan = agent.act(torch.rand(2, 2, 32, 32), deterministic=True, clamp=2.0)
        >>> tuple(action.shape), float(action.abs().max()) <= 2.0
        ((2, 2, 32, 32), True)
    """

    def __init__(self, config: RLI2ITConfig, image_size: Sequence[int]) -> None:
        super().__init__()
        if len(image_size) != config.spatial_dims:
            raise ValueError(f"image_size must have {config.spatial_dims} entries, got {tuple(image_size)}")
        self.config = config
        arch = architecture(config)
        self.arch = arch
        nd = config.spatial_dims
        self.image_size = tuple(int(s) for s in image_size)
        self.planner = Planner(nd, image_size, arch.channels, arch.plan_dim, config.logvar_min, config.logvar_max)
        self.actor = Actor(nd, self.planner.bottleneck, arch.channels, arch.decoder_channels, arch.plan_dim)
        n_critics = 2 if config.twin_critics else 1
        self.critics = nn.ModuleList(
            Critic(nd, image_size, arch.channels, arch.plan_dim, config.critic_hidden) for _ in range(n_critics)
        )
        self.targets = copy.deepcopy(self.critics)  # targets start as hard copies
        self.targets.requires_grad_(False)
        self.log_alpha = nn.Parameter(torch.tensor(float(config.log_alpha_init)), requires_grad=config.auto_alpha)
        self.target_entropy = (
            float(config.target_entropy) if config.target_entropy is not None else -arch.plan_dim / 4.0
        )

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast of network forwards on CUDA when ``precision="bf16"``; a no-op otherwise."""
        device = self.log_alpha.device
        if self.config.precision == Precision.BF16 and device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def policy(self, state: torch.Tensor, deterministic: bool = False) -> Plan:
        """kappa_psi(p | s): the mean plan or a reparameterised sample ``mu + sigma * eps`` (paper Eq. 3)."""
        with self.autocast():
            mean, logvar, skips = self.planner(state)
        mean, logvar = mean.float(), logvar.float()
        plan = mean if deterministic else mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)
        return Plan(plan, mean, logvar, skips)

    def decode(self, plan: torch.Tensor, skips: Sequence[torch.Tensor]) -> torch.Tensor:
        """pi_phi(p, h_psi(s)): the unclamped per-step field ``(B, ndim, *spatial)``, float32."""
        with self.autocast():
            return self.actor(plan, skips).float()

    @torch.no_grad()
    def act(self, state: torch.Tensor, deterministic: bool, clamp: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Executed action (clamped to ``+-clamp`` voxels, D9) and the plan that produced it."""
        out = self.policy(state, deterministic)
        return self.decode(out.plan, out.skips).clamp(-clamp, clamp), out.plan

    def q_values(self, state: torch.Tensor, plan: torch.Tensor, target: bool = False) -> list[torch.Tensor]:
        nets = self.targets if target else self.critics
        with self.autocast():
            return [q(state, plan).float() for q in nets]

    def alpha(self) -> torch.Tensor:
        return self.log_alpha.exp()


def make_optimizers(agent: RLI2ITAgent, config: RLI2ITConfig) -> dict[str, torch.optim.Optimizer]:
    """Adam per part with betas (0.5, 0.9) and the code's learning rates (D14)."""
    betas = tuple(config.betas)
    optimizers = {
        "planner": torch.optim.Adam(agent.planner.parameters(), lr=config.lr_planner, betas=betas),
        "actor": torch.optim.Adam(agent.actor.parameters(), lr=config.lr_actor, betas=betas),
        "critic": torch.optim.Adam(agent.critics.parameters(), lr=config.lr_critic, betas=betas),
    }
    if config.auto_alpha:
        optimizers["alpha"] = torch.optim.Adam([agent.log_alpha], lr=config.lr_alpha, betas=betas)
    return optimizers


def _wmean(values: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Mean over the batch with the buffer's 0/1 padding weights."""
    return (values * weight).sum() / weight.sum().clamp_min(1.0)


@contextlib.contextmanager
def _frozen(module: nn.Module) -> Iterator[None]:
    """Keep a module out of the autograd graph (the planner's loss must not touch the critics)."""
    flags = [p.requires_grad for p in module.parameters()]
    module.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(module.parameters(), flags, strict=True):
            p.requires_grad_(flag)


# ---- losses ---------------------------------------------------------------------------------------------


def critic_loss(
    agent: RLI2ITAgent, batch: Mapping[str, torch.Tensor]
) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
    """Soft Bellman residual, twin Q (digest section 3.1; D4).

    ``y = r + gamma (1 - d) [min_i Q_bar_i(s', p') - alpha log kappa(p'|s')]``, ``p' ~ kappa(.|s')``;
    ``L_Q = sum_i mean (Q_i(s, p) - y)^2``. Returns ``(L_Q, [per-critic losses], mean Q_1)`` (the last detached).
    The entropy bonus ``-alpha log kappa`` enters ``y`` at every step: with a d-dimensional plan it is about
    ``alpha * d * 1.4`` nats (33 for d = 24, sigma ~ 1), which at alpha ~ 0.3 outweighs a reward of a few units
    per step, so ``charts/q_mean`` then grows with the entropy, not the Dice (see ``log_alpha_init``).
    """
    cfg, weight = agent.config, batch["weight"]
    with torch.no_grad():
        nxt = agent.policy(batch["next_state"])
        q_next = torch.stack(agent.q_values(batch["next_state"], nxt.plan, target=True)).min(dim=0).values
        soft_v = q_next - agent.alpha() * nxt.log_prob()
        y = batch["reward"] + cfg.gamma * (1.0 - batch["done"].float()) * soft_v
    qs = agent.q_values(batch["state"], batch["plan"])
    per = [_wmean((q - y) ** 2, weight) for q in qs]
    return torch.stack(per).sum(), per, _wmean(qs[0], weight).detach()


def planner_loss(agent: RLI2ITAgent, out: Plan, state: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Policy improvement (paper Eq. 3, reparameterised, D3) + the code's plan KL (D18).

    ``L_kappa = mean[alpha log kappa(p~|s) - min_i Q_i(s, p~)] + beta_KL KL(N(mu, sigma^2) || N(0, I))``.
    """
    q = torch.stack(agent.q_values(state, out.plan)).min(dim=0).values
    rl = _wmean(agent.alpha().detach() * out.log_prob() - q, weight)
    return agent.config.rl_weight * rl + agent.config.kl_weight * kl_to_standard_normal(out.mean, out.logvar)


def alpha_loss(log_alpha: torch.Tensor, log_prob: torch.Tensor, target_entropy: float) -> torch.Tensor:
    """Temperature (SAC): ``L_alpha = -mean[log alpha (log kappa(p~|s) + H_target)]`` (bracket detached).

    Example:
        >>> la = torch.zeros((), requires_grad=True)
        >>> alpha_loss(la, torch.tensor([-2.0]), target_entropy=-4.0).backward()
        >>> float(la.grad)  # entropy 2 > target -4: alpha should fall, so the gradient is positive
        6.0
    """
    return -(log_alpha * (log_prob.detach() + target_entropy)).mean()


class SimilarityLoss(nn.Module):
    """Multi-scale local NCC, ``sum_s w_s (-mean cc_s^2)`` (D8), MONAI ``LocalNormalizedCrossCorrelationLoss``.

    MONAI returns ``-mean(cc^2)`` with a rectangular window, the VoxelMorph NCC the code uses up to the
    constant 1 and the epsilons; between scales both images are average-pooled (k3, s2, p1) as in the code.
    """

    def __init__(self, spatial_dims: int, windows: Sequence[int], weights: Sequence[float]) -> None:
        super().__init__()
        self.spatial_dims = spatial_dims
        self.weights = tuple(float(w) for w in weights)
        self.terms = nn.ModuleList(
            LocalNormalizedCrossCorrelationLoss(spatial_dims, kernel_size=int(w), kernel_type="rectangular")
            for w in windows
        )
        self.pool = F.avg_pool2d if spatial_dims == 2 else F.avg_pool3d

    def forward(self, fixed: torch.Tensor, warped: torch.Tensor) -> torch.Tensor:
        total = fixed.new_zeros(())
        for i, (term, weight) in enumerate(zip(self.terms, self.weights, strict=True)):
            if i:
                fixed, warped = self.pool(fixed, 3, 2, 1), self.pool(warped, 3, 2, 1)
            total = total + weight * term(warped, fixed)
        return total


def offset_l2_smoothness(ddf: torch.Tensor, offset: float = 0.01) -> torch.Tensor:
    """The code's smoothness (D7): mean over axes of mean ``(|forward difference| - offset)^2``.

    Not MONAI: ``DiffusionLoss`` uses central differences without the offset and ``BendingEnergyLoss`` is
    second order; ``offset=0`` gives the VoxelMorph "l2" forward-difference regulariser.

    Example:
        >>> u = torch.zeros(1, 2, 4, 4); u[:, :, 2:] = 1.0  # one unit step along axis 0
        >>> round(float(offset_l2_smoothness(u, 0.0)), 4)  # axis 0: 8 of 24 differences are 1; axis 1: 0
        0.1667
    """
    terms = []
    for axis in range(2, ddf.ndim):
        diff = torch.diff(ddf, dim=axis).abs()
        terms.append(((diff - offset) ** 2).mean())
    return torch.stack(terms).mean()


def drift_penalty(ddf: torch.Tensor) -> torch.Tensor:
    """``mean_b |mean_x u_b(x)|^2``: squared length of each field's spatial mean (voxels^2), batch mean.

    Example:
        >>> u = torch.zeros(2, 2, 4, 4); u[0, 0] = 0.5  # item 0: a constant half-voxel shift; item 1: none
        >>> float(drift_penalty(u))
        0.125
    """
    return ddf.flatten(2).mean(dim=2).pow(2).sum(dim=1).mean()


class AuxLoss(nn.Module):
    """J_Aux (paper Eq. 7 / Eq. 13 in step form): ``sim(F, M o u) + lambda R(u) + beta_KL KL``.

    Extensions (off by default): ``similarity_sigma`` smooths both images with a MONAI ``GaussianFilter``
    before the NCC (:meth:`presmooth`), ``drift_weight`` adds :func:`drift_penalty` of the per-step field
    (``identity_weight``, the fixed-point term, is added in :func:`aux_loss`, which owns the agent).
    """

    def __init__(self, config: RLI2ITConfig) -> None:
        super().__init__()
        self.config = config
        self.similarity = SimilarityLoss(config.spatial_dims, config.resolved_ncc_windows, config.resolved_ncc_weights)
        self.diffusion = DiffusionLoss() if config.smoothness == Smoothness.DIFFUSION else None
        self.gaussian = (
            GaussianFilter(config.spatial_dims, float(config.similarity_sigma), truncated=3.0)
            if config.similarity_sigma > 0
            else None
        )

    def presmooth(self, image: torch.Tensor) -> torch.Tensor:
        """Gaussian-smoothed copy ``(B, 1, *spatial)`` (``similarity_sigma``); the image itself when off."""
        return image if self.gaussian is None else self.gaussian(image)

    def smooth(self, ddf: torch.Tensor) -> torch.Tensor:
        if self.diffusion is not None:
            return self.diffusion(ddf)
        offset = self.config.smooth_offset if self.config.smoothness == Smoothness.OFFSET_L2 else 0.0
        return offset_l2_smoothness(ddf, offset)

    def forward(
        self,
        fixed: torch.Tensor,
        warped: torch.Tensor,
        ddf: torch.Tensor,
        mean: torch.Tensor,
        logvar: torch.Tensor,
        step: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Loss terms; ``fixed``/``warped`` are already pre-smoothed, ``step`` = the per-step field (drift)."""
        ncc = self.similarity(fixed, warped)
        smooth = self.smooth(ddf)
        kl = kl_to_standard_normal(mean, logvar)
        total = ncc + self.config.smooth_weight * smooth + self.config.kl_weight * kl
        logs = {Keys.AUX: total, Keys.NCC: ncc, Keys.SMOOTH: smooth, Keys.KL: kl}
        if self.config.drift_weight > 0:
            drift = drift_penalty(ddf if step is None else step)
            logs[Keys.AUX] = total + self.config.drift_weight * drift
            logs[Keys.DRIFT] = drift
        return logs


def aux_loss(agent: RLI2ITAgent, aux: AuxLoss, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Auxiliary registration loss on replayed states with a fresh reparameterised plan (section 3.1).

    ``step`` (D7, code): ``u = pi(p~, h(s))`` unclamped, loss on ``(F, M_t o u)`` and ``R(u)``.
    ``accumulated`` (paper): loss on ``(F, I_M o C(u, U_{t-1}))`` and ``R(C(u, U_{t-1}))``.
    With ``similarity_sigma`` both images are Gaussian-smoothed first (the moving one before the warp);
    ``identity_weight`` adds ``mean |pi(p~, h([F, F]))|^2`` (the field for an aligned state should be 0).
    """
    cfg, state = agent.config, batch["state"]
    out = agent.policy(state)
    u = agent.decode(out.plan, out.skips)
    fixed = aux.presmooth(state[:, :1])
    if cfg.aux_target == AuxTarget.ACCUMULATED:
        field = compose(u, batch["field"], padding_mode=cfg.field_padding)
        warped = warp(aux.presmooth(batch["moving"]), field, padding_mode=cfg.image_padding)
    else:
        field = u
        warped = warp(aux.presmooth(state[:, 1:]), u, padding_mode=cfg.image_padding)
    logs = aux(fixed, warped, field, out.mean, out.logvar, step=u)
    if aux.config.identity_weight > 0:  # fixed-point term: no motion for an aligned state [F, F]
        aligned = torch.cat([state[:, :1], state[:, :1]], dim=1)
        same = agent.policy(aligned)
        identity = agent.decode(same.plan, same.skips).pow(2).mean()
        logs[Keys.AUX] = logs[Keys.AUX] + aux.config.identity_weight * identity
        logs[Keys.IDENTITY] = identity
    return logs


# ---- optimiser steps ------------------------------------------------------------------------------------


def _step(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def critic_step(agent: RLI2ITAgent, optimizers: Mapping[str, torch.optim.Optimizer], batch) -> dict:
    """Update the online critics only."""
    loss, per, q_mean = critic_loss(agent, batch)
    _step(optimizers["critic"], loss)
    logs = {Keys.QF: loss.detach(), Keys.QF1: per[0].detach(), Keys.Q_MEAN: q_mean}
    if len(per) > 1:
        logs[Keys.QF2] = per[1].detach()
    return logs


def planner_alpha_step(agent: RLI2ITAgent, optimizers: Mapping[str, torch.optim.Optimizer], batch) -> dict:
    """Update the planner on L_kappa (critics frozen), then alpha on L_alpha with the same sample."""
    state, weight = batch["state"], batch["weight"]
    out = agent.policy(state)
    with _frozen(agent.critics):
        loss = planner_loss(agent, out, state, weight)
    optimizers["planner"].zero_grad(set_to_none=True)
    loss.backward()
    optimizers["planner"].step()
    log_prob = out.log_prob().detach()
    logs = {Keys.PLANNER: loss.detach(), Keys.ENTROPY: -_wmean(log_prob, weight)}
    if "alpha" in optimizers:
        a_loss = alpha_loss(agent.log_alpha, log_prob, agent.target_entropy)
        _step(optimizers["alpha"], a_loss)
        logs[Keys.ALPHA_LOSS] = a_loss.detach()
    return logs


def aux_step(agent: RLI2ITAgent, optimizers: Mapping[str, torch.optim.Optimizer], aux: AuxLoss, batch) -> dict:
    """Update the actor (and the planner when ``aux_updates_planner``, D2) on J_Aux."""
    logs = aux_loss(agent, aux, batch)
    optimizers["actor"].zero_grad(set_to_none=True)
    optimizers["planner"].zero_grad(set_to_none=True)
    (agent.config.aux_weight * logs[Keys.AUX]).backward()
    optimizers["actor"].step()
    if agent.config.aux_updates_planner:
        optimizers["planner"].step()
    # SPAC discards the planner's gradient from this loss; clear it so nothing downstream reuses it
    optimizers["planner"].zero_grad(set_to_none=True)
    return {k: v.detach() for k, v in logs.items()}


@torch.no_grad()
def soft_update(targets: nn.Module, online: nn.Module, tau: float) -> None:
    """Polyak averaging ``theta_bar <- tau theta + (1 - tau) theta_bar``."""
    for t, o in zip(targets.parameters(), online.parameters(), strict=True):
        t.lerp_(o, tau)


def update(
    agent: RLI2ITAgent,
    optimizers: Mapping[str, torch.optim.Optimizer],
    aux: AuxLoss,
    batch: Mapping[str, torch.Tensor],
    update_planner: bool,
) -> dict[str, torch.Tensor]:
    """One update call (section 3.4): critics, [planner + alpha], auxiliary, targets; detached scalars."""
    logs: dict[str, torch.Tensor] = {}
    logs.update(critic_step(agent, optimizers, batch))
    if update_planner:
        logs.update(planner_alpha_step(agent, optimizers, batch))
    if agent.config.aux_weight > 0:
        logs.update(aux_step(agent, optimizers, aux, batch))
    soft_update(agent.targets, agent.critics, agent.config.tau)
    logs[Keys.ALPHA] = agent.alpha().detach()
    return logs
