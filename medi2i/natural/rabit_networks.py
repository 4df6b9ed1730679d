"""RABIT networks: semantic position encoding, the two feature extractors, CONFI and the SPADE-like generator.

Zhan et al., "Bi-level Feature Alignment for Versatile Image Translation and Manipulation" (RABIT), sections
3.1-3.3; research digest ``dtp_rabit_nst.md`` sections 2.2, 2.6 and 2.8 (RABIT-lite sizes). Written from the
paper and the digest; nothing is copied from the official code.

Data flow of :class:`RabitTranslator` (shapes for an image ``(B, C, H, W)`` and ``n_downsampling = d``,
correspondence grid ``h = H / 2^d``):

1. ``F_X(one-hot label ‖ SPE)`` -> domain features ``(B, Cf, h, w)`` and correlation features ``(B, Cc, h, w)``;
   ``F_Z(exemplar ‖ SPE of the exemplar label)`` likewise (separate weights, section 3.1).
2. :func:`~medi2i.natural.rabit_attention.bi_level_attention` (RAS / reference / dense) warps the exemplar
   RGB (avg-pooled to ``h``), its domain features and its one-hot map onto the input grid, and gives CMAP.
3. CONFI (:class:`ConfidenceFeatureInjection`, section 3.3): ``F = X (1 - CMAP) + TZ * CMAP``, convs -> a
   ``Cf``-channel Multi-CMAP ``M``, fused ``X (1 - M) + TZ * M``.
4. :class:`RabitGenerator`: SPADE residual blocks from ``H / 2^n_up`` to ``H``, each conditioned on
   ``[fused features ‖ warped RGB ‖ one-hot label]`` (resized inside the SPADE norms), tanh output.

Decisions (digest section 4, items 6 and 7): SPE follows the paper (2 channels, origin at the region centroid,
each axis scaled to ``[-1, 1]`` by the region's largest offset; one region per class id, as the code does), with
global CoordConv ``(x, y)`` as the fallback when no exemplar label map exists (edges, keypoints). CONFI uses the
paper's Multi-CMAP; the released single-channel version is the first fusion alone.
The SPADE residual block is :class:`medi2i.natural.spade_networks.SPADEResBlock` (shared with SPADE).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from monai.utils import StrEnum, look_up_option
from torch import nn

from medi2i.natural.rabit_attention import AttentionMode, AttentionResult, SinkhornGradient, bi_level_attention
from medi2i.natural.spade_networks import SPADEResBlock

__all__ = [
    "ConfidenceFeatureInjection",
    "PositionEncoding",
    "RabitFeatureExtractor",
    "RabitGenerator",
    "RabitOutput",
    "RabitTranslator",
    "global_position_encoding",
    "semantic_position_encoding",
]

_SLOPE = 0.2


class PositionEncoding(StrEnum):
    """Coordinates concatenated to the correlation features: paper SPE, global CoordConv, or none."""

    SEMANTIC = "semantic"
    GLOBAL = "global"
    NONE = "none"


def _grid(height: int, width: int, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """``(y, x)`` coordinate maps ``(H, W)`` spanning ``[-1, 1]`` (0 along an axis of length 1)."""

    def axis(n: int) -> torch.Tensor:
        return (
            torch.linspace(-1.0, 1.0, n, device=device, dtype=dtype)
            if n > 1
            else torch.zeros(1, device=device, dtype=dtype)
        )

    return axis(height).view(height, 1).expand(height, width), axis(width).view(1, width).expand(height, width)


def global_position_encoding(
    batch: int, height: int, width: int, *, device: torch.device | None = None, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """CoordConv coordinates: ``(B, 2, H, W)`` with ``x`` then ``y`` spanning ``[-1, 1]`` over the whole image."""
    y, x = _grid(height, width, torch.device("cpu") if device is None else device, dtype)
    return torch.stack((x, y)).unsqueeze(0).expand(batch, 2, height, width).contiguous()


def semantic_position_encoding(masks: torch.Tensor) -> torch.Tensor:
    """Semantic position encoding (RABIT section 3.1, Fig. 3): one coordinate system per semantic region.

    For region ``r`` (the pixels of one class) with centroid ``(cx_r, cy_r)`` the encoding at pixel ``(x, y)`` in
    ``r`` is ``((x - cx_r) / max_r |x - cx_r|, (y - cy_r) / max_r |y - cy_r|)``: zero mean inside the region,
    values in ``[-1, 1]``, unchanged when the region is translated. Regions of one pixel (or one row/column)
    get 0 on the degenerate axis. Background is a region like any other class; empty classes contribute nothing.

    Args:
        masks: ``(B, K, H, W)`` one-hot (or binary) region masks, e.g. from
            :func:`~medi2i.natural.spade_networks.one_hot_labels`.

    Returns:
        ``(B, 2, H, W)`` the ``(x, y)`` encoding.

    Example:
        >>> m = torch.zeros(1, 2, 1, 5); m[0, 0, 0, :2] = 1; m[0, 1, 0, 2:] = 1
        >>> semantic_position_encoding(m)[0, 0, 0].tolist()
        [-1.0, 1.0, -1.0, 0.0, 1.0]
    """
    if masks.ndim != 4 or not masks.is_floating_point():
        raise ValueError(f"expected float region masks (B, K, H, W), got {tuple(masks.shape)} {masks.dtype}")
    _, _, h, w = masks.shape
    y, x = _grid(h, w, masks.device, masks.dtype)
    count = masks.sum((2, 3), keepdim=True)  # (B, K, 1, 1)
    out = []
    for coord in (x, y):
        centre = (masks * coord).sum((2, 3), keepdim=True) / count.clamp_min(1.0)
        offset = (coord - centre) * masks  # (B, K, H, W), zero outside the region
        scale = offset.abs().amax((2, 3), keepdim=True)
        safe = torch.where(scale > 1e-6, scale, torch.ones_like(scale))
        out.append((offset / safe).sum(1))  # regions are disjoint: the sum picks each pixel's own region
    return torch.stack(out, dim=1)


def _conv_block(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1),
        nn.InstanceNorm2d(cout, affine=True),
        nn.LeakyReLU(_SLOPE, inplace=True),
    )


class RabitFeatureExtractor(nn.Module):
    """``F_X`` / ``F_Z`` (section 3.1): a conv encoder to the correspondence grid plus a correlation head.

    ``conv3x3(in -> ndf)``, then ``n_downsampling`` stride-2 convs doubling the width, then one conv3x3 (the
    *domain features*, used by ``L_cst``, CONFI and the generator). The correlation head concatenates the
    L2-normalised domain features with the position encoding and maps them to ``corr_channels`` (conv3x3, IN,
    LeakyReLU, conv1x1), the code's "features + coordinates -> 1x1 projection" in small.

    Args:
        in_channels: ``num_classes`` for ``F_X`` (one-hot labels), image channels for ``F_Z``.
        ndf: first width (RABIT-lite: 16). n_downsampling: stride-2 convs (grid ``H / 2^n``).
        corr_channels: correlation feature width (lite: 32; code: 256). pos_channels: position channels (2 or 0).

    Example:
        >>> f = RabitFeatureExtractor(3, ndf=4, corr_channels=8)
        >>> [tuple(t.shape) for t in f(torch.zeros(1, 3, 16, 16), torch.zeros(1, 2, 8, 8))]
        [(1, 8, 8, 8), (1, 8, 8, 8)]
    """

    def __init__(
        self,
        in_channels: int,
        *,
        ndf: int = 16,
        n_downsampling: int = 1,
        corr_channels: int = 32,
        pos_channels: int = 2,
    ) -> None:
        super().__init__()
        for name, value, low in (
            ("in_channels", in_channels, 1),
            ("ndf", ndf, 1),
            ("n_downsampling", n_downsampling, 0),
            ("corr_channels", corr_channels, 1),
            ("pos_channels", pos_channels, 0),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name}={value!r} must be an integer >= {low}")
        layers = [_conv_block(in_channels, ndf)]
        ch = ndf
        for _ in range(n_downsampling):
            layers.append(_conv_block(ch, ch * 2, stride=2))
            ch *= 2
        layers.append(_conv_block(ch, ch))
        self.encoder = nn.Sequential(*layers)
        self.in_channels = in_channels
        self.feature_channels = ch
        self.pos_channels = pos_channels
        self.head = nn.Sequential(_conv_block(ch + pos_channels, ch), nn.Conv2d(ch, corr_channels, 1))

    def forward(self, x: torch.Tensor, pos: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` ``(B, in, H, W)``, ``pos`` ``(B, P, h, w)`` -> (domain ``(B, Cf, h, w)``, corr ``(B, Cc, h, w)``)."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected input (B, {self.in_channels}, H, W), got {tuple(x.shape)}")
        feat = self.encoder(x)
        parts = [F.normalize(feat, dim=1)]
        if self.pos_channels:
            if pos is None or pos.shape != (feat.shape[0], self.pos_channels, *feat.shape[2:]):
                found = None if pos is None else tuple(pos.shape)
                raise ValueError(
                    f"expected pos of shape {(feat.shape[0], self.pos_channels, *feat.shape[2:])}, got {found}"
                )
            parts.append(pos)
        return feat, self.head(torch.cat(parts, dim=1))


class ConfidenceFeatureInjection(nn.Module):
    """CONFI (section 3.3, Fig. 6): confidence-weighted fusion of input features and the warped exemplar.

    ``F = X * (1 - CMAP) + TZ * CMAP`` with the ``(B, 1, h, w)`` CMAP; ``M = sigmoid(conv(LReLU(conv(F))))`` is
    the ``(B, C, h, w)`` Multi-CMAP; the output is ``X * (1 - M) + TZ * M`` (channel-wise).

    Args:
        channels: ``C``. multi_channel: ``False`` returns the single-channel fusion ``F`` (the released code).

    Example:
        >>> confi = ConfidenceFeatureInjection(4)
        >>> fused, m = confi(torch.zeros(1, 4, 2, 2), torch.ones(1, 4, 2, 2), torch.full((1, 1, 2, 2), 0.5))
        >>> fused.shape, bool(((m > 0) & (m < 1)).all())
        (torch.Size([1, 4, 2, 2]), True)
    """

    def __init__(self, channels: int, *, multi_channel: bool = True) -> None:
        super().__init__()
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
            raise ValueError(f"channels={channels!r} must be a positive integer")
        self.channels = channels
        self.multi_channel = multi_channel
        self.mcmap = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.LeakyReLU(_SLOPE, inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1),
        )

    def forward(
        self, cond: torch.Tensor, warped: torch.Tensor, cmap: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``cond``, ``warped`` ``(B, C, h, w)``, ``cmap`` ``(B, 1, h, w)`` -> (fused, Multi-CMAP or CMAP)."""
        if cond.shape != warped.shape or cond.shape[1] != self.channels:
            raise ValueError(
                f"cond {tuple(cond.shape)} and warped {tuple(warped.shape)} must be (B, {self.channels}, h, w)"
            )
        if cmap.shape != (cond.shape[0], 1, *cond.shape[2:]):
            raise ValueError(f"expected cmap of shape {(cond.shape[0], 1, *cond.shape[2:])}, got {tuple(cmap.shape)}")
        first = cond * (1.0 - cmap) + warped * cmap
        if not self.multi_channel:
            return first, cmap
        multi = torch.sigmoid(self.mcmap(first))
        return cond * (1.0 - multi) + warped * multi, multi


class RabitGenerator(nn.Module):
    """SPADE-like generation network (section 3.3; digest 2.2 SEACEGenerator, scaled by ``ngf``/``n_up``).

    ``conv3x3(head_channels -> c_0)`` at ``H / 2^n_up``, a SPADE residual block, then ``n_up`` times: nearest
    x2 upsampling and a SPADE residual block ``c_i -> c_{i+1}``; ``c_i = ngf * min(2^(n_up - i), max_mult)``.
    Output: LeakyReLU, conv3x3 to ``out_channels``, tanh. Every block is conditioned on ``cond`` (any size).
    No self-attention (the code's BigGAN block at 64^2 is left out of the lite design, digest 2.8).

    Args:
        head_channels: channels of the low-resolution input. cond_channels: channels of the SPADE condition.
        out_channels: image channels. ngf, n_up, max_mult: widths and depth (lite: 16, 3, 2 -> 32, 32, 32, 16).
        spade_hidden: SPADE hidden width (lite 32; code 128). param_free_norm: ``"instance"`` or ``"batch"``.
        spectral: spectral norm in the residual blocks (code: yes).
    """

    def __init__(
        self,
        head_channels: int,
        cond_channels: int,
        out_channels: int = 3,
        *,
        ngf: int = 16,
        n_up: int = 3,
        max_mult: int = 2,
        spade_hidden: int = 32,
        param_free_norm: str = "instance",
        spectral: bool = True,
    ) -> None:
        super().__init__()
        for name, value, low in (
            ("head_channels", head_channels, 1),
            ("cond_channels", cond_channels, 1),
            ("out_channels", out_channels, 1),
            ("ngf", ngf, 1),
            ("n_up", n_up, 0),
            ("max_mult", max_mult, 1),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name}={value!r} must be an integer >= {low}")
        chans = [ngf * min(2 ** (n_up - i), max_mult) for i in range(n_up + 1)]
        kw = {"hidden_channels": spade_hidden, "param_free_norm": param_free_norm, "spectral": spectral}
        self.n_up = n_up
        self.head_channels = head_channels
        self.cond_channels = cond_channels
        self.fc = nn.Conv2d(head_channels, chans[0], 3, padding=1)
        self.head = SPADEResBlock(chans[0], chans[0], cond_channels, **kw)
        self.ups = nn.ModuleList(SPADEResBlock(chans[i], chans[i + 1], cond_channels, **kw) for i in range(n_up))
        self.out = nn.Conv2d(chans[-1], out_channels, 3, padding=1)

    def forward(self, head: torch.Tensor, cond: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """``head`` ``(B, head_channels, *, *)`` (resized to ``size / 2^n_up``), ``cond`` ``(B, cond_channels, *)``."""
        h, w = size
        if h % 2**self.n_up or w % 2**self.n_up:
            raise ValueError(f"image size {size} must be divisible by 2**n_up = {2**self.n_up}")
        if min(h, w) >> self.n_up < 2:  # the first block's instance norm needs more than one pixel
            raise ValueError(f"image size {size} is too small for n_up={self.n_up}: at least {2 ** (self.n_up + 1)} px")
        x = F.interpolate(head, size=(h >> self.n_up, w >> self.n_up), mode="bilinear", align_corners=False)
        x = self.head(self.fc(x), cond)
        for block in self.ups:
            x = block(F.interpolate(x, scale_factor=2, mode="nearest"), cond)
        return torch.tanh(self.out(F.leaky_relu(x, _SLOPE)))


class RabitOutput(NamedTuple):
    """Everything one RABIT forward pass produces (shapes for images ``(B, C, H, W)``, grid ``(h, w)``).

    Attributes:
        image: ``(B, C, H, W)`` generated image in ``[-1, 1]``.
        warped_image: ``(B, C, h, w)`` exemplar RGB warped onto the input grid.
        warped_label: ``(B, K, h, w)`` exemplar one-hot warped (soft), for the warp-mask loss.
        warped_features: ``(B, Cf, h, w)`` exemplar domain features warped.
        features_x: ``(B, Cf, h, w)`` ``F_X`` domain features. corr_x, corr_z: ``(B, Cc, h, w)`` correlation features.
        confidence: ``(B, 1, h, w)`` CMAP (upsampled from the block grid). multi_cmap: ``(B, Cf, h, w)``.
        attention: the raw :class:`~medi2i.natural.rabit_attention.AttentionResult`.
    """

    image: torch.Tensor
    warped_image: torch.Tensor
    warped_label: torch.Tensor
    warped_features: torch.Tensor
    features_x: torch.Tensor
    corr_x: torch.Tensor
    corr_z: torch.Tensor
    confidence: torch.Tensor
    multi_cmap: torch.Tensor
    attention: AttentionResult


class RabitTranslator(nn.Module):
    """The whole RABIT generator side: ``F_X``, ``F_Z``, bi-level alignment, CONFI and the generator.

    Args:
        num_classes: classes ``K`` of the label maps. image_channels: ``C`` (3 RGB, 1 grey slices).
        ndf, n_downsampling, corr_channels: feature extractors (lite: 16, 1, 32 -> a 32^2 grid for 64^2 images).
        position_encoding: ``"semantic"`` (paper SPE), ``"global"`` (CoordConv) or ``"none"``.
        attention_mode, block, k, epsilon, n_iters, sinkhorn_gradient, temperature, rank_temperature: see
            :func:`~medi2i.natural.rabit_attention.bi_level_attention` (paper: ``"ras"``, 2x2, k = 3).
        multi_cmap: CONFI's Multi-CMAP (paper) or the single-channel fusion (code).
        ngf, n_up, max_mult, spade_hidden, param_free_norm, spectral: :class:`RabitGenerator`.
    """

    def __init__(
        self,
        num_classes: int,
        image_channels: int = 3,
        *,
        ndf: int = 16,
        n_downsampling: int = 1,
        corr_channels: int = 32,
        position_encoding: str = PositionEncoding.SEMANTIC,
        attention_mode: str = AttentionMode.RAS,
        block: tuple[int, int] = (2, 2),
        k: int = 3,
        epsilon: float = 0.05,
        n_iters: int = 20,
        sinkhorn_gradient: str = SinkhornGradient.IMPLICIT,
        temperature: float = 0.01,
        rank_temperature: float = 0.01,
        multi_cmap: bool = True,
        ngf: int = 16,
        n_up: int = 3,
        max_mult: int = 2,
        spade_hidden: int = 32,
        param_free_norm: str = "instance",
        spectral: bool = True,
    ) -> None:
        super().__init__()
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes={num_classes!r} must be a positive integer")
        if image_channels not in (1, 3):
            raise ValueError(f"image_channels={image_channels!r} must be 1 or 3")
        self.position_encoding = PositionEncoding(look_up_option(position_encoding, PositionEncoding))
        self.attention_mode = AttentionMode(look_up_option(attention_mode, AttentionMode))
        self.sinkhorn_gradient = SinkhornGradient(look_up_option(sinkhorn_gradient, SinkhornGradient))
        self.block = (block, block) if isinstance(block, int) else tuple(block)
        if self.attention_mode == AttentionMode.RAS and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
            raise ValueError(f"k={k!r} must be an integer >= 1")
        self.attention_kwargs = {
            "mode": self.attention_mode,
            "block": self.block,
            "k": k,
            "epsilon": epsilon,
            "n_iters": n_iters,
            "gradient": self.sinkhorn_gradient,
            "temperature": temperature,
            "rank_temperature": rank_temperature,
        }
        self.num_classes = num_classes
        self.image_channels = image_channels
        self.n_downsampling = n_downsampling
        pos = 0 if self.position_encoding == PositionEncoding.NONE else 2
        kw = {"ndf": ndf, "n_downsampling": n_downsampling, "corr_channels": corr_channels, "pos_channels": pos}
        self.f_x = RabitFeatureExtractor(num_classes, **kw)
        self.f_z = RabitFeatureExtractor(image_channels, **kw)
        cf = self.f_x.feature_channels
        self.confi = ConfidenceFeatureInjection(cf, multi_channel=multi_cmap)
        self.generator = RabitGenerator(
            2 * cf,
            cf + image_channels + num_classes,
            image_channels,
            ngf=ngf,
            n_up=n_up,
            max_mult=max_mult,
            spade_hidden=spade_hidden,
            param_free_norm=param_free_norm,
            spectral=spectral,
        )

    def grid_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """Correspondence grid ``(h, w)`` for an image size ``(H, W)``."""
        return size[0] >> self.n_downsampling, size[1] >> self.n_downsampling

    def positions(self, onehot: torch.Tensor | None, batch: int, size: tuple[int, int], device, dtype) -> torch.Tensor:
        """``(B, 2, h, w)`` position encoding on the grid; ``onehot=None`` falls back to global coordinates."""
        h, w = size
        if self.position_encoding == PositionEncoding.NONE:
            return torch.zeros(batch, 0, h, w, device=device, dtype=dtype)
        if self.position_encoding == PositionEncoding.GLOBAL or onehot is None:
            return global_position_encoding(batch, h, w, device=device, dtype=dtype)
        return semantic_position_encoding(F.interpolate(onehot, size=(h, w), mode="nearest"))

    def encode_input(self, onehot: torch.Tensor, pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``F_X`` on a one-hot label ``(B, K, H, W)`` -> (domain, correlation) features on the grid."""
        return self.f_x(onehot, pos)

    def encode_exemplar(self, image: torch.Tensor, pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``F_Z`` on an image ``(B, C, H, W)`` -> (domain, correlation) features on the grid."""
        return self.f_z(image, pos)

    def align(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> AttentionResult:
        """Warp ``value`` (on the key grid) onto the query grid with this model's attention settings."""
        return bi_level_attention(query, key, value, **self.attention_kwargs)

    def forward(
        self, onehot: torch.Tensor, exemplar: torch.Tensor, exemplar_onehot: torch.Tensor | None = None
    ) -> RabitOutput:
        """Translate a one-hot label map ``(B, K, H, W)`` with an exemplar ``(B, C, H, W)`` (and its one-hot map).

        Without ``exemplar_onehot`` the semantic position encoding falls back to global coordinates on both
        sides, and the warped label is zeros.
        """
        if onehot.ndim != 4 or onehot.shape[1] != self.num_classes:
            raise ValueError(f"expected a one-hot label (B, {self.num_classes}, H, W), got {tuple(onehot.shape)}")
        if exemplar.ndim != 4 or exemplar.shape[1] != self.image_channels or exemplar.shape[2:] != onehot.shape[2:]:
            raise ValueError(
                f"expected an exemplar (B, {self.image_channels}, {onehot.shape[2]}, {onehot.shape[3]}), "
                f"got {tuple(exemplar.shape)}"
            )
        if exemplar_onehot is not None and exemplar_onehot.shape != onehot.shape:
            raise ValueError(f"exemplar one-hot {tuple(exemplar_onehot.shape)} must match {tuple(onehot.shape)}")
        size = (onehot.shape[2], onehot.shape[3])
        grid = self.grid_size(size)
        b, dev, dt = onehot.shape[0], onehot.device, exemplar.dtype
        pos_x = self.positions(onehot if exemplar_onehot is not None else None, b, grid, dev, dt)
        pos_z = self.positions(exemplar_onehot, b, grid, dev, dt)
        feat_x, corr_x = self.encode_input(onehot, pos_x)
        feat_z, corr_z = self.encode_exemplar(exemplar, pos_z)
        ex_small = F.adaptive_avg_pool2d(exemplar, grid)
        ex_label = (
            F.adaptive_avg_pool2d(exemplar_onehot, grid)
            if exemplar_onehot is not None
            else exemplar.new_zeros(b, self.num_classes, *grid)
        )
        c, cf = self.image_channels, feat_z.shape[1]
        att = self.align(corr_x, corr_z, torch.cat((ex_small, ex_label, feat_z), dim=1))
        warped_image = att.warped[:, :c]
        warped_label = att.warped[:, c : c + self.num_classes]
        warped_feat = att.warped[:, c + self.num_classes : c + self.num_classes + cf]
        conf = F.interpolate(att.confidence, size=grid, mode="nearest")
        fused, multi = self.confi(feat_x, warped_feat, conf)
        cond = torch.cat(
            (
                F.interpolate(fused, size=size, mode="bilinear", align_corners=False),
                F.interpolate(warped_image, size=size, mode="bilinear", align_corners=False),
                onehot,
            ),
            dim=1,
        )
        image = self.generator(torch.cat((feat_x, warped_feat), dim=1), cond, size)
        return RabitOutput(image, warped_image, warped_label, warped_feat, feat_x, corr_x, corr_z, conf, multi, att)
