"""Learning-rate schedule of CycleGAN/CUT/SPADE: constant, then linear decay (park_thesis.md section 3.3).

The CycleGAN code's rule ``lr_factor = 1 - max(0, epoch + epoch_count - n_epochs) / (n_epochs_decay + 1)`` with
``epoch_count = 1`` and the scheduler stepped after each epoch: unit ``t`` (0-based, what ``LambdaLR`` counts)
trains with factor ``1 - max(0, t + 1 - n_constant) / (n_decay + 1)``. The first ``n_constant`` units run at the
base lr, the last of the ``n_decay`` decay units at ``1 / (n_decay + 1)`` of it. The unit is whatever the caller
steps (epochs in :class:`medi2i.natural.trainer.AdversarialTrainer`).
"""

from __future__ import annotations

import torch

__all__ = ["linear_decay", "linear_decay_factor"]


def linear_decay_factor(t: int, n_constant: int, n_decay: int) -> float:
    """LR multiplier of unit ``t`` (0-based).

    Example:
        >>> [round(linear_decay_factor(t, 2, 3), 2) for t in range(6)]
        [1.0, 1.0, 0.75, 0.5, 0.25, 0.0]
    """
    return max(0.0, 1.0 - max(0, t + 1 - n_constant) / (n_decay + 1))


def linear_decay(optimizer: torch.optim.Optimizer, n_constant: int, n_decay: int) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` keeping the lr for ``n_constant`` steps, then decaying it linearly over ``n_decay`` steps.

    Example:
        >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        >>> sched = linear_decay(opt, 1, 1)
        >>> lrs = [opt.param_groups[0]["lr"]]
        >>> opt.step(); sched.step(); lrs.append(opt.param_groups[0]["lr"])
        >>> lrs
        [1.0, 0.5]
    """
    for name, value in (("n_constant", n_constant), ("n_decay", n_decay)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda t: linear_decay_factor(t, n_constant, n_decay))
