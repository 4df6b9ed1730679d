"""Exponential moving average (EMA) of network weights, checkpointable, with an ignite handler.

The Bi-DPM paper samples from EMA weights but gives no decay; we use 0.999 updated every step
(research digest section 3). The shadow copy lives on the same device as the trained network and is
never trained; buffers (e.g. normalisation statistics) are copied, not averaged.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from ignite.engine import Engine


def unwrap(module: torch.nn.Module) -> torch.nn.Module:
    """The module inside a ``DistributedDataParallel`` / ``DataParallel`` wrapper (or ``module`` itself)."""
    wrapped = isinstance(module, torch.nn.parallel.DistributedDataParallel | torch.nn.DataParallel)
    return module.module if wrapped else module


class EMA:
    """Shadow weights ``theta_ema <- decay * theta_ema + (1 - decay) * theta`` after every update.

    Args:
        network: the trained module (a DDP wrapper is unwrapped).
        decay: EMA decay in [0, 1); 0 copies the weights at every update.
        warmup_steps: for the first ``warmup_steps`` updates use ``min(decay, (1 + n) / (10 + n))`` so early
            EMA weights are not dominated by the random initialisation (0 disables it).

    Example:
        >>> net = torch.nn.Linear(1, 1, bias=False)
        >>> ema = EMA(net, decay=0.5)
        >>> with torch.no_grad():
        ...     _ = net.weight.fill_(1.0)
        >>> old = float(ema.module.weight)
        >>> ema.update(net)
        >>> abs(float(ema.module.weight) - (0.5 * old + 0.5)) < 1e-6
        True
    """

    def __init__(self, network: torch.nn.Module, decay: float = 0.999, warmup_steps: int = 0):
        if not 0.0 <= float(decay) < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay!r}")
        if int(warmup_steps) < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps!r}")
        self.decay = float(decay)
        self.warmup_steps = int(warmup_steps)
        self.num_updates = 0
        self.module = copy.deepcopy(unwrap(network)).eval()
        self.module.requires_grad_(False)

    def current_decay(self) -> float:
        """The decay the next update uses (warm-up aware)."""
        if self.warmup_steps and self.num_updates < self.warmup_steps:
            n = self.num_updates
            return min(self.decay, (1.0 + n) / (10.0 + n))
        return self.decay

    @torch.no_grad()
    def update(self, network: torch.nn.Module) -> None:
        """Move the shadow weights towards ``network``'s current weights."""
        decay = self.current_decay()
        source = unwrap(network)
        shadow = dict(self.module.named_parameters())
        for name, param in source.named_parameters():
            shadow[name].lerp_(param.detach().to(shadow[name].dtype), 1.0 - decay)
        shadow_buffers = dict(self.module.named_buffers())
        for name, buf in source.named_buffers():
            shadow_buffers[name].copy_(buf)
        self.num_updates += 1

    def state_dict(self) -> dict[str, Any]:
        return {"module": self.module.state_dict(), "num_updates": self.num_updates, "decay": self.decay}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.module.load_state_dict(state["module"])
        self.num_updates = int(state["num_updates"])


class EMAHandler:
    """Ignite handler: ``ema.update(network)`` after every ``every`` training iterations.

    Args:
        ema: the :class:`EMA` object (also put it in the checkpoint objects to resume exactly).
        network: the trained module.
        every: update period in iterations.
    """

    def __init__(self, ema: EMA, network: torch.nn.Module, every: int = 1):
        if int(every) < 1:
            raise ValueError(f"every must be >= 1, got {every!r}")
        self.ema = ema
        self.network = network
        self.every = int(every)

    def attach(self, engine: Engine) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.ITERATION_COMPLETED(every=self.every), self)

    def __call__(self, engine: Engine) -> None:
        self.ema.update(self.network)
