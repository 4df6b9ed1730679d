"""The common interface of the synthesis methods and the explicit Euler grid they integrate on.

Three things are kept apart (STYLE.md): the *objective* (``training_loss``, one per method), the
*network* (a time-conditioned velocity field ``u(x, t)``, :mod:`medi2i.synthesis.networks`) and the
*sampler* (:class:`EulerGrid`, explicit Euler on a uniform grid, shared by every method).

Conventions shared by all methods:

* modality A sits at ``t = 0``, modality B at ``t = 1`` (bidpm.md section 1.1);
* images are ``(B, 1, H, W[, D])`` in [-1, 1];
* the network receives the time as ``time_scale * t`` (default 1000, bidpm.md section 6 item 10),
  so the grid times 0, 0.5, 1 are far apart in MONAI's sinusoidal embedding;
* ``A -> B`` integrates forward in time with the velocity at the left end of each step,
  ``B -> A`` integrates backward with the velocity at the right end (bidpm.md Eq. 5, Alg. 2).
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from enum import Enum
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from medi2i.errors import Medi2iInputError
from medi2i.options import choose

__all__ = ["Direction", "EulerGrid", "SynthesisMethod", "check_image_pair", "check_paired_mask"]


class Direction(str, Enum):
    """Translation direction: ``a2b`` integrates t = 0 -> 1, ``b2a`` integrates t = 1 -> 0."""

    A2B = "a2b"
    B2A = "b2a"


class EulerGrid:
    """Explicit Euler on the uniform grid ``0 = t_0 < t_1 < ... < t_N = 1`` (MONAI scheduler style).

    Call :meth:`set_timesteps` first; :meth:`step` before it raises. ``step`` follows bidpm.md Eq. 5:
    forward ``x_{t_n} = x_{t_{n-1}} + h_n u(x_{t_{n-1}}, t_{n-1})`` and backward
    ``x_{t_{n-1}} = x_{t_n} - h_n u(x_{t_n}, t_n)``, ``h_n = t_n - t_{n-1}``.

    Example:
        >>> grid = EulerGrid()
        >>> grid.set_timesteps(2)
        >>> grid.timesteps.tolist()
        [0.0, 0.5, 1.0]
        >>> [grid.evaluation_time(k, "a2b") for k in range(2)], [grid.evaluation_time(k, "b2a") for k in range(2)]
        ([0.0, 0.5], [1.0, 0.5])
        >>> grid.step(torch.ones(1), 0, torch.zeros(1), "a2b").tolist()
        [0.5]
    """

    def __init__(self) -> None:
        self._timesteps: torch.Tensor | None = None

    def set_timesteps(self, num_steps: int) -> None:
        """Set the grid to ``num_steps`` uniform steps (``num_steps + 1`` times from 0 to 1)."""
        if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
            raise ValueError(f"num_steps must be an integer >= 1, got {num_steps!r}")
        self._timesteps = torch.linspace(0.0, 1.0, num_steps + 1, dtype=torch.float64)

    @property
    def timesteps(self) -> torch.Tensor:
        """The grid times ``t_0 .. t_N`` as a float64 tensor ``(N + 1,)``."""
        if self._timesteps is None:
            raise RuntimeError("EulerGrid: call set_timesteps(num_steps) before using the grid")
        return self._timesteps

    @property
    def num_steps(self) -> int:
        return int(self.timesteps.numel()) - 1

    def _interval(self, k: int, direction: Direction | str) -> tuple[int, int]:
        """Grid indices (from, to) of step ``k`` (0-based, in integration order)."""
        n = self.num_steps
        if not 0 <= k < n:
            raise ValueError(f"step index must be in [0, {n}), got {k}")
        if choose(direction, Direction, field="direction") is Direction.A2B:
            return k, k + 1
        return n - k, n - k - 1

    def evaluation_time(self, k: int, direction: Direction | str) -> float:
        """Time at which the velocity of step ``k`` is evaluated: ``t_k`` (a2b) or ``t_{N-k}`` (b2a)."""
        start, _ = self._interval(k, direction)
        return float(self.timesteps[start])

    def step_size(self, k: int, direction: Direction | str) -> float:
        """Signed time increment of step ``k``: ``+h`` (a2b) or ``-h`` (b2a)."""
        start, end = self._interval(k, direction)
        return float(self.timesteps[end] - self.timesteps[start])

    def step(self, velocity: torch.Tensor, k: int, sample: torch.Tensor, direction: Direction | str) -> torch.Tensor:
        """One explicit Euler step (bidpm.md Eq. 5): ``sample + step_size(k) * velocity``."""
        return sample + self.step_size(k, direction) * velocity


def check_image_pair(a: torch.Tensor, b: torch.Tensor) -> None:
    """Raise unless ``a`` and ``b`` are floating ``(B, C, *spatial)`` tensors of one shape."""
    for name, x in (("a", a), ("b", b)):
        if not isinstance(x, torch.Tensor) or x.ndim < 4 or not x.is_floating_point():
            raise Medi2iInputError(
                "expected a floating-point image batch",
                field=name,
                found=f"{type(x).__name__} {tuple(getattr(x, 'shape', ()))} {getattr(x, 'dtype', '')}",
                expected="(B, C, H, W[, D]) float",
            )
    if a.shape != b.shape:
        raise Medi2iInputError(
            "modality A and B batches must have the same shape",
            field="b",
            found=tuple(b.shape),
            expected=tuple(a.shape),
        )


def check_paired_mask(paired: torch.Tensor | None, batch: int, device: torch.device) -> torch.Tensor:
    """Return the ``(B,)`` bool pairing mask (all ``True`` for ``None``), checking its shape and dtype."""
    if paired is None:
        return torch.ones(batch, dtype=torch.bool, device=device)
    if not isinstance(paired, torch.Tensor) or paired.dtype != torch.bool or tuple(paired.shape) != (batch,):
        raise Medi2iInputError(
            "the pairing mask must be a bool tensor with one entry per batch row",
            field="paired",
            found=f"{tuple(getattr(paired, 'shape', ()))} {getattr(paired, 'dtype', type(paired).__name__)}",
            expected=f"({batch},) torch.bool",
        )
    return paired


def graph_zero(x: torch.Tensor) -> torch.Tensor:
    """A scalar 0 that stays connected to ``x``'s graph, so ``backward`` and DDP see every parameter used."""
    return x.sum() * 0.0


class SynthesisMethod(nn.Module, ABC):
    """Base of the bi-directional translators: one velocity network, a training loss and a sampler.

    Subclasses implement :meth:`training_loss`, :meth:`sample` and :meth:`config` (the constructor
    arguments other than the network, plain JSON). ``config()["network"]`` holds the network's own
    ``config()`` when it has one (:class:`~medi2i.synthesis.networks.VelocityUNet`), else ``None``,
    and :func:`medi2i.synthesis.build_method` rebuilds the method from it.

    Args:
        network: the velocity network, called as ``network(x, timesteps)`` with ``x`` ``(B, C, *spatial)``
            and ``timesteps`` ``(B,)`` float (``time_scale * t``).
        time_scale: factor between the continuous time ``t`` in [0, 1] and the network's timestep input.
        checkpoint_activations: recompute each network call in the backward pass instead of storing its
            activations (``torch.utils.checkpoint``); trades ~30 % more compute for memory, useful for
            Bi-DPM with ``N >= 3`` where the unrolled chains hold ``2N`` network activations.
    """

    name: str = ""

    def __init__(self, network: nn.Module, *, time_scale: float = 1000.0, checkpoint_activations: bool = False) -> None:
        super().__init__()
        if not isinstance(network, nn.Module):
            raise ValueError(f"network must be a torch.nn.Module, got {type(network).__name__}")
        if not time_scale > 0:
            raise ValueError(f"time_scale must be > 0, got {time_scale!r}")
        self.network = network
        self.time_scale = float(time_scale)
        self.checkpoint_activations = bool(checkpoint_activations)

    def exclude_from_checkpoint(self, name: str) -> None:
        """Keep the frozen submodule ``name`` (e.g. an LPIPS metric) out of ``state_dict`` and ``load_state_dict``.

        It is rebuilt from :meth:`config` (its weights come from local files), so saving it would only add
        ~60 MB of VGG weights to every checkpoint.
        """
        marker = f"{name}."

        def drop(module: nn.Module, state: dict[str, Any], prefix: str, local_metadata: Any) -> None:
            for key in [k for k in state if k.startswith(prefix + marker)]:
                del state[key]

        def ignore_missing(module: nn.Module, incompatible_keys: Any) -> None:
            missing = incompatible_keys.missing_keys
            for key in [k for k in missing if k.startswith(marker) or f".{marker}" in k]:
                missing.remove(key)

        self._register_state_dict_hook(drop)
        self.register_load_state_dict_post_hook(ignore_missing)

    def velocity(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``u(x, t)``: the network at continuous times ``t`` ``(B,)`` in [0, 1]; returns ``x``'s shape."""
        timesteps = (t * self.time_scale).to(x.dtype)
        if self.checkpoint_activations and torch.is_grad_enabled():
            return checkpoint(self.network, x, timesteps, use_reentrant=False)
        return self.network(x, timesteps)

    @abstractmethod
    def training_loss(
        self, a: torch.Tensor, b: torch.Tensor, *, paired: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Loss of one batch: ``{"loss": scalar to backpropagate, <part>: detached scalar, ...}``.

        Args:
            a: ``(B, C, H, W[, D])`` modality A in [-1, 1].
            b: same shape, modality B.
            paired: ``(B,)`` bool, ``True`` where ``(a[i], b[i])`` is a real pair; ``None`` = all paired.
        """

    @abstractmethod
    def sample(self, x: torch.Tensor, direction: str, *, num_steps: int | None = None) -> torch.Tensor:
        """Translate ``x`` (A for ``"a2b"``, B for ``"b2a"``); deterministic, same shape as ``x``."""

    @abstractmethod
    def method_config(self) -> dict[str, Any]:
        """The constructor arguments of this method other than ``network`` (plain JSON values)."""

    def config(self) -> dict[str, Any]:
        """Plain-JSON constructor config: ``{"method": name, <arguments>, "network": network config or None}``.

        Example:
            >>> from medi2i.synthesis import build_method
            >>> from medi2i.synthesis.networks import TINY_UNET, VelocityUNet
            >>> net = VelocityUNet(**TINY_UNET)
            >>> method = build_method({"method": "rectified_flow", "num_steps": 4}, network=net)
            >>> cfg = method.config()
            >>> cfg["method"], cfg["num_steps"], cfg["network"]["channels"]
            ('rectified_flow', 4, [16, 32, 32])
            >>> build_method(cfg).config() == cfg
            True
        """
        network_config = getattr(self.network, "config", None)
        return {
            "method": self.name,
            **self.method_config(),
            "time_scale": self.time_scale,
            "checkpoint_activations": self.checkpoint_activations,
            "network": network_config() if callable(network_config) else None,
        }

    @classmethod
    def accepted_arguments(cls) -> set[str]:
        """Keyword arguments of the constructor (for config validation)."""
        return {
            name
            for name, p in inspect.signature(cls.__init__).parameters.items()
            if p.kind is inspect.Parameter.KEYWORD_ONLY
        }

    def _direction(self, x: torch.Tensor, direction: Direction | str) -> Direction:
        if not isinstance(x, torch.Tensor) or x.ndim < 4 or not x.is_floating_point():
            raise Medi2iInputError(
                "expected a floating-point image batch",
                field="x",
                found=f"{type(x).__name__} {tuple(getattr(x, 'shape', ()))}",
                expected="(B, C, H, W[, D]) float",
            )
        return choose(direction, Direction, field="direction")

    def integrate(self, x: torch.Tensor, direction: Direction | str, num_steps: int) -> torch.Tensor:
        """Explicit Euler from ``x`` over ``num_steps`` uniform steps (bidpm.md Alg. 2 / RF sampling)."""
        grid = EulerGrid()
        grid.set_timesteps(num_steps)
        for k in range(num_steps):
            t = x.new_full((x.shape[0],), grid.evaluation_time(k, direction))
            x = grid.step(self.velocity(x, t), k, x, direction)
        return x
