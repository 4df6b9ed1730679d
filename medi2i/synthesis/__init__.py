"""Bi-modality image synthesis: Bi-DPM and its baselines, all behind one interface.

Every method is a :class:`SynthesisMethod` around one time-conditioned velocity network
(:class:`~medi2i.synthesis.networks.VelocityUNet`, MONAI ``DiffusionModelUNet``) serving both directions:

* ``training_loss(a, b, *, paired=None) -> {"loss": scalar, <parts>}`` with ``a``, ``b`` ``(B, 1, H, W)``
  in [-1, 1] (A at ``t = 0``, B at ``t = 1``) and ``paired`` a ``(B,)`` bool mask;
* ``sample(x, direction, *, num_steps=None)``: deterministic translation, ``"a2b"`` or ``"b2a"``;
* ``config()``: plain-JSON constructor config; :func:`build_method` rebuilds the method from it.

Registered methods (:data:`METHODS`): ``"bidpm"`` (:class:`BiDPM`), ``"rectified_flow"``
(:class:`RectifiedFlow`), ``"icfm"`` (:class:`IndependentCFM`), ``"vpcfm"`` (:class:`VPCFM`) and
``"regression"`` (:class:`RegressionControl`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from medi2i.errors import Medi2iInputError
from medi2i.options import choose_key
from medi2i.synthesis.base import Direction, EulerGrid, SynthesisMethod
from medi2i.synthesis.bidpm import BiDPM, MMDRows
from medi2i.synthesis.flows import VPCFM, FlowMatching, IndependentCFM, RectifiedFlow, UnpairedRows
from medi2i.synthesis.losses import KernelMMD, mmd_rbf, paired_metric
from medi2i.synthesis.networks import VelocityUNet
from medi2i.synthesis.regression import RegressionControl, RegressionLoss

__all__ = [
    "METHODS",
    "VPCFM",
    "BiDPM",
    "Direction",
    "EulerGrid",
    "FlowMatching",
    "IndependentCFM",
    "KernelMMD",
    "MMDRows",
    "RectifiedFlow",
    "RegressionControl",
    "RegressionLoss",
    "SynthesisMethod",
    "UnpairedRows",
    "VelocityUNet",
    "build_method",
    "mmd_rbf",
    "paired_metric",
]

#: registry: config name -> method class
METHODS: dict[str, type[SynthesisMethod]] = {
    cls.name: cls for cls in (BiDPM, RectifiedFlow, IndependentCFM, VPCFM, RegressionControl)
}


def build_method(config: Mapping[str, Any], *, network: nn.Module | None = None) -> SynthesisMethod:
    """Build a synthesis method from its :meth:`SynthesisMethod.config` dictionary.

    Args:
        config: ``{"method": name, <constructor arguments>, "network": VelocityUNet arguments or None}``;
            arguments left out take their defaults.
        network: use this network instead of building one from ``config["network"]`` (needed when the
            config has no network settings, e.g. a MONAI ``DiffusionModelUNet`` built by a bundle).

    Returns:
        The method (fresh weights; load a ``state_dict`` for trained ones).

    Raises:
        Medi2iInputError: unknown method name or argument, or no network settings and no ``network``.
        ValueError: an illegal argument value (from the constructors).

    Example:
        >>> method = build_method({"method": "bidpm", "num_steps": 1, "paired_metric": "l1",
        ...                        "network": {"channels": [8, 8], "attention_levels": [False, False],
        ...                                    "num_res_blocks": 1, "norm_num_groups": 8, "num_head_channels": 8}})
        >>> type(method).__name__, method.num_steps
        ('BiDPM', 1)
    """
    if not isinstance(config, Mapping) or "method" not in config:
        raise Medi2iInputError("a synthesis method config must be a mapping with a 'method' key", field="method")
    settings = dict(config)
    cls = choose_key(str(settings.pop("method")), METHODS, field="method")
    network_config = settings.pop("network", None)
    unknown = sorted(set(settings) - cls.accepted_arguments())
    if unknown:
        raise Medi2iInputError(
            f"unknown argument(s) for method {cls.name!r}",
            field=unknown[0],
            found=unknown,
            expected=f"some of {sorted(cls.accepted_arguments())}",
        )
    if network is None:
        if network_config is None:
            raise Medi2iInputError(
                "the config has no network settings; pass network= (the velocity network) to build_method",
                field="network",
            )
        network = VelocityUNet(**network_config)
    return cls(network, **settings)
