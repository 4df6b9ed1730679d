"""Planner, actor and critic of RL-I2IT registration, in 2D and 3D (digest section 2.2 / 2.3).

Planner kappa_psi(p | s): a k4s2 encoder of the state ``s = [I_F, I_M o U]`` whose last layer (a conv
whose kernel covers the whole bottleneck) gives a diagonal Gaussian over a d-dimensional plan, with the
log-variance bounded by tanh (section 2.1). Every level's output is kept as a skip.
Actor pi_phi(p, h_psi(s)): a nearest-up-sampling decoder from the plan (as a 1x1(x1) map) with the
planner's skips, ending in an unbounded conv to the per-step displacement field (voxels).
Critic Q_theta(s, p): an independent k4s2 encoder of the state to a d-vector, concatenated with the plan,
then LeakyReLU and Linear -> Q. Convolutions are bias-free with LeakyReLU(0.1), no normalisation (code).

With the ``spac`` preset at 128^3 the counts are planner 1,301,248, actor 1,051,920, critic 755,841
(digest section 8.4).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from medi2i.registration.config import NetworkPreset, RLI2ITConfig

_SLOPE = 0.1

# D10 presets, keyed by (preset, spatial_dims): (encoder channels, decoder channels, plan dim). ``spac`` is
# the official 3D topology (same widths in 2D); the ``vm_budget`` widths were chosen so that planner + actor
# count 110,032 (2D, 128^2) / 457,032 (3D, 128^3), near the 107 K / 458 K the paper reports (its exact
# layout is unpublished).
PRESETS: dict[tuple[str, int], tuple[tuple[int, ...], tuple[int, ...], int]] = {
    (NetworkPreset.SPAC, 2): ((16, 32, 32, 64, 64), (64, 64, 64, 32, 16, 16), 64),
    (NetworkPreset.SPAC, 3): ((16, 32, 32, 64, 64), (64, 64, 64, 32, 16, 16), 64),
    (NetworkPreset.VM_BUDGET, 2): ((8, 16, 16, 24, 24), (24, 24, 24, 16, 8, 8), 24),
    (NetworkPreset.VM_BUDGET, 3): ((8, 16, 16, 16, 32), (32, 32, 16, 16, 8, 8), 32),
}


def default_decoder(channels: Sequence[int]) -> tuple[int, ...]:
    """Actor widths for encoder widths ``c_1..c_L``: ``(c_L, c_{L-1}, ..., c_1, c_1)``.

    The first entry is the plan up-sampling block, then one width per level from coarse to fine.

    Example:
        >>> default_decoder((8, 16, 16))
        (16, 16, 8, 8)
    """
    c = tuple(channels)
    return (c[-1],) + tuple(reversed(c[:-1])) + (c[0],)


@dataclass(frozen=True)
class Architecture:
    """Resolved widths: encoder ``channels``, actor ``decoder_channels``, ``plan_dim``."""

    channels: tuple[int, ...]
    decoder_channels: tuple[int, ...]
    plan_dim: int


def architecture(cfg: RLI2ITConfig) -> Architecture:
    """Widths of the networks for a config (presets override ``channels`` and ``plan_dim``).

    Example:
        >>> architecture(RLI2ITConfig(network="spac")).decoder_channels
        (64, 64, 64, 32, 16, 16)
    """
    if cfg.network == NetworkPreset.CUSTOM:
        channels = tuple(cfg.channels)
        decoder = tuple(cfg.decoder_channels) if cfg.decoder_channels is not None else default_decoder(channels)
        return Architecture(channels, decoder, cfg.plan_dim)
    channels, decoder, plan_dim = PRESETS[(NetworkPreset(cfg.network), cfg.spatial_dims)]
    return Architecture(channels, decoder, plan_dim)


def _conv(spatial_dims: int, cin: int, cout: int, kernel: int | Sequence[int], stride: int, padding: int) -> nn.Module:
    conv = nn.Conv2d if spatial_dims == 2 else nn.Conv3d
    return conv(cin, cout, kernel, stride=stride, padding=padding, bias=False)


def _block(spatial_dims: int, cin: int, cout: int, down: bool) -> nn.Sequential:
    """[k4s2 conv +] k3 conv, each followed by LeakyReLU(0.1)."""
    layers: list[nn.Module] = []
    if down:
        layers += [_conv(spatial_dims, cin, cout, 4, 2, 1), nn.LeakyReLU(_SLOPE)]
        cin = cout
    layers += [_conv(spatial_dims, cin, cout, 3, 1, 1), nn.LeakyReLU(_SLOPE)]
    return nn.Sequential(*layers)


def _up_block(spatial_dims: int, cin: int, cout: int) -> nn.Sequential:
    """The actor's "Up" after nearest up-sampling: two k3 convs, each followed by LeakyReLU(0.1)."""
    return nn.Sequential(
        _conv(spatial_dims, cin, cout, 3, 1, 1),
        nn.LeakyReLU(_SLOPE),
        _conv(spatial_dims, cout, cout, 3, 1, 1),
        nn.LeakyReLU(_SLOPE),
    )


def bottleneck_shape(spatial_shape: Sequence[int], levels: int) -> tuple[int, ...]:
    """Spatial shape after ``levels`` k4s2 convs; raises unless every axis divides by ``2**levels``.

    Example:
        >>> bottleneck_shape((128, 96), 5)
        (4, 3)
    """
    factor = 2**levels
    shape = tuple(int(s) for s in spatial_shape)
    if any(s % factor or s < factor for s in shape):
        raise ValueError(
            f"image_size {shape} must be a positive multiple of 2**levels = {factor} on every axis "
            f"({levels} down-sampling levels); pad or crop the images"
        )
    return tuple(s // factor for s in shape)


class _Checks(nn.Module):
    spatial_dims: int
    image_size: tuple[int, ...]

    def _check_state(self, state: torch.Tensor) -> None:
        if state.ndim != self.spatial_dims + 2 or state.shape[1] != 2:
            raise ValueError(f"expected state (B, 2, *{self.image_size}), got shape {tuple(state.shape)}")
        if tuple(state.shape[2:]) != self.image_size:
            raise ValueError(f"expected state spatial shape {self.image_size}, got {tuple(state.shape[2:])}")


class Planner(_Checks):
    """Encoder with a bounded diagonal-Gaussian plan head (the stochastic planner kappa_psi).

    Args:
        spatial_dims: 2 or 3.
        image_size: spatial shape of the state; each axis a multiple of ``2**len(channels)``.
        channels: widths of the k4s2 levels (default: the ``spac`` preset).
        plan_dim: plan dimension d.
        logvar_min: lower log-variance bound (default -10).
        logvar_max: upper log-variance bound (default 2).

    Example:
        >>> planner = Planner(2, (32, 32), channels=(8, 16, 16), plan_dim=16)
        >>> mean, logvar, skips = planner(torch.rand(2, 2, 32, 32))
        >>> tuple(mean.shape), [tuple(s.shape[1:]) for s in skips]
        ((2, 16), [(8, 16, 16), (16, 8, 8), (16, 4, 4)])
    """

    def __init__(
        self,
        spatial_dims: int,
        image_size: Sequence[int],
        channels: Sequence[int] = (16, 32, 32, 64, 64),
        plan_dim: int = 64,
        logvar_min: float = -10.0,
        logvar_max: float = 2.0,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        if len(image_size) != spatial_dims:
            raise ValueError(f"image_size must have {spatial_dims} entries, got {tuple(image_size)}")
        if plan_dim < 1 or not channels:
            raise ValueError(f"plan_dim must be >= 1 and channels non-empty, got {plan_dim}, {tuple(channels)}")
        if not logvar_min < logvar_max:
            raise ValueError(f"logvar_min must be < logvar_max, got {logvar_min}, {logvar_max}")
        self.spatial_dims = spatial_dims
        self.image_size = tuple(int(s) for s in image_size)
        self.bottleneck = bottleneck_shape(self.image_size, len(channels))
        self.plan_dim = plan_dim
        self.logvar_min, self.logvar_max = float(logvar_min), float(logvar_max)
        widths = (2, *channels)
        self.levels = nn.ModuleList(_block(spatial_dims, widths[i], widths[i + 1], True) for i in range(len(channels)))
        # the code keeps a LeakyReLU after this head conv (a quirk of SPAC; kept for the exact topology)
        self.head = nn.Sequential(
            _conv(spatial_dims, channels[-1], 2 * plan_dim, self.bottleneck, 1, 0), nn.LeakyReLU(_SLOPE)
        )

    def forward(self, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """Return ``(mean (B, d), logvar (B, d), skips)`` with skips fine to coarse."""
        self._check_state(state)
        skips: list[torch.Tensor] = []
        x = state
        for level in self.levels:
            x = level(x)
            skips.append(x)
        mean, raw = self.head(x).flatten(1).chunk(2, dim=1)
        # bounded log-variance (section 2.1): logvar = lo + (hi - lo) / 2 * (tanh(raw) + 1)
        half = 0.5 * (self.logvar_max - self.logvar_min)
        logvar = self.logvar_min + half * (torch.tanh(raw) + 1.0)
        return mean, logvar, skips


class Actor(nn.Module):
    """Decoder pi_phi(p, h_psi(s)): plan + planner skips -> per-step displacement ``(B, ndim, *size)``.

    Args:
        spatial_dims: 2 or 3.
        bottleneck: spatial shape of the coarsest skip (``Planner.bottleneck``).
        channels: encoder widths (to know the skip widths).
        decoder_channels: the plan block's width, then one width per level coarse to fine
            (``len(channels) + 1`` entries; default :func:`default_decoder`).
        plan_dim: plan dimension d.

    Example:
        >>> planner = Planner(2, (32, 32), channels=(8, 16, 16), plan_dim=16)
        >>> actor = Actor(2, planner.bottleneck, channels=(8, 16, 16), plan_dim=16)
        >>> mean, _, skips = planner(torch.rand(1, 2, 32, 32))
        >>> tuple(actor(mean, skips).shape)
        (1, 2, 32, 32)
    """

    def __init__(
        self,
        spatial_dims: int,
        bottleneck: Sequence[int],
        channels: Sequence[int] = (16, 32, 32, 64, 64),
        decoder_channels: Sequence[int] | None = None,
        plan_dim: int = 64,
    ) -> None:
        super().__init__()
        decoder = tuple(decoder_channels) if decoder_channels is not None else default_decoder(channels)
        if len(decoder) != len(channels) + 1:
            raise ValueError(
                f"decoder_channels must have len(channels) + 1 = {len(channels) + 1} entries, got {decoder}"
            )
        self.spatial_dims = spatial_dims
        self.bottleneck = tuple(int(b) for b in bottleneck)
        self.plan_block = _up_block(spatial_dims, plan_dim, decoder[0])
        ups = []
        prev = decoder[0]
        for skip_width, out in zip(reversed(tuple(channels)), decoder[1:], strict=True):
            ups.append(_up_block(spatial_dims, prev + skip_width, out))
            prev = out
        self.ups = nn.ModuleList(ups)
        # no activation and no tanh: the field is in voxels, bounded only by the environment's clamp (D9)
        self.flow = _conv(spatial_dims, prev, spatial_dims, 3, 1, 1)

    def forward(self, plan: torch.Tensor, skips: Sequence[torch.Tensor]) -> torch.Tensor:
        if plan.ndim != 2:
            raise ValueError(f"expected plan (B, d), got shape {tuple(plan.shape)}")
        if len(skips) != len(self.ups):
            raise ValueError(f"expected {len(self.ups)} skips, got {len(skips)}")
        x = plan.reshape(*plan.shape, *([1] * self.spatial_dims))
        x = self.plan_block(F.interpolate(x, size=self.bottleneck, mode="nearest"))
        for up, skip in zip(self.ups, reversed(skips), strict=True):
            x = torch.cat([x, skip], dim=1)
            x = up(F.interpolate(x, scale_factor=2.0, mode="nearest"))
        return self.flow(x)


class Critic(_Checks):
    """Q_theta(s, p): k4s2 state encoder -> d-vector, concat plan, LeakyReLU, Linear -> ``(B,)``.

    ``hidden`` inserts ``Linear(., h) + LeakyReLU`` layers before the output (config ``critic_hidden``);
    without them (the code) Q is a sum of a state term and a plan term, so ``dQ/dp`` ignores the state.

    Example:
        >>> critic = Critic(2, (32, 32), channels=(8, 16, 16), plan_dim=16)
        >>> tuple(critic(torch.rand(3, 2, 32, 32), torch.randn(3, 16)).shape)
        (3,)
    """

    def __init__(
        self,
        spatial_dims: int,
        image_size: Sequence[int],
        channels: Sequence[int] = (16, 32, 32, 64, 64),
        plan_dim: int = 64,
        hidden: Sequence[int] = (),
    ) -> None:
        super().__init__()
        self.spatial_dims = spatial_dims
        self.image_size = tuple(int(s) for s in image_size)
        bottleneck = bottleneck_shape(self.image_size, len(channels))
        widths = (2, *channels)
        layers: list[nn.Module] = []
        for i in range(len(channels)):
            layers += [_conv(spatial_dims, widths[i], widths[i + 1], 4, 2, 1), nn.LeakyReLU(_SLOPE)]
        layers.append(_conv(spatial_dims, channels[-1], plan_dim, bottleneck, 1, 0))
        self.encoder = nn.Sequential(*layers)
        head: list[nn.Module] = [nn.LeakyReLU(_SLOPE)]
        width = 2 * plan_dim
        for h in hidden:
            head += [nn.Linear(width, int(h)), nn.LeakyReLU(_SLOPE)]
            width = int(h)
        self.head = nn.Sequential(*head, nn.Linear(width, 1))

    def forward(self, state: torch.Tensor, plan: torch.Tensor) -> torch.Tensor:
        self._check_state(state)
        features = self.encoder(state).flatten(1)
        return self.head(torch.cat([features, plan.to(features.dtype)], dim=1)).squeeze(1)


def gaussian_log_prob(plan: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(p; mu, diag(sigma^2)) summed over the plan dimensions (section 2.1), ``(B,)``.

    Example:
        >>> p = torch.zeros(1, 2)
        >>> round(float(gaussian_log_prob(p, p, p)), 4) == round(-math.log(2 * math.pi), 4)
        True
    """
    return -0.5 * ((plan - mean) ** 2 * torch.exp(-logvar) + logvar + math.log(2.0 * math.pi)).sum(dim=-1)


def kl_to_standard_normal(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """D18: ``0.5 * mean(sigma^2 + mu^2 - 1 - log sigma^2)`` over batch and plan dims (code form), scalar."""
    return 0.5 * (logvar.exp() + mean**2 - 1.0 - logvar).mean()


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
