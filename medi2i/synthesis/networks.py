"""The velocity network: MONAI's ``DiffusionModelUNet`` (1 -> 1 channel, time input ``1000 t``), not forked.

:class:`VelocityUNet` only fixes the defaults of bidpm.md section 2 and records its constructor
arguments, so that a checkpoint can be rebuilt from :meth:`VelocityUNet.config` without guessing the
architecture. Its ``forward`` and ``state_dict`` are MONAI's unchanged. The synthesis methods pass
``timesteps = time_scale * t`` (:class:`~medi2i.synthesis.base.SynthesisMethod`).

Flash attention (``use_flash_attention=True``) makes MONAI's attention blocks call
``torch.nn.functional.scaled_dot_product_attention``: on CUDA this avoids materialising the
``(HW) x (HW)`` attention matrices (2304 x 2304 per head at 48 x 48, about 114 GiB of activations for a
batch-16, N = 2 Bi-DPM step at 192 x 192). It also runs on CPU. :func:`default_flash_attention` gives the
per-device choice (on when CUDA is available).

Activation checkpointing is a property of how the network is *called*, not of the network, so it lives
in :class:`~medi2i.synthesis.base.SynthesisMethod` (``checkpoint_activations=True``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from monai.networks.nets import DiffusionModelUNet

__all__ = ["PAPER_UNET", "TINY_UNET", "VelocityUNet", "default_flash_attention"]

#: bidpm.md section 2, full-size default for 192 x 192 slices
PAPER_UNET: dict[str, Any] = {
    "channels": [64, 128, 256, 256],
    "attention_levels": [False, False, True, True],
    "num_res_blocks": 2,
    "num_head_channels": 32,
    "norm_num_groups": 32,
}
#: a CPU-sized network for tests, the learning check and the CPU benchmark (0.27 M parameters; only MONAI's
#: middle block attends, at 1/4 resolution)
TINY_UNET: dict[str, Any] = {
    "channels": [16, 32, 32],
    "attention_levels": [False, False, False],
    "num_res_blocks": 1,
    "num_head_channels": 16,
    "norm_num_groups": 8,
}


def default_flash_attention() -> bool:
    """``True`` when CUDA is available (the setting the benchmark and bundles use by default)."""
    return torch.cuda.is_available()


class VelocityUNet(DiffusionModelUNet):
    """Time-conditioned velocity field ``u(x, t)``: MONAI ``DiffusionModelUNet`` with Bi-DPM's defaults.

    Args:
        spatial_dims: 2 (slices; the paper) or 3.
        in_channels: image channels (1).
        out_channels: velocity channels (= ``in_channels``).
        channels: feature channels per level (default ``(64, 128, 256, 256)``, bidpm.md section 2).
        attention_levels: self-attention per level (default at the two coarsest levels).
        num_res_blocks: residual blocks per level.
        num_head_channels: channels per attention head (must divide the attended levels' channels and the
            last level's: MONAI's middle block always has self-attention).
        norm_num_groups: GroupNorm groups; must divide every entry of ``channels``. GroupNorm keeps the
            samples of a batch independent, which makes Bi-DPM's fused forward/backward call exact.
        use_flash_attention: use PyTorch's fused attention kernel (see the module docstring).

    Example:
        >>> net = VelocityUNet(channels=(8, 16), attention_levels=(False, False), num_res_blocks=1,
        ...                    num_head_channels=8, norm_num_groups=8)
        >>> x = torch.zeros(2, 1, 16, 16)
        >>> tuple(net(x, torch.tensor([0.0, 1000.0])).shape)
        (2, 1, 16, 16)
        >>> float(net(x + 1, torch.tensor([0.0, 500.0])).abs().max())  # MONAI zero-initialises the output conv
        0.0
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        out_channels: int = 1,
        channels: Sequence[int] = (64, 128, 256, 256),
        attention_levels: Sequence[bool] = (False, False, True, True),
        num_res_blocks: int | Sequence[int] = 2,
        num_head_channels: int | Sequence[int] = 32,
        norm_num_groups: int = 32,
        use_flash_attention: bool = False,
    ) -> None:
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
        if in_channels < 1 or out_channels != in_channels:
            raise ValueError(
                f"in_channels must be >= 1 and out_channels equal to it (a velocity has the image's channels), "
                f"got in_channels={in_channels!r}, out_channels={out_channels!r}"
            )
        if len(attention_levels) != len(channels):
            raise ValueError(
                f"attention_levels must have one entry per level of channels ({len(channels)}), "
                f"got {list(attention_levels)}"
            )
        if any(c % norm_num_groups for c in channels):
            raise ValueError(
                f"norm_num_groups={norm_num_groups!r} must divide every entry of channels={list(channels)}"
            )
        heads = [num_head_channels] * len(channels) if isinstance(num_head_channels, int) else list(num_head_channels)
        # MONAI's middle block always has self-attention, at the last level's width
        attended = [i for i, on in enumerate(attention_levels) if on] + [len(channels) - 1]
        if len(heads) != len(channels) or any(channels[i] % heads[i] for i in attended):
            raise ValueError(
                f"num_head_channels={num_head_channels!r} must divide the channels of every attention level and of "
                f"the last level (MONAI's middle block always attends), channels={list(channels)}"
            )
        super().__init__(
            spatial_dims=spatial_dims,
            in_channels=in_channels,
            out_channels=out_channels,
            channels=tuple(channels),
            attention_levels=tuple(attention_levels),
            num_res_blocks=num_res_blocks if isinstance(num_res_blocks, int) else tuple(num_res_blocks),
            num_head_channels=num_head_channels if isinstance(num_head_channels, int) else tuple(num_head_channels),
            norm_num_groups=norm_num_groups,
            use_flash_attention=use_flash_attention,
        )
        self._config: dict[str, Any] = {
            "spatial_dims": int(spatial_dims),
            "in_channels": int(in_channels),
            "out_channels": int(out_channels),
            "channels": [int(c) for c in channels],
            "attention_levels": [bool(a) for a in attention_levels],
            "num_res_blocks": num_res_blocks if isinstance(num_res_blocks, int) else [int(n) for n in num_res_blocks],
            "num_head_channels": (
                num_head_channels if isinstance(num_head_channels, int) else [int(n) for n in num_head_channels]
            ),
            "norm_num_groups": int(norm_num_groups),
            "use_flash_attention": bool(use_flash_attention),
        }

    def config(self) -> dict[str, Any]:
        """The constructor arguments as plain JSON (``VelocityUNet(**net.config())`` rebuilds it)."""
        return dict(self._config)
