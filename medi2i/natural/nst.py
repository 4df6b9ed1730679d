"""Neural style transfer by pixel optimisation (Gatys, Ecker & Bethge, CVPR 2016).

The output image ``x`` (``(1, C, H, W)`` in ``[-1, 1]``, C = 1 or 3) is the variable; a frozen VGG19
(:class:`medi2i.nets.vgg.VGGFeatures`, local weights) gives the features. Research digest
``dtp_rabit_nst.md`` section 3; decisions of its section 4 item 11 are recorded here.

Losses (paper Eqs. 1-5, named layers, never sequential counters):

* content, at ``relu4_2``: ``L_c = mean_ij (F_ij - P_ij)^2`` (``content_reduction="mean"``, default) or the
  paper's ``1/2 sum_ij (F_ij - P_ij)^2`` (``"paper"``); ``F``/``P`` are the ``(N_l, M_l)`` feature maps of the
  output and the content;
* Gram ``G^l = F^l F^l^T`` (``(N_l, N_l)``), normalised (``gram_norm``):

  - ``"chw"`` (default, PyTorch tutorial): ``G / (N_l M_l)``, layer loss = mean of ``(G - A)^2``;
  - ``"hw"`` (Gatys' own code): ``G / M_l``, layer loss = mean of ``(G - A)^2`` (pair it with layer
    weights ``1e3 / N_l^2`` as his code does);
  - ``"paper"``: ``E_l = 1 / (4 N_l^2 M_l^2) sum_ij (G_ij - A_ij)^2`` with raw Grams, computed as
    ``sum_ij (g - a)^2 / (4 N_l^2)`` with ``g = G / M_l``, which is the same number when output and style
    have the same size and stays defined when they do not;
* style ``L_s = sum_l w_l E_l`` over ``relu1_1 .. relu5_1``, ``w_l = 1/5``; total
  ``alpha L_c + beta L_s (+ tv_weight * TV)``.

Style targets: one style image, or a collection (a list of images, any sizes): the target Gram of a layer
is then the mean of the images' normalised Grams (Gram normalisation makes them size-independent).

Optimisers: L-BFGS (paper; ``steps`` calls of ``optimizer.step`` with ``lbfgs_max_iter`` iterations each; the
report counts closure evaluations) or Adam (``steps`` updates). L-BFGS uses a strong-Wolfe line search by
default: without it (the PyTorch tutorial's setting, ``line_search=None``) a fixed unit step either does not
move (losses far below 1: PyTorch's L-BFGS skips curvature pairs with ``y.s < 1e-10``) or diverges, depending
on the loss scale, which changes with the weights file, the image size and ``style_weight``. The loss scale
still matters: ``style_weight = 1e6`` suits torchvision VGG19 weights with ``"chw"`` Grams (tutorial scale);
the 1/8-width random VGG of the tests needs about 300 and the full-width random one about 1e5.
The image is clamped to ``[-1, 1]`` before every evaluation (L-BFGS, as in the PyTorch tutorial) or after
every update (Adam).

Decisions (digest section 4 item 11): paper layers with content initialisation and L-BFGS by default;
max pooling by default (torchvision's VGG19 was trained with it; ``pooling="avg"`` gives the paper's
choice); the tutorial's layer set is not offered (its ``conv_4`` is conv2_2, a naming trap); colour
preservation follows Gatys et al. 2016, "Preserving colour in neural artistic style transfer"
(arXiv 1606.05897), both variants: ``colour="luminance"`` (style transfer on the YIQ luminance, with the
style luminance matched to the content's mean and std, then the content's I/Q chroma put back) and
``colour="histogram"`` (the style's colours first mapped linearly so their mean and covariance equal the
content's, Cholesky form ``x' = L_c L_s^{-1} (x - mu_s) + mu_c``).

Medical slices are single-channel: the optimised image stays one channel and is repeated to three
channels for VGG (grey RGB); a 3-channel style is turned into its luminance first. The report carries the
SSIM between the output and the content (luminance, data range 2 on ``[-1, 1]``) to flag anatomy drift.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from monai.utils import StrEnum, look_up_option

from medi2i.nets.vgg import VGGFeatures

__all__ = [
    "CONTENT_LAYER",
    "STYLE_LAYERS",
    "ColourMode",
    "ContentReduction",
    "GramNorm",
    "InitMode",
    "NeuralStyleTransfer",
    "NSTOptimizer",
    "content_loss",
    "gram_matrix",
    "histogram_match_colours",
    "luminance",
    "rgb_to_yiq",
    "ssim_to_content",
    "style_layer_loss",
    "total_variation",
    "yiq_to_rgb",
]

logger = logging.getLogger(__name__)

CONTENT_LAYER = "relu4_2"
STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")

# YIQ (NTSC 1953) on RGB in [0, 1]
_RGB_TO_YIQ = torch.tensor(
    [[0.299, 0.587, 0.114], [0.595716, -0.274453, -0.321263], [0.211456, -0.522591, 0.311135]], dtype=torch.float64
)


class GramNorm(StrEnum):
    """Normalisation of the Gram matrix and the per-layer style loss (see the module docstring)."""

    CHW = "chw"
    HW = "hw"
    PAPER = "paper"


class ContentReduction(StrEnum):
    """Content loss: mean squared error, or the paper's half sum of squares."""

    MEAN = "mean"
    PAPER = "paper"


class NSTOptimizer(StrEnum):
    """Pixel optimiser."""

    LBFGS = "lbfgs"
    ADAM = "adam"


class InitMode(StrEnum):
    """Initial image: the content (common default), white noise (paper) or the resized style."""

    CONTENT = "content"
    NOISE = "noise"
    STYLE = "style"


class ColourMode(StrEnum):
    """Colour preservation (Gatys et al. 2016): none, luminance-only transfer, or colour histogram matching."""

    NONE = "none"
    LUMINANCE = "luminance"
    HISTOGRAM = "histogram"


_DEFAULT_STEPS = {NSTOptimizer.LBFGS: 25, NSTOptimizer.ADAM: 500}
# Adam's step is in pixel units: 0.02 on [0, 1] (digest 3.5) is 0.04 on [-1, 1]
_DEFAULT_LR = {NSTOptimizer.LBFGS: 1.0, NSTOptimizer.ADAM: 0.04}


def gram_matrix(features: torch.Tensor, normalize: str = "chw") -> torch.Tensor:
    """Gram matrix ``G_ij = sum_k F_ik F_jk`` of feature maps ``(B, C, H, W)`` -> ``(B, C, C)``.

    Args:
        features: ``(B, C, H, W)``.
        normalize: ``"none"`` (raw), ``"hw"`` (divide by ``M = H W``) or ``"chw"`` (by ``C H W``).

    Example:
        >>> g = gram_matrix(torch.ones(1, 2, 2, 2), "hw")
        >>> g.tolist()
        [[[1.0, 1.0], [1.0, 1.0]]]
    """
    if features.ndim != 4:
        raise ValueError(f"features must be (B, C, H, W), got shape {tuple(features.shape)}")
    b, c, h, w = features.shape
    flat = features.reshape(b, c, h * w)
    gram = flat @ flat.transpose(1, 2)
    if normalize == "none":
        return gram
    if normalize == "hw":
        return gram / (h * w)
    if normalize == "chw":
        return gram / (c * h * w)
    raise ValueError(f"normalize={normalize!r}; allowed: 'none', 'hw', 'chw'")


def _gram_for(features: torch.Tensor, norm: GramNorm) -> torch.Tensor:
    # the paper mode keeps G / M_l internally (see the module docstring)
    return gram_matrix(features, "chw" if norm == GramNorm.CHW else "hw")


def style_layer_loss(gram: torch.Tensor, target: torch.Tensor, norm: str = GramNorm.CHW) -> torch.Tensor:
    """Style loss of one layer between normalised Grams ``(B, N, N)`` and a target ``(1 or B, N, N)``.

    ``"chw"``/``"hw"``: mean of ``(G - A)^2``; ``"paper"``: ``sum (g - a)^2 / (4 N^2)`` on ``hw``-normalised Grams,
    i.e. the paper's ``E_l = sum (G - A)^2 / (4 N^2 M^2)`` on raw Grams. Averaged over the batch.
    """
    norm = GramNorm(look_up_option(norm, GramNorm))
    diff2 = (gram - target) ** 2
    if norm == GramNorm.PAPER:
        n = gram.shape[-1]
        return (diff2.sum(dim=(-2, -1)) / (4.0 * n * n)).mean()
    return diff2.mean()


def content_loss(features: torch.Tensor, target: torch.Tensor, reduction: str = ContentReduction.MEAN) -> torch.Tensor:
    """Content loss: ``mean (F - P)^2`` or the paper's ``1/2 sum (F - P)^2`` (summed per image, batch-averaged)."""
    reduction = ContentReduction(look_up_option(reduction, ContentReduction))
    diff2 = (features - target) ** 2
    if reduction == ContentReduction.PAPER:
        return 0.5 * diff2.flatten(1).sum(1).mean()
    return diff2.mean()


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Anisotropic total variation ``mean |dx| + mean |dy|`` of ``(B, C, H, W)``."""
    return (x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., :, 1:] - x[..., :, :-1]).abs().mean()


def rgb_to_yiq(x: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` RGB in ``[-1, 1]`` -> YIQ of the ``[0, 1]`` image (Y in [0, 1])."""
    m = _RGB_TO_YIQ.to(device=x.device, dtype=x.dtype)
    return torch.einsum("ij,bjhw->bihw", m, (x + 1.0) / 2.0)


def yiq_to_rgb(yiq: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`rgb_to_yiq` (no clamping): YIQ -> RGB in ``[-1, 1]`` units."""
    m = torch.linalg.inv(_RGB_TO_YIQ).to(device=yiq.device, dtype=yiq.dtype)
    return torch.einsum("ij,bjhw->bihw", m, yiq) * 2.0 - 1.0


def luminance(x: torch.Tensor) -> torch.Tensor:
    """Grey version ``(B, 1, H, W)`` in ``[-1, 1]`` of ``(B, 1 or 3, H, W)`` images (YIQ Y, rescaled)."""
    if x.shape[1] == 1:
        return x
    return rgb_to_yiq(x)[:, :1] * 2.0 - 1.0


def histogram_match_colours(style: torch.Tensor, content: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Map the style's colours linearly so their mean and covariance equal the content's (Cholesky form).

    ``x' = L_c L_s^{-1} (x - mu_s) + mu_c`` with ``Sigma = L L^T`` (Gatys et al. 2016, colour histogram
    matching). Args: ``style`` ``(1, 3, H', W')``, ``content`` ``(1, 3, H, W)``; returns ``(1, 3, H', W')``
    (not clamped, so the moments are exact).
    """

    def moments(img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        flat = img.reshape(3, -1).double()
        mu = flat.mean(1, keepdim=True)
        centred = flat - mu
        cov = centred @ centred.T / flat.shape[1] + eps * torch.eye(3, dtype=torch.float64, device=img.device)
        return mu, cov

    mu_s, cov_s = moments(style)
    mu_c, cov_c = moments(content)
    transform = torch.linalg.cholesky(cov_c) @ torch.linalg.inv(torch.linalg.cholesky(cov_s))
    flat = style.reshape(3, -1).double()
    mapped = transform @ (flat - mu_s) + mu_c
    return mapped.reshape(style.shape).to(style.dtype)


def ssim_to_content(output: torch.Tensor, content: torch.Tensor) -> float:
    """SSIM of the output's luminance against the content's (``medi2i.metrics.intensity.ssim``, 7x7
    uniform window, data range 2 for ``[-1, 1]``); ``nan`` for images smaller than 7 pixels."""
    from medi2i.metrics.intensity import ssim

    a = luminance(output.detach().float().cpu())[0, 0].numpy()
    b = luminance(content.detach().float().cpu())[0, 0].numpy()
    if min(a.shape) < 7:
        return float("nan")
    return float(ssim(a, b, data_range=2.0))


def _as_batch(image: torch.Tensor, name: str) -> torch.Tensor:
    if not isinstance(image, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(image).__name__}")
    if image.ndim == 3:
        image = image.unsqueeze(0)
    if image.ndim != 4 or image.shape[0] != 1 or image.shape[1] not in (1, 3):
        raise ValueError(f"{name} must be (C, H, W) or (1, C, H, W) with C in (1, 3), got {tuple(image.shape)}")
    if not image.is_floating_point() or not torch.isfinite(image).all():
        raise ValueError(f"{name} must be a finite floating-point image in [-1, 1]")
    return image


def _match_channels(style: torch.Tensor, channels: int) -> torch.Tensor:
    if style.shape[1] == channels:
        return style
    if channels == 1:
        return luminance(style)
    return style.expand(-1, 3, -1, -1)


def _matched_luminance(style_lum: torch.Tensor, content_lum: torch.Tensor) -> torch.Tensor:
    """Style luminance shifted/scaled to the content luminance's mean and std (Gatys et al. 2016, Eq. 1)."""
    s_mu, s_sd = style_lum.mean(), style_lum.std(unbiased=False)
    c_mu, c_sd = content_lum.mean(), content_lum.std(unbiased=False)
    return (style_lum - s_mu) * (c_sd / s_sd.clamp_min(1e-8)) + c_mu


class NeuralStyleTransfer:
    """Gatys NST: ``(image, report) = nst(content, style)``; the VGG is built once and reused.

    Args:
        content_layer: content layer (default ``relu4_2``).
        style_layers: style layers (default ``relu1_1 .. relu5_1``).
        style_layer_weights: ``w_l`` (default ``1 / len(style_layers)`` each).
        content_weight: ``alpha`` (default 1).
        style_weight: ``beta`` (default 1e6, for ``"chw"`` Grams; the PyTorch tutorial uses 1e6 per layer
            with torchvision weights; pass your own for ``"hw"``/``"paper"``).
        tv_weight: total-variation weight (default 0).
        gram_norm: ``"chw"`` (default), ``"hw"`` or ``"paper"``.
        content_reduction: ``"mean"`` (default) or ``"paper"``.
        optimizer: ``"lbfgs"`` (default) or ``"adam"``.
        steps: optimiser steps (default 25 L-BFGS steps of ``lbfgs_max_iter`` iterations, or 500 Adam steps).
        lr: learning rate (default 1.0 for L-BFGS, 0.04 on the ``[-1, 1]`` scale for Adam).
        lbfgs_max_iter: iterations per L-BFGS step (PyTorch's ``max_iter``, default 20).
        line_search: L-BFGS line search, ``"strong_wolfe"`` (default: robust to the loss scale, which depends
            on the weights file and the loss weights) or ``None`` (fixed step ``lr``, as the PyTorch tutorial).
        init: ``"content"`` (default), ``"noise"`` or ``"style"``.
        colour: ``"none"`` (default), ``"luminance"`` or ``"histogram"``.
        arch, pooling, pretrained, weights_path, vgg_width: passed to :class:`VGGFeatures`
            (``pretrained=False`` gives random weights with a warning; only when asked).
        device: torch device (default: CUDA when available).
        seed: seed of the noise initialisation and of random VGG weights.
        record_every: keep a loss record every this many evaluations in the report's history.

    Example (random thin VGG, two Adam steps):
        >>> nst = NeuralStyleTransfer(optimizer="adam", steps=2, pretrained=False, vgg_width=0.125, device="cpu")
        >>> out, report = nst(torch.zeros(1, 32, 32), torch.rand(1, 32, 32) * 2 - 1)
        >>> tuple(out.shape), report["evaluations"]
        ((1, 32, 32), 2)
    """

    def __init__(
        self,
        *,
        content_layer: str = CONTENT_LAYER,
        style_layers: Sequence[str] = STYLE_LAYERS,
        style_layer_weights: Sequence[float] | None = None,
        content_weight: float = 1.0,
        style_weight: float = 1e6,
        tv_weight: float = 0.0,
        gram_norm: str = GramNorm.CHW,
        content_reduction: str = ContentReduction.MEAN,
        optimizer: str = NSTOptimizer.LBFGS,
        steps: int | None = None,
        lr: float | None = None,
        lbfgs_max_iter: int = 20,
        line_search: str | None = "strong_wolfe",
        init: str = InitMode.CONTENT,
        colour: str = ColourMode.NONE,
        arch: str = "vgg19",
        pooling: str = "max",
        pretrained: bool = True,
        weights_path: Any = None,
        vgg_width: float = 1.0,
        device: str | torch.device | None = None,
        seed: int = 0,
        record_every: int = 1,
    ) -> None:
        from medi2i.checkpoint import resolve_device

        self.gram_norm = GramNorm(look_up_option(gram_norm, GramNorm))
        self.content_reduction = ContentReduction(look_up_option(content_reduction, ContentReduction))
        self.optimizer = NSTOptimizer(look_up_option(optimizer, NSTOptimizer))
        self.init = InitMode(look_up_option(init, InitMode))
        self.colour = ColourMode(look_up_option(colour, ColourMode))
        self.content_layer = content_layer
        self.style_layers = tuple(style_layers)
        if isinstance(style_layers, str) or not self.style_layers:
            raise ValueError(f"style_layers={style_layers!r} must be a non-empty sequence of layer names")
        if style_layer_weights is None:
            style_layer_weights = [1.0 / len(self.style_layers)] * len(self.style_layers)
        if len(style_layer_weights) != len(self.style_layers):
            raise ValueError(
                f"style_layer_weights has {len(style_layer_weights)} entries for {len(self.style_layers)} style layers"
            )
        self.style_layer_weights = tuple(float(w) for w in style_layer_weights)
        for name, value in (
            ("content_weight", content_weight),
            ("style_weight", style_weight),
            ("tv_weight", tv_weight),
        ):
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name}={value} must be finite and >= 0")
        self.content_weight, self.style_weight, self.tv_weight = float(content_weight), float(style_weight), tv_weight
        self.steps = _DEFAULT_STEPS[self.optimizer] if steps is None else int(steps)
        if self.steps < 1:
            raise ValueError(f"steps={steps} must be >= 1")
        self.lr = _DEFAULT_LR[self.optimizer] if lr is None else float(lr)
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr={lr} must be finite and > 0")
        if lbfgs_max_iter < 1:
            raise ValueError(f"lbfgs_max_iter={lbfgs_max_iter} must be >= 1")
        self.lbfgs_max_iter = int(lbfgs_max_iter)
        if line_search not in (None, "strong_wolfe"):
            raise ValueError(f"line_search={line_search!r}; allowed: None, 'strong_wolfe'")
        self.line_search = line_search
        self.record_every = max(1, int(record_every))
        self.seed = int(seed)
        self.device = resolve_device(device)
        layers = tuple(dict.fromkeys((self.content_layer, *self.style_layers)))
        self.vgg = VGGFeatures(
            arch,
            layers,
            pretrained=pretrained,
            weights_path=weights_path,
            width=vgg_width,
            pooling=pooling,
            seed=seed,
        ).to(self.device)

    # -- features and targets ------------------------------------------------------------------------------
    def features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """VGG features of ``(B, 1 or 3, H, W)`` images in ``[-1, 1]`` (grey repeated to RGB)."""
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return self.vgg(x)

    def style_targets(self, styles: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        """Target Grams ``{layer: (1, N, N)}``: the mean of the styles' normalised Grams (one or many images)."""
        sums: dict[str, torch.Tensor] = {}
        with torch.no_grad():
            for style in styles:
                feats = self.features(style.to(self.device))
                for name in self.style_layers:
                    g = _gram_for(feats[name], self.gram_norm)
                    sums[name] = g if name not in sums else sums[name] + g
        return {name: value / len(styles) for name, value in sums.items()}

    def losses(
        self, x: torch.Tensor, content_target: torch.Tensor, grams: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(total, content, style)`` losses of image ``x`` (weighted total; unweighted parts)."""
        feats = self.features(x)
        l_content = content_loss(feats[self.content_layer], content_target, self.content_reduction)
        l_style = x.new_zeros(())
        for name, weight in zip(self.style_layers, self.style_layer_weights, strict=True):
            l_style = l_style + weight * style_layer_loss(
                _gram_for(feats[name], self.gram_norm), grams[name], self.gram_norm
            )
        total = self.content_weight * l_content + self.style_weight * l_style
        if self.tv_weight:
            total = total + self.tv_weight * total_variation(x)
        return total, l_content, l_style

    # -- main entry ------------------------------------------------------------------------------------------
    def __call__(
        self, content: torch.Tensor, style: torch.Tensor | Sequence[torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        """Stylise ``content`` ``(C, H, W)`` or ``(1, C, H, W)`` with ``style`` (one image or a list).

        Returns:
            ``(image, report)``: the image with the content's shape, in ``[-1, 1]``, on the CPU; the report
            (losses at start and end, history, SSIM to the content, evaluations, seconds, settings).
        """
        squeeze = content.ndim == 3
        content = _as_batch(content, "content").to(self.device, torch.float32)
        styles = list(style) if isinstance(style, (list, tuple)) else [style]
        if not styles:
            raise ValueError("style: at least one style image is needed")
        styles = [_as_batch(s, f"style[{i}]").to(self.device, torch.float32) for i, s in enumerate(styles)]
        start = time.perf_counter()
        channels = content.shape[1]
        colour = self.colour if channels == 3 else ColourMode.NONE
        work_content = content
        if colour == ColourMode.LUMINANCE:
            work_content = luminance(content)
            styles = [_matched_luminance(luminance(s), work_content) for s in styles]
        else:
            styles = [_match_channels(s, channels) for s in styles]
            if colour == ColourMode.HISTOGRAM:
                styles = [histogram_match_colours(s, content) for s in styles]

        grams = self.style_targets(styles)
        with torch.no_grad():
            content_target = self.features(work_content)[self.content_layer]
        x = self._initial_image(work_content, styles[0]).requires_grad_(True)
        history: list[dict[str, float]] = []
        evaluations = 0

        def evaluate() -> torch.Tensor:
            nonlocal evaluations
            total, l_c, l_s = self.losses(x, content_target, grams)
            if evaluations % self.record_every == 0:
                history.append(
                    {
                        "evaluation": evaluations,
                        "total": float(total.detach()),
                        "content": float(l_c.detach()),
                        "style": float(l_s.detach()),
                    }
                )
            evaluations += 1
            return total

        if self.optimizer == NSTOptimizer.LBFGS:
            opt = torch.optim.LBFGS([x], lr=self.lr, max_iter=self.lbfgs_max_iter, line_search_fn=self.line_search)

            def closure() -> torch.Tensor:
                with torch.no_grad():
                    x.clamp_(-1.0, 1.0)
                opt.zero_grad()
                total = evaluate()
                total.backward()
                return total

            for _ in range(self.steps):
                opt.step(closure)
        else:
            opt = torch.optim.Adam([x], lr=self.lr)
            for _ in range(self.steps):
                opt.zero_grad()
                evaluate().backward()
                opt.step()
                with torch.no_grad():
                    x.clamp_(-1.0, 1.0)
        with torch.no_grad():
            x.clamp_(-1.0, 1.0)
            total, l_c, l_s = self.losses(x, content_target, grams)
            out = x.detach()
            if colour == ColourMode.LUMINANCE:
                yiq = rgb_to_yiq(content)
                yiq = torch.cat([(out + 1.0) / 2.0, yiq[:, 1:]], dim=1)
                out = yiq_to_rgb(yiq).clamp(-1.0, 1.0)
        if not torch.isfinite(out).all():
            raise FloatingPointError("NST produced non-finite values; lower lr or the loss weights")
        first = history[0]
        report = {
            "method": "nst",
            "optimizer": str(self.optimizer),
            "steps": self.steps,
            "evaluations": evaluations,
            "init": str(self.init),
            "colour": str(colour),
            "gram_norm": str(self.gram_norm),
            "content_loss_start": first["content"],
            "style_loss_start": first["style"],
            "total_loss_start": first["total"],
            "content_loss_end": float(l_c),
            "style_loss_end": float(l_s),
            "total_loss_end": float(total),
            "history": history,
            "ssim_to_content": ssim_to_content(out, content),
            "seconds": time.perf_counter() - start,
            "device": str(self.device),
        }
        out = out.cpu()
        return (out[0] if squeeze else out), report

    def _initial_image(self, content: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        if self.init == InitMode.CONTENT:
            return content.detach().clone()
        if self.init == InitMode.STYLE:
            return F.interpolate(style, size=content.shape[-2:], mode="bilinear", align_corners=False).clamp(-1, 1)
        generator = torch.Generator().manual_seed(self.seed)
        return (torch.rand(content.shape, generator=generator) * 2.0 - 1.0).to(self.device)
