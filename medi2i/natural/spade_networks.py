"""SPADE networks: the spatially-adaptive normalisation block, its residual block, the generator and the VAE encoder.

Park et al., "Semantic Image Synthesis with Spatially-Adaptive Normalization", CVPR 2019; Park, PhD thesis
(UCB/EECS-2021-143), ch. 2. Written from the equations and layer tables of the research digest
``park_thesis.md`` section 2.1 (no code copied from the official, non-commercial repository).

Why not ``monai.networks.blocks.SPADE`` (MONAI 1.6): it computes ``norm(x) * (1 + gamma) + beta`` with a nearest
resize of the label map, but (a) its ``mlp_gamma``/``mlp_beta`` are MONAI ``Convolution`` blocks with the default
``norm="INSTANCE"``, so gamma and beta are instance-normalised over space (zero mean per channel: a uniform label
map gives almost no modulation, the very "washing away" SPADE was designed against, thesis Fig. 2.3); (b) its
shared conv ends in a hard-coded ``LeakyReLU(0.01)`` (official: ``ReLU``); (c) its hidden width defaults to 64
(official: 128); (d) ``norm="BATCH"`` builds an *affine* BatchNorm (official: ``affine=False``). Matching it would
mean replacing private sub-modules after construction, which breaks silently when MONAI changes its
``Convolution`` layout, so :class:`SPADENorm` re-implements the ~15 lines (``tests/natural/
test_natural_spade_networks.py`` checks that both agree once MONAI's ADN sub-modules are swapped for the official
ReLU / identity). ``monai.networks.nets.SPADENet`` is not used either: it upsamples after every block, has no
spectral norm and mutates its ``channels`` argument (digest section 8).

Conventions: label maps enter the networks one-hot, float, ``(B, L, H, W)`` (:func:`one_hot_labels` builds
them from integer class maps with a range check); images are ``(B, C, H, W)`` in ``[-1, 1]``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from monai.utils import StrEnum, look_up_option
from torch import nn
from torch.nn.utils import spectral_norm

from medi2i.errors import Medi2iInputError

__all__ = [
    "KLReduction",
    "ParamFreeNorm",
    "SPADEGenerator",
    "SPADENorm",
    "SPADEResBlock",
    "SPADEStyleEncoder",
    "SPADEUpsampling",
    "kl_divergence",
    "one_hot_labels",
    "reparameterize",
]

_LRELU_SLOPE = 0.2  # LeakyReLU slope of the code (the thesis figures draw ReLU; digest section 10, item 4)


class ParamFreeNorm(StrEnum):
    """Parameter-free normalisation inside SPADE (eq. 2.1 statistics; digest section 2.1 and 11.3).

    ``batch``: BatchNorm without affine parameters (the paper's choice; statistics over batch and space, running
    averages used in eval mode; convert to SyncBN with ``torch.nn.SyncBatchNorm.convert_sync_batchnorm`` for
    multi-GPU). ``instance``: InstanceNorm without affine parameters (statistics per sample; the better choice for
    the small batches of medical training, about 1-3 mIoU below BN on natural images, Table 2.4).
    """

    BATCH = "batch"
    INSTANCE = "instance"


class SPADEUpsampling(StrEnum):
    """Number of x2 upsamplings of the official generator: 5 (``normal``), 6 (``more``) or 7 (``most``)."""

    NORMAL = "normal"
    MORE = "more"
    MOST = "most"


class KLReduction(StrEnum):
    """How the KL term is reduced (digest section 10, item 5).

    ``sum``: over latent dimensions *and* the batch, as the official code (its weight 0.05 therefore acts as
    ``0.05 * B`` per image). ``mean``: summed over latent dimensions, averaged over the batch (batch-size
    independent; equals ``sum`` at batch size 1).
    """

    SUM = "sum"
    MEAN = "mean"


def _check_positive_int(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}={value!r} must be a positive integer")


def _check_kernel(kernel_size: int) -> None:
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size={kernel_size!r} must be a positive odd integer (3 in the paper; 1 and 5 tested)")


def one_hot_labels(label: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Turn an integer class map ``(B, 1, H, W)`` into a float one-hot map ``(B, num_classes, H, W)``.

    The range is checked first: the official code's ``scatter_`` fails with an opaque CUDA "index out of bounds"
    when a mask holds e.g. 0/255 values (digest section 2.5, user need 1).

    Args:
        label: integer tensor ``(B, 1, H, W)`` of class indices in ``[0, num_classes)``.
        num_classes: number of classes ``L``.

    Returns:
        Float tensor ``(B, L, H, W)`` with exactly one 1 per pixel, on the label's device.

    Raises:
        Medi2iInputError: wrong dtype, shape, or a value outside ``[0, num_classes)``.

    Example:
        >>> one_hot_labels(torch.tensor([[[[0, 2]]]]), 3)[0, :, 0, 1].tolist()
        [0.0, 0.0, 1.0]
    """
    _check_positive_int("num_classes", num_classes)
    if label.dtype.is_floating_point or label.dtype.is_complex or label.dtype == torch.bool:
        raise Medi2iInputError(
            "the label map must hold integer class indices (not one-hot, not floats)",
            field="label",
            found=str(label.dtype),
            expected="an integer dtype such as torch.int64",
        )
    if label.ndim != 4 or label.shape[1] != 1:
        raise Medi2iInputError(
            "the label map must have shape (B, 1, H, W)",
            field="label",
            found=tuple(label.shape),
            expected="(B, 1, H, W)",
        )
    if label.numel() > 0:
        low, high = int(label.min()), int(label.max())
        if low < 0 or high >= num_classes:
            raise Medi2iInputError(
                f"label values must be class indices in [0, {num_classes - 1}] for num_classes={num_classes}; "
                "map colour or 0/255 masks to class ids first, or raise num_classes",
                field="label",
                found=f"values in [{low}, {high}]",
                expected=f"values in [0, {num_classes - 1}]",
            )
    onehot = torch.zeros(label.shape[0], num_classes, *label.shape[2:], device=label.device)
    return onehot.scatter_(1, label.long(), 1.0)


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Reparameterisation trick ``z = mu + eps * exp(0.5 * logvar)``, ``eps ~ N(0, I)`` (digest section 2.1)."""
    return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor, reduction: str = KLReduction.SUM) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) = -0.5 * sum(1 + logvar - mu^2 - exp(logvar)) (digest section 2.2).

    Args:
        mu: ``(B, Z)`` means.
        logvar: ``(B, Z)`` log-variances.
        reduction: ``"sum"`` over batch and latent dims (official code), or ``"mean"``: summed over latent dims,
            averaged over the batch. See :class:`KLReduction`.

    Returns:
        A scalar tensor (without the weight 0.05).

    Example:
        >>> float(kl_divergence(torch.zeros(2, 4), torch.zeros(2, 4)))
        0.0
    """
    mode = look_up_option(reduction, KLReduction)
    if mu.shape != logvar.shape or mu.ndim != 2:
        raise ValueError(f"mu {tuple(mu.shape)} and logvar {tuple(logvar.shape)} must both be (B, Z)")
    per_sample = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=1)
    return per_sample.sum() if mode == KLReduction.SUM else per_sample.mean()


class SPADENorm(nn.Module):
    """Spatially-adaptive (de)normalisation, thesis eqs. (2.1)-(2.3) in the code's ``(1 + gamma)`` form.

    ``out = param_free_norm(x) * (1 + gamma(m)) + beta(m)`` where ``m`` is the one-hot label map resized to the
    size of ``x`` with **nearest** interpolation, and ``gamma``, ``beta`` are ``(B, C, H, W)`` tensors (they vary
    with position) from ``conv_k(hidden -> C)`` heads on a shared ``ReLU(conv_k(L -> hidden))``. The mask itself
    is never normalised, so a uniform label map still yields class-specific activations (thesis Fig. 2.3).

    Args:
        norm_channels: channels ``C`` of the activations ``x``.
        label_channels: channels ``L`` of the one-hot label map (number of classes).
        hidden_channels: width of the shared conv (128 in the code, hard-coded there).
        kernel_size: kernel of the three convs (3; 1x1 loses label context, Table 2.4).
        param_free_norm: ``"batch"`` (paper) or ``"instance"``, both without affine parameters, eps 1e-5.

    Example:
        >>> block = SPADENorm(8, 3, hidden_channels=16)
        >>> block(torch.randn(2, 8, 4, 4), torch.ones(2, 3, 16, 16)).shape
        torch.Size([2, 8, 4, 4])
    """

    def __init__(
        self,
        norm_channels: int,
        label_channels: int,
        *,
        hidden_channels: int = 128,
        kernel_size: int = 3,
        param_free_norm: str = ParamFreeNorm.BATCH,
    ) -> None:
        super().__init__()
        _check_positive_int("norm_channels", norm_channels)
        _check_positive_int("label_channels", label_channels)
        _check_positive_int("hidden_channels", hidden_channels)
        _check_kernel(kernel_size)
        kind = look_up_option(param_free_norm, ParamFreeNorm)
        self.norm_channels = norm_channels
        self.label_channels = label_channels
        if kind == ParamFreeNorm.BATCH:
            self.param_free_norm: nn.Module = nn.BatchNorm2d(norm_channels, affine=False)
        else:
            self.param_free_norm = nn.InstanceNorm2d(norm_channels, affine=False, track_running_stats=False)
        pad = kernel_size // 2
        self.mlp_shared = nn.Sequential(
            nn.Conv2d(label_channels, hidden_channels, kernel_size, padding=pad), nn.ReLU(inplace=True)
        )
        self.mlp_gamma = nn.Conv2d(hidden_channels, norm_channels, kernel_size, padding=pad)
        self.mlp_beta = nn.Conv2d(hidden_channels, norm_channels, kernel_size, padding=pad)

    def modulation(self, segmap: torch.Tensor, size: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(gamma, beta)``, each ``(B, C, *size)``, from the one-hot map resized (nearest) to ``size``."""
        segmap = F.interpolate(segmap, size=tuple(size), mode="nearest")
        hidden = self.mlp_shared(segmap)
        return self.mlp_gamma(hidden), self.mlp_beta(hidden)

    def forward(self, x: torch.Tensor, segmap: torch.Tensor) -> torch.Tensor:
        """Normalise ``x`` ``(B, C, H, W)`` and modulate it with ``segmap`` ``(B, L, H', W')`` (any size)."""
        if x.ndim != 4 or x.shape[1] != self.norm_channels:
            raise ValueError(f"expected x of shape (B, {self.norm_channels}, H, W), got {tuple(x.shape)}")
        if segmap.ndim != 4 or segmap.shape[1] != self.label_channels or segmap.shape[0] != x.shape[0]:
            raise ValueError(
                f"expected a one-hot segmap of shape ({x.shape[0]}, {self.label_channels}, H, W), "
                f"got {tuple(segmap.shape)}"
            )
        normalized = self.param_free_norm(x)  # eq. (2.2): (h - mu_c) / sigma_c
        gamma, beta = self.modulation(segmap, x.shape[2:])
        return normalized * (1 + gamma) + beta  # eq. (2.3), code form: (1 + gamma) so gamma ~ 0 is identity


class SPADEResBlock(nn.Module):
    """SPADE residual block (thesis Fig. 2.11; digest section 2.1).

    Main branch: ``SPADE -> LeakyReLU(0.2) -> conv3x3(fin -> fmid) -> SPADE -> LeakyReLU(0.2) -> conv3x3(fmid ->
    fout)`` with ``fmid = min(fin, fout)``. Shortcut: identity when ``fin == fout``, else the learned
    ``SPADE -> conv1x1(fin -> fout, no bias)``. The output is the sum. Spectral norm wraps every conv of the
    block (not the SPADE convs).

    Args:
        in_channels: ``fin``.
        out_channels: ``fout``.
        label_channels: one-hot label channels ``L``.
        hidden_channels, kernel_size, param_free_norm: passed to each :class:`SPADENorm`.
        spectral: spectral norm on the block's convs (default ``True``, as the code's ``spectralspade...``).

    Example:
        >>> blk = SPADEResBlock(8, 4, 3, hidden_channels=8)
        >>> blk(torch.randn(2, 8, 4, 4), torch.ones(2, 3, 4, 4)).shape, blk.learned_shortcut
        (torch.Size([2, 4, 4, 4]), True)
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        label_channels: int,
        *,
        hidden_channels: int = 128,
        kernel_size: int = 3,
        param_free_norm: str = ParamFreeNorm.BATCH,
        spectral: bool = True,
    ) -> None:
        super().__init__()
        _check_positive_int("in_channels", in_channels)
        _check_positive_int("out_channels", out_channels)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.learned_shortcut = in_channels != out_channels
        mid = min(in_channels, out_channels)
        spade: dict[str, Any] = {
            "hidden_channels": hidden_channels,
            "kernel_size": kernel_size,
            "param_free_norm": param_free_norm,
        }
        wrap = spectral_norm if spectral else (lambda module: module)
        self.norm_0 = SPADENorm(in_channels, label_channels, **spade)
        self.conv_0 = wrap(nn.Conv2d(in_channels, mid, 3, padding=1))
        self.norm_1 = SPADENorm(mid, label_channels, **spade)
        self.conv_1 = wrap(nn.Conv2d(mid, out_channels, 3, padding=1))
        if self.learned_shortcut:
            self.norm_s = SPADENorm(in_channels, label_channels, **spade)
            self.conv_s = wrap(nn.Conv2d(in_channels, out_channels, 1, bias=False))

    def forward(self, x: torch.Tensor, segmap: torch.Tensor) -> torch.Tensor:
        """``(B, fin, H, W)``, one-hot ``(B, L, H', W')`` -> ``(B, fout, H, W)``."""
        shortcut = self.conv_s(self.norm_s(x, segmap)) if self.learned_shortcut else x
        dx = self.conv_0(F.leaky_relu(self.norm_0(x, segmap), _LRELU_SLOPE))
        dx = self.conv_1(F.leaky_relu(self.norm_1(dx, segmap), _LRELU_SLOPE))
        return shortcut + dx


def _official_layout(nf: int, mode: SPADEUpsampling) -> list[tuple[int, bool]]:
    """(out channels, upsample before) of head_0, G_middle_0/1, up_0..up_3 (up_4): thesis Fig. 2.12."""
    layout = [(16 * nf, False), (16 * nf, True), (16 * nf, mode != SPADEUpsampling.NORMAL)]
    layout += [(8 * nf, True), (4 * nf, True), (2 * nf, True), (nf, True)]
    if mode == SPADEUpsampling.MOST:
        layout.append((max(nf // 2, 1), True))
    return layout


class SPADEGenerator(nn.Module):
    """Decoder-only SPADE generator (thesis Fig. 2.12; digest section 2.1 table).

    The label map enters every normalisation layer; nothing is encoded from it. The input at the start
    resolution ``(sh, sw)`` is either ``conv3x3(label map resized (nearest) to (sh, sw))`` (``use_vae=False``) or
    ``Linear(z_dim -> C0 * sh * sw)(z)`` (``use_vae=True``; ``z`` from the style encoder or ``N(0, I)``). Then
    SPADE-ResBlks with nearest x2 upsampling, ``LeakyReLU(0.2) -> conv3x3 -> tanh``.

    Layouts:
        * official (``num_upsampling_layers`` ``"normal"``/``"more"``/``"most"``): blocks head_0 (16nf),
          G_middle_0 (16nf), G_middle_1 (16nf), up_0..up_3 (8nf, 4nf, 2nf, nf), plus up_4 (nf/2) in ``"most"``;
          5/6/7 upsamplings (``"more"`` adds one before G_middle_1). ``nf=64``: 96M parameters for 151 classes.
        * compact chain (``channel_mults`` given): block ``i`` has ``channel_mults[i] * nf`` channels and every
          block after the first upsamples first; e.g. the digest's tiny CPU model (section 2.6): ``nf=16,
          channel_mults=(4, 2, 1, 1)``, 4x4 -> 32x32.

    As in the code, ``sw = crop_size // 2**n_up`` and ``sh = round(sw / aspect_ratio)``; the output is
    ``(sh * 2**n_up, sw * 2**n_up)`` (Cityscapes: crop 512, aspect 2, ``"more"`` -> 256x512). Without the VAE the
    generator is fully convolutional: the start size is taken from the label map (its size must be divisible by
    ``2**n_up``), so slices of another size can be translated; with the VAE the fixed ``Linear`` needs the
    configured size.

    Args:
        label_channels: one-hot label channels ``L``.
        out_channels: image channels (3 for photos, 1 for an MR slice).
        nf: base width (64).
        crop_size: training image width.
        aspect_ratio: width / height (1.0).
        num_upsampling_layers: official layout (default ``"normal"`` when ``channel_mults`` is not given).
        channel_mults: compact chain layout instead (mutually exclusive with ``num_upsampling_layers``).
        use_vae: start from ``z`` through a ``Linear`` instead of the downsampled label map.
        z_dim: latent size (256).
        hidden_channels, kernel_size, param_free_norm: SPADE block settings (128, 3, ``"batch"``).
        spectral: spectral norm on the ResBlk convs (default ``True``).

    Example:
        >>> g = SPADEGenerator(3, 1, nf=4, crop_size=16, channel_mults=(2, 1, 1), hidden_channels=8)
        >>> g(torch.ones(2, 3, 16, 16)).shape
        torch.Size([2, 1, 16, 16])
    """

    def __init__(
        self,
        label_channels: int,
        out_channels: int,
        *,
        nf: int = 64,
        crop_size: int = 256,
        aspect_ratio: float = 1.0,
        num_upsampling_layers: str | None = None,
        channel_mults: Sequence[int] | None = None,
        use_vae: bool = False,
        z_dim: int = 256,
        hidden_channels: int = 128,
        kernel_size: int = 3,
        param_free_norm: str = ParamFreeNorm.BATCH,
        spectral: bool = True,
    ) -> None:
        super().__init__()
        _check_positive_int("label_channels", label_channels)
        _check_positive_int("out_channels", out_channels)
        _check_positive_int("nf", nf)
        _check_positive_int("crop_size", crop_size)
        _check_positive_int("z_dim", z_dim)
        if not (isinstance(aspect_ratio, (int, float)) and math.isfinite(aspect_ratio) and aspect_ratio > 0):
            raise ValueError(f"aspect_ratio={aspect_ratio!r} must be a positive finite number (width / height)")
        if channel_mults is not None and num_upsampling_layers is not None:
            raise ValueError(
                f"give either num_upsampling_layers={num_upsampling_layers!r} (official layout) or "
                f"channel_mults={tuple(channel_mults)!r} (compact chain), not both"
            )
        if channel_mults is not None:
            mults = tuple(channel_mults)
            if len(mults) < 2 or any(isinstance(m, bool) or not isinstance(m, int) or m < 1 for m in mults):
                raise ValueError(f"channel_mults={mults!r} must hold at least 2 positive integers")
            layout = [(m * nf, i > 0) for i, m in enumerate(mults)]
            self.layout_name = f"compact{mults}"
        else:
            mode = look_up_option(num_upsampling_layers or SPADEUpsampling.NORMAL, SPADEUpsampling)
            layout = _official_layout(nf, SPADEUpsampling(mode))
            self.layout_name = str(mode)
        self.n_up = sum(up for _, up in layout)
        if crop_size % 2**self.n_up != 0:
            raise ValueError(
                f"crop_size={crop_size} must be divisible by 2**{self.n_up} (the {self.layout_name} layout "
                f"upsamples {self.n_up} times)"
            )
        self.sw = crop_size // 2**self.n_up
        self.sh = round(self.sw / aspect_ratio)
        if self.sh < 1:
            raise ValueError(f"aspect_ratio={aspect_ratio} leaves a start height of 0 for crop_size={crop_size}")
        self.label_channels = label_channels
        self.out_channels = out_channels
        self.use_vae = use_vae
        self.z_dim = z_dim
        start = layout[0][0]
        if use_vae:
            self.fc: nn.Module = nn.Linear(z_dim, start * self.sh * self.sw)
        else:
            self.fc = nn.Conv2d(label_channels, start, 3, padding=1)
        spade: dict[str, Any] = {
            "hidden_channels": hidden_channels,
            "kernel_size": kernel_size,
            "param_free_norm": param_free_norm,
            "spectral": spectral,
        }
        blocks, upsample_before, fin = [], [], start
        for fout, up in layout:
            blocks.append(SPADEResBlock(fin, fout, label_channels, **spade))
            upsample_before.append(up)
            fin = fout
        self.blocks = nn.ModuleList(blocks)
        self.upsample_before = tuple(upsample_before)
        self.conv_img = nn.Conv2d(fin, out_channels, 3, padding=1)

    @property
    def output_size(self) -> tuple[int, int]:
        """``(H, W)`` of the images the configured crop gives (and the only size the VAE path produces)."""
        return self.sh * 2**self.n_up, self.sw * 2**self.n_up

    def forward(self, segmap: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        """One-hot ``segmap`` ``(B, L, H, W)`` (+ ``z`` ``(B, z_dim)`` with the VAE) -> image ``(B, C, H, W)``.

        With ``use_vae`` and ``z=None``, ``z ~ N(0, I)`` (multimodal sampling).
        """
        if segmap.ndim != 4 or segmap.shape[1] != self.label_channels:
            raise ValueError(f"expected a one-hot segmap (B, {self.label_channels}, H, W), got {tuple(segmap.shape)}")
        height, width = segmap.shape[2:]
        if self.use_vae:
            if (height, width) != self.output_size:
                raise Medi2iInputError(
                    "with the VAE the generator only produces its configured size; resize the label map",
                    field="label",
                    found=(height, width),
                    expected=self.output_size,
                )
            if z is None:
                z = torch.randn(segmap.shape[0], self.z_dim, device=segmap.device, dtype=segmap.dtype)
            if z.shape != (segmap.shape[0], self.z_dim):
                raise ValueError(f"expected z of shape ({segmap.shape[0]}, {self.z_dim}), got {tuple(z.shape)}")
            x = self.fc(z).view(segmap.shape[0], -1, self.sh, self.sw)
        else:
            if z is not None:
                raise ValueError("z was given but use_vae=False; build the generator with use_vae=True")
            factor = 2**self.n_up
            if height % factor or width % factor:
                raise Medi2iInputError(
                    f"the label map size must be divisible by 2**{self.n_up} = {factor} for this generator",
                    field="label",
                    found=(height, width),
                    expected=f"multiples of {factor}",
                )
            x = self.fc(F.interpolate(segmap, size=(height // factor, width // factor), mode="nearest"))
        for block, up in zip(self.blocks, self.upsample_before, strict=True):
            if up:
                x = F.interpolate(x, scale_factor=2.0, mode="nearest")
            x = block(x, segmap)
        return torch.tanh(self.conv_img(F.leaky_relu(x, _LRELU_SLOPE)))


class SPADEStyleEncoder(nn.Module):
    """VAE image (style) encoder (thesis Fig. 2.14; digest section 2.1).

    The image is resized (bilinear) to ``input_size`` squared, then ``n = log2(input_size / 4)`` stride-2
    conv3x3 layers with ``min(ndf * 2**i, 8 * ndf)`` channels (64-128-256-512-512-512 at 256 px), each
    ``spectral norm + InstanceNorm (no affine, conv without bias) + LeakyReLU(0.2)``, give ``4 x 4 x 8ndf`` (or
    less), and two ``Linear`` layers give ``mu`` and ``logvar`` ``(B, z_dim)``.

    Args:
        in_channels: image channels.
        ndf: base width (64).
        z_dim: latent size (256).
        input_size: square size the image is resized to (256 in the code; a power of two >= 8).
        spectral: spectral norm on the convs (default ``True``).

    Example:
        >>> enc = SPADEStyleEncoder(1, ndf=4, z_dim=8, input_size=16)
        >>> [t.shape for t in enc(torch.zeros(2, 1, 24, 24))]
        [torch.Size([2, 8]), torch.Size([2, 8])]
    """

    def __init__(
        self, in_channels: int, *, ndf: int = 64, z_dim: int = 256, input_size: int = 256, spectral: bool = True
    ) -> None:
        super().__init__()
        _check_positive_int("in_channels", in_channels)
        _check_positive_int("ndf", ndf)
        _check_positive_int("z_dim", z_dim)
        if isinstance(input_size, bool) or not isinstance(input_size, int) or input_size < 8:
            raise ValueError(f"input_size={input_size!r} must be a power of two >= 8")
        if input_size & (input_size - 1):
            raise ValueError(f"input_size={input_size} must be a power of two (it is halved down to 4)")
        self.in_channels = in_channels
        self.input_size = input_size
        self.z_dim = z_dim
        wrap = spectral_norm if spectral else (lambda module: module)
        layers: list[nn.Module] = []
        fin = in_channels
        for i in range(int(math.log2(input_size // 4))):
            fout = min(ndf * 2**i, 8 * ndf)
            layers += [
                wrap(nn.Conv2d(fin, fout, 3, stride=2, padding=1, bias=False)),
                nn.InstanceNorm2d(fout, affine=False),
                nn.LeakyReLU(_LRELU_SLOPE),
            ]
            fin = fout
        self.convs = nn.Sequential(*layers)
        self.fc_mu = nn.Linear(fin * 16, z_dim)
        self.fc_var = nn.Linear(fin * 16, z_dim)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Image ``(B, C, H, W)`` in ``[-1, 1]`` -> ``(mu, logvar)``, each ``(B, z_dim)``."""
        if image.ndim != 4 or image.shape[1] != self.in_channels:
            raise ValueError(f"expected an image (B, {self.in_channels}, H, W), got {tuple(image.shape)}")
        if tuple(image.shape[2:]) != (self.input_size, self.input_size):
            image = F.interpolate(image, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False)
        features = self.convs(image).flatten(1)
        return self.fc_mu(features), self.fc_var(features)
