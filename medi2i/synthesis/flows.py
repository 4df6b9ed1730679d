"""Flow-matching baselines with one network for both directions: rectified flow, I-CFM, VP-CFM.

A *path* (``ProbabilityPath``) says where a training sample sits at time ``t`` between a pair
``(a, b)`` and which velocity the network must predict there; the *method* (``FlowMatching``) regresses the
network onto that velocity (MSE) at uniform random ``t`` and samples with explicit Euler at any number of
steps, forward for A -> B and backward in time for B -> A (the ODE is reversible, so one network serves both
directions; bidpm.md section 8).

Gaussian conditional paths (Tong et al., "Improving and generalizing flow-based generative models with
minibatch optimal transport", TMLR 2024, Eq. 14-16; Lipman et al., ICLR 2023, Eq. 15):
``x_t = mu_t + sigma_t eps``, ``eps ~ N(0, I)``, target ``u_t = mu_t' + sigma_t' / sigma_t (x_t - mu_t)``.

* rectified flow (Liu, Gong & Liu, ICLR 2023, Eq. 1): ``mu_t = (1 - t) a + t b``, ``sigma_t = 0``,
  target ``b - a``;
* I-CFM (Tong et al., Prop. 3.3): the same mean with a constant ``sigma > 0``, target ``b - a``;
* VP-CFM (Tong et al., Eq. 20; Albergo & Vanden-Eijnden 2023): ``mu_t = cos(pi t / 2) a + sin(pi t / 2) b``,
  constant ``sigma`` (default 0), target ``pi / 2 (cos(pi t / 2) b - sin(pi t / 2) a)``.

Only paired rows are real couplings. ``unpaired_rows="drop"`` (default) trains on the paired rows only;
``"couple"`` also uses the unpaired rows as if they were pairs (random coupling, what the paper's RF/I-CFM
baselines at 10 % pairing most likely did; bidpm.md section 10.1).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from enum import Enum
from typing import Any

import torch
from torch import nn

from medi2i.errors import Medi2iInputError
from medi2i.synthesis.base import Direction, SynthesisMethod, check_image_pair, check_paired_mask, graph_zero

__all__ = [
    "FlowMatching",
    "IndependentCFM",
    "LinearPath",
    "ProbabilityPath",
    "RectifiedFlow",
    "UnpairedRows",
    "VPCFM",
    "VPPath",
]


def _expand(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``(B,)`` -> ``(B, 1, ..., 1)`` broadcastable against ``like``."""
    return t.view(-1, *([1] * (like.ndim - 1))).to(like.dtype)


class ProbabilityPath(ABC):
    """A Gaussian conditional path between ``a`` (t = 0) and ``b`` (t = 1) with constant-or-not std.

    Subclasses override :meth:`mean` and :meth:`mean_derivative` (and, for a time-dependent std,
    :meth:`std` and :meth:`std_derivative`); :meth:`sample_xt` and :meth:`target_velocity` follow.

    Args:
        sigma: path standard deviation (>= 0).
    """

    def __init__(self, sigma: float = 0.0) -> None:
        if not (isinstance(sigma, int | float) and sigma >= 0 and math.isfinite(sigma)):
            raise ValueError(f"sigma must be a finite number >= 0, got {sigma!r}")
        self.sigma = float(sigma)

    def sample_time(self, batch: int, like: torch.Tensor) -> torch.Tensor:
        """Training times ``(B,)``, uniform on [0, 1)."""
        return torch.rand(batch, device=like.device, dtype=like.dtype)

    @abstractmethod
    def mean(self, a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``mu_t(a, b)``; ``t`` is ``(B,)``."""

    @abstractmethod
    def mean_derivative(self, a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``d mu_t / dt``."""

    def std(self, t: torch.Tensor) -> torch.Tensor:
        """``sigma_t`` ``(B,)``: constant ``sigma`` by default."""
        return torch.full_like(t, self.sigma)

    def std_derivative(self, t: torch.Tensor) -> torch.Tensor:
        """``d sigma_t / dt``: 0 for a constant std."""
        return torch.zeros_like(t)

    def sample_xt(self, a: torch.Tensor, b: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """``x_t = mu_t + sigma_t eps`` (Tong et al., Eq. 14)."""
        return self.mean(a, b, t) + _expand(self.std(t), a) * noise

    def target_velocity(self, a: torch.Tensor, b: torch.Tensor, t: torch.Tensor, xt: torch.Tensor) -> torch.Tensor:
        """``u_t(x_t | a, b) = mu_t' + sigma_t' / sigma_t (x_t - mu_t)`` (Tong et al., Eq. 15)."""
        velocity = self.mean_derivative(a, b, t)
        std, dstd = self.std(t), self.std_derivative(t)
        if bool((dstd != 0).any()):
            ratio = torch.where(std > 0, dstd / std.clamp_min(torch.finfo(std.dtype).tiny), torch.zeros_like(std))
            velocity = velocity + _expand(ratio, a) * (xt - self.mean(a, b, t))
        return velocity


class LinearPath(ProbabilityPath):
    """Straight line ``mu_t = (1 - t) a + t b``, ``mu_t' = b - a`` (RF with sigma = 0, I-CFM otherwise).

    Example:
        >>> path = LinearPath()
        >>> a, b, t = torch.zeros(1, 1, 2, 2), torch.ones(1, 1, 2, 2), torch.tensor([0.25])
        >>> xt = path.sample_xt(a, b, t, torch.randn(1, 1, 2, 2))
        >>> float(xt[0, 0, 0, 0]), float(path.target_velocity(a, b, t, xt).mean())
        (0.25, 1.0)
    """

    def mean(self, a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t = _expand(t, a)
        return (1.0 - t) * a + t * b

    def mean_derivative(self, a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return b - a


class VPPath(ProbabilityPath):
    """Variance-preserving interpolant ``mu_t = cos(pi t / 2) a + sin(pi t / 2) b`` (Tong et al., Eq. 20)."""

    def mean(self, a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t = _expand(t, a)
        return torch.cos(0.5 * math.pi * t) * a + torch.sin(0.5 * math.pi * t) * b

    def mean_derivative(self, a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t = _expand(t, a)
        return 0.5 * math.pi * (torch.cos(0.5 * math.pi * t) * b - torch.sin(0.5 * math.pi * t) * a)


class UnpairedRows(str, Enum):
    """What a flow baseline does with unpaired rows: ``drop`` them, or ``couple`` them at random."""

    DROP = "drop"
    COUPLE = "couple"


class FlowMatching(SynthesisMethod):
    """Conditional flow matching on a :class:`ProbabilityPath`; Euler sampling at any NFE, both directions.

    Args:
        network: velocity network ``network(x, timesteps)``.
        path: the probability path.
        num_steps: default number of Euler steps (NFE) of :meth:`sample`.
        unpaired_rows: ``"drop"`` or ``"couple"`` (:class:`UnpairedRows`).
        time_scale: network timestep = ``time_scale * t``.
        checkpoint_activations: recompute the network call in the backward pass.
    """

    def __init__(
        self,
        network: nn.Module,
        path: ProbabilityPath,
        *,
        num_steps: int = 2,
        unpaired_rows: UnpairedRows | str = UnpairedRows.DROP,
        time_scale: float = 1000.0,
        checkpoint_activations: bool = False,
    ) -> None:
        if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
            raise ValueError(f"num_steps must be an integer >= 1, got {num_steps!r}")
        try:
            rows = UnpairedRows(unpaired_rows)
        except ValueError:
            raise ValueError(
                f"unpaired_rows must be one of {[r.value for r in UnpairedRows]}, got {unpaired_rows!r}"
            ) from None
        if not isinstance(path, ProbabilityPath):
            raise ValueError(f"path must be a ProbabilityPath, got {type(path).__name__}")
        super().__init__(network, time_scale=time_scale, checkpoint_activations=checkpoint_activations)
        self.path = path
        self.num_steps = num_steps
        self.unpaired_rows = rows

    def training_loss(
        self, a: torch.Tensor, b: torch.Tensor, *, paired: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """MSE between ``u(x_t, t)`` and the path's target velocity, ``t ~ U[0, 1)`` (Tong et al., Eq. 16).

        Args:
            a: ``(B, C, H, W)`` modality A in [-1, 1].
            b: same shape, modality B.
            paired: ``(B,)`` bool pairing mask (``None`` = all paired); see ``unpaired_rows``.

        Returns:
            ``{"loss": L, "flow_matching": L detached}``.
        """
        check_image_pair(a, b)
        mask = check_paired_mask(paired, a.shape[0], a.device)
        if self.unpaired_rows is UnpairedRows.DROP and not bool(mask.all()):
            a, b = a[mask], b[mask]
        if a.shape[0] == 0:
            # no usable row: a zero that still touches every parameter (backward, DDP)
            loss = graph_zero(torch.stack([p.sum() for p in self.network.parameters()]))
            return {"loss": loss, "flow_matching": loss.detach()}
        t = self.path.sample_time(a.shape[0], a)
        noise = torch.randn_like(a)
        xt = self.path.sample_xt(a, b, t, noise)
        target = self.path.target_velocity(a, b, t, xt)
        loss = (self.velocity(xt, t) - target).pow(2).mean()
        return {"loss": loss, "flow_matching": loss.detach()}

    @torch.no_grad()
    def sample(self, x: torch.Tensor, direction: Direction | str, *, num_steps: int | None = None) -> torch.Tensor:
        """Explicit Euler over ``num_steps`` uniform steps (default: the configured NFE), forward or backward.

        Args:
            x: ``(B, C, H, W)`` source images in [-1, 1] (A for ``"a2b"``, B for ``"b2a"``).
            direction: ``"a2b"`` or ``"b2a"``.
            num_steps: NFE (>= 1).

        Returns:
            ``(B, C, H, W)``.
        """
        direction = self._direction(x, direction)
        steps = self.num_steps if num_steps is None else num_steps
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise Medi2iInputError("the number of steps must be an integer >= 1", field="num_steps", found=steps)
        return self.integrate(x, direction, steps)

    def method_config(self) -> dict[str, Any]:
        return {"num_steps": self.num_steps, "unpaired_rows": self.unpaired_rows.value}


class RectifiedFlow(FlowMatching):
    """Rectified flow: straight path, no noise, target ``b - a`` (I-CFM with sigma = 0).

    Example:
        >>> from medi2i.synthesis.networks import VelocityUNet, TINY_UNET
        >>> rf = RectifiedFlow(VelocityUNet(**TINY_UNET), num_steps=4)
        >>> x = torch.rand(1, 1, 16, 16)
        >>> tuple(rf.sample(x, "b2a", num_steps=8).shape), float(rf.training_loss(x, x)["flow_matching"])
        ((1, 1, 16, 16), 0.0)
    """

    name = "rectified_flow"

    def __init__(
        self,
        network: nn.Module,
        *,
        num_steps: int = 2,
        unpaired_rows: UnpairedRows | str = UnpairedRows.DROP,
        time_scale: float = 1000.0,
        checkpoint_activations: bool = False,
    ) -> None:
        super().__init__(
            network,
            LinearPath(0.0),
            num_steps=num_steps,
            unpaired_rows=unpaired_rows,
            time_scale=time_scale,
            checkpoint_activations=checkpoint_activations,
        )


class IndependentCFM(FlowMatching):
    """I-CFM: straight path with constant noise ``sigma > 0``, target ``b - a`` (Tong et al., Prop. 3.3).

    Args:
        network: velocity network.
        sigma: path standard deviation (> 0; ``sigma = 0`` is :class:`RectifiedFlow`).
        num_steps: default NFE of :meth:`sample`.
        unpaired_rows: ``"drop"`` or ``"couple"``.
        time_scale: network timestep = ``time_scale * t``.
        checkpoint_activations: recompute the network call in the backward pass.
    """

    name = "icfm"

    def __init__(
        self,
        network: nn.Module,
        *,
        sigma: float = 0.1,
        num_steps: int = 2,
        unpaired_rows: UnpairedRows | str = UnpairedRows.DROP,
        time_scale: float = 1000.0,
        checkpoint_activations: bool = False,
    ) -> None:
        if not (isinstance(sigma, int | float) and sigma > 0 and math.isfinite(sigma)):
            raise ValueError(
                f"sigma must be a finite number > 0 for I-CFM (sigma = 0 is rectified_flow), got {sigma!r}"
            )
        super().__init__(
            network,
            LinearPath(sigma),
            num_steps=num_steps,
            unpaired_rows=unpaired_rows,
            time_scale=time_scale,
            checkpoint_activations=checkpoint_activations,
        )

    def method_config(self) -> dict[str, Any]:
        return {**super().method_config(), "sigma": self.path.sigma}


class VPCFM(FlowMatching):
    """VP-CFM: trigonometric (variance-preserving) interpolant, constant ``sigma`` (default 0).

    Args:
        network: velocity network.
        sigma: path standard deviation (>= 0).
        num_steps: default NFE of :meth:`sample`.
        unpaired_rows: ``"drop"`` or ``"couple"``.
        time_scale: network timestep = ``time_scale * t``.
        checkpoint_activations: recompute the network call in the backward pass.
    """

    name = "vpcfm"

    def __init__(
        self,
        network: nn.Module,
        *,
        sigma: float = 0.0,
        num_steps: int = 2,
        unpaired_rows: UnpairedRows | str = UnpairedRows.DROP,
        time_scale: float = 1000.0,
        checkpoint_activations: bool = False,
    ) -> None:
        super().__init__(
            network,
            VPPath(sigma),
            num_steps=num_steps,
            unpaired_rows=unpaired_rows,
            time_scale=time_scale,
            checkpoint_activations=checkpoint_activations,
        )

    def method_config(self) -> dict[str, Any]:
        return {**super().method_config(), "sigma": self.path.sigma}
