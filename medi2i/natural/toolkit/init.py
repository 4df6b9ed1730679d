"""Weight initialisation of the CycleGAN/CUT/SPADE codes (park_thesis.md section 1, "Weight init").

Conv / ConvTranspose / Linear weights: ``normal`` N(0, gain) (CycleGAN), ``xavier`` Xavier-normal with ``gain``
(CUT, SPADE: gain 0.02), ``kaiming`` Kaiming-normal (a=0, fan_in), ``orthogonal`` with ``gain``; their biases 0.
BatchNorm weights N(1, gain), biases 0. Layers wrapped in spectral norm are initialised through their
``weight_orig`` parameter. Uses the global torch RNG (seed it, or build under ``torch.random.fork_rng``).
"""

from __future__ import annotations

import torch
from monai.utils import StrEnum, look_up_option
from torch import nn

__all__ = ["InitKind", "init_weights"]


class InitKind(StrEnum):
    NORMAL = "normal"
    XAVIER = "xavier"
    KAIMING = "kaiming"
    ORTHOGONAL = "orthogonal"


@torch.no_grad()
def init_weights(module: nn.Module, kind: str = InitKind.NORMAL, gain: float = 0.02) -> nn.Module:
    """Initialise every conv/linear/batch-norm layer of ``module`` in place; returns ``module``.

    Example:
        >>> net = init_weights(nn.Conv2d(1, 64, 3), "normal", 0.02)
        >>> abs(float(net.weight.detach().std()) - 0.02) < 0.005, float(net.bias.detach().abs().max())
        (True, 0.0)
    """
    kind = look_up_option(kind, InitKind)
    if gain <= 0:
        raise ValueError(f"gain must be > 0, got {gain}")
    for layer in module.modules():
        if isinstance(layer, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.ConvTranspose3d, nn.Linear)):
            weight = _raw_weight(layer)
            if kind == InitKind.NORMAL:
                nn.init.normal_(weight, 0.0, gain)
            elif kind == InitKind.XAVIER:
                nn.init.xavier_normal_(weight, gain=gain)
            elif kind == InitKind.KAIMING:
                nn.init.kaiming_normal_(weight, a=0, mode="fan_in")
            else:
                nn.init.orthogonal_(weight, gain=gain)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        elif isinstance(layer, (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)) and layer.affine:
            nn.init.normal_(layer.weight, 1.0, gain)
            nn.init.zeros_(layer.bias)
    return module


def _raw_weight(layer: nn.Module) -> torch.Tensor:
    """The trainable weight tensor: ``weight_orig`` of the old spectral-norm hook, ``parametrizations.weight.original``
    of :func:`torch.nn.utils.parametrizations.spectral_norm` (and other parametrisations), else ``weight``."""
    if hasattr(layer, "weight_orig"):
        return layer.weight_orig
    parametrizations = getattr(layer, "parametrizations", None)
    if parametrizations is not None and "weight" in parametrizations:
        return parametrizations.weight.original
    return layer.weight
