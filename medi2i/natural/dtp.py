"""DTP: Deep Translation Prior, test-time training on one content/style pair (Kim, Kim & Kim, AAAI 2022).

Research digest ``dtp_rabit_nst.md`` section 1; seed paper ``001_f374f0522a97aadb.txt``. For every pair a
fresh copy of the VGG19 encoder ``Phi(.; w_f)`` (:class:`medi2i.nets.vgg.VGGFeatures`, local ImageNet
weights, or random weights only when ``pretrained=False`` is asked) and a freshly initialised decoder
``F(.; w_g)`` (:class:`~medi2i.natural.dtp_networks.DTPDecoder`) are trained on that pair alone; there is no
offline training. One iteration ``l`` (images ``(1, C, H, W)`` in ``[-1, 1]``):

1. ``f_C = Phi(I_C)``, ``f_S = Phi(I_S)``; the correlation feature (relu3_4) of the content is replaced,
   for ``l > 0``, by ``m f_C + (1 - m) Phi(I^{l-1})`` (feature moving average, Eq. 11, ``m = 0.4``; the
   previous output's features are detached, as in the code);
2. correlation ``M(u, v)`` of centred unit vectors (Eqs. 6-7) at relu3_4, shrunk to at most
   ``corr_max_size`` per side (official 64x64 memory cap); ``A = softmax_v(M / tau)``;
3. warped style feature ``r = A f_S`` and warped style image ``R = A I_S_down`` (style average-pooled to the
   correlation grid, the warp upsampled bilinearly), Eq. 8;
4. output ``I = lambda_w F(r) + (1 - lambda_w) R`` (Eq. 10, ``lambda_w = 1/9``);
5. losses on ``Phi(I)``, ``Phi(I_C)``, ``Phi(I_S)``:

   * contrastive content loss (Eq. 13 corrected, digest 1.3.1): PatchNCE with query = output vector,
     positive = content vector at the same position, negatives = content vectors at the other sampled
     positions, ``tau_nce = 0.07``, ``num_patches`` random positions per layer (2048 max), no projection
     head, layers relu1_2/relu2_2/relu3_4 with weights 1/32, 1/16, 1/8;
   * style loss (Eq. 14, non-parametric, digest 1.3.2): ``mean_v [1 - cos(psi(o_v), psi(s_NN(v)))]`` with
     NN among the style vectors at the same sampled positions, ``psi`` = 3x3 patch vectors at relu1_2 ..
     relu4_4 and the raw vector at relu5_4, weights 1/64, 1/32, 1/16, 1/8, 1/4 (``1 - cos`` is half the
     paper's squared distance of unit vectors);
   * cycle loss (digest 1.3.3): ``"image"`` (official code, default): features and images warped
     s->c->s and c->s->c with the correspondence and its transpose re-softmaxed over content positions,
     decoded and blended like Eq. 10, MSE against ``I_S`` and ``I_C``; ``"feature"`` (paper Eq. 16): MSE
     between the relu3_4 features and their back-warped versions;
   * total ``content_weight L_cont + style_weight L_style + cycle_weight L_cyc``;
6. two Adam optimisers (encoder, decoder), ``lr = 1e-4``, betas ``(0.5, 0.999)``, 1000 iterations.

Decisions on the digest's open points (section 4):

1. ``content_weight = 0.2``, ``style_weight = 0.8`` (official code; the paper-best ``lambda_c = 1/5`` under the
   supplement's reading, where ``lambda_c`` weighs the style term); both are exposed separately.
2. ``cycle_mode = "image"`` (code) by default, ``"feature"`` (paper) available.
3. Correlation as in the code: ``corr_patch = 3``, per-vector centring, ``corr_temperature = 0.01``; the paper's
   variant is ``corr_patch=1, corr_centering="spatial", corr_temperature=0.07``. The 64x64 cap is kept
   (``corr_max_size``); the correlation is ``N^2`` floats (64 MiB at 64x64).
4. ``composition = "warped"`` (Eq. 10) by default. ``"content"`` (not in the paper, for medical use where the
   soft-warped style anatomy could leak into the output, digest 1.9) puts the content image in place of
   ``R`` so the decoder only adds a residual on the content; it is an option, not validated by the paper.

The returned image is the output of the last iteration (as in the code), clamped to ``[-1, 1]``. Grey
(1-channel) images are repeated to three channels for the encoder; the decoder then has one output
channel and ``R`` warps the grey style.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from monai.utils import StrEnum, look_up_option

from medi2i.natural.dtp_networks import (
    DTPDecoder,
    centred_unit,
    correlation_vectors,
    patch_vectors_at,
    soft_correspondence,
    warp,
)
from medi2i.natural.nst import _as_batch, luminance, ssim_to_content
from medi2i.nets.vgg import VGGFeatures

__all__ = ["CycleMode", "Composition", "DeepTranslationPrior", "nce_content_loss", "nn_style_loss"]

NCE_LAYERS = ("relu1_2", "relu2_2", "relu3_4")
NCE_WEIGHTS = (1 / 32, 1 / 16, 1 / 8)
STYLE_LAYERS = ("relu1_2", "relu2_2", "relu3_4", "relu4_4", "relu5_4")
STYLE_WEIGHTS = (1 / 64, 1 / 32, 1 / 16, 1 / 8, 1 / 4)
STYLE_PATCHES = (3, 3, 3, 3, 1)


class CycleMode(StrEnum):
    """Cycle-consistency loss: image level through the decoder (code) or feature level (paper Eq. 16)."""

    IMAGE = "image"
    FEATURE = "feature"
    NONE = "none"


class Composition(StrEnum):
    """What the decoder's residual is added to: the warped style image (Eq. 10) or the content image."""

    WARPED = "warped"
    CONTENT = "content"


def nce_content_loss(
    output: torch.Tensor, content: torch.Tensor, index: torch.Tensor, temperature: float = 0.07
) -> torch.Tensor:
    """PatchNCE content loss of one layer (digest 1.3.1): cross-entropy of ``q_i . k_j / tau`` with target ``j = i``.

    Args:
        output: output features ``(B, C, H, W)`` (queries).
        content: content features ``(B, C, H, W)`` (positive at the same position, negatives elsewhere).
        index: ``(P,)`` sampled positions (row-major).
        temperature: ``tau``.

    Returns:
        Scalar, mean over positions and batch.
    """
    q = centred_unit(patch_vectors_at(output, index, 1))
    k = centred_unit(patch_vectors_at(content, index, 1))
    logits = q @ k.transpose(1, 2) / temperature  # (B, P, P)
    target = torch.arange(logits.shape[1], device=logits.device).expand(logits.shape[0], -1)
    return F.cross_entropy(logits.flatten(0, 1), target.flatten())


def nn_style_loss(output: torch.Tensor, style: torch.Tensor, index: torch.Tensor, patch: int = 3) -> torch.Tensor:
    """Nearest-neighbour style loss of one layer (digest 1.3.2): ``mean_v [1 - max_j cos(psi(o_v), psi(s_j))]``
    over the sampled positions ``index`` (the same positions give the style candidates)."""
    po = centred_unit(patch_vectors_at(output, index, patch))
    ps = centred_unit(patch_vectors_at(style, index, patch))
    cos = po @ ps.transpose(1, 2)  # (B, P, P)
    return (1.0 - cos.max(dim=-1).values).mean()


def _sample(n: int, count: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.randperm(n, generator=generator)[: min(count, n)].to(device)


class DeepTranslationPrior:
    """DTP test-time training: ``(image, report) = dtp(content, style)``; a fresh encoder/decoder per pair.

    Args:
        iterations: test-time iterations (default 1000).
        lr: Adam learning rate of encoder and decoder (default 1e-4).
        betas: Adam betas (default ``(0.5, 0.999)``).
        train_encoder: fine-tune the encoder copy (paper; default True).
        content_weight, style_weight, cycle_weight: loss weights (default 0.2, 0.8, 1.0).
        cycle_mode: ``"image"`` (default), ``"feature"`` or ``"none"``.
        corr_layer: correlation layer (default relu3_4).
        corr_patch, corr_centering, corr_temperature: see the module docstring (default 3, "vector", 0.01).
        corr_max_size: cap on each side of the correlation grid (default 64).
        residual_weight: ``lambda_w`` (default 1/9).
        momentum: ``m`` of the feature moving average (default 0.4; 1.0 turns FMA off).
        composition: ``"warped"`` (default) or ``"content"``.
        nce_layers, nce_weights, nce_temperature: contrastive content loss (relu1_2/2_2/3_4, 1/32..1/8, 0.07).
        style_layers, style_weights, style_patches: NN style loss (relu1_2..5_4, 1/64..1/4, 3x3 except 1 at
            relu5_4).
        num_patches: sampled positions per layer and iteration (default 2048).
        pretrained, weights_path, vgg_width, arch: encoder initialisation (:class:`VGGFeatures`;
            ``pretrained=False`` = untrained encoder with random weights, logged as a warning).
        device: torch device (default: CUDA when available).
        seed: seed of the decoder initialisation and the patch sampling (default 1006, as the code).
        record_every: keep a loss record every this many iterations.

    Example (a 3-iteration run of the tiny configuration):
        >>> dtp = DeepTranslationPrior(iterations=3, lr=1e-3, pretrained=False, vgg_width=0.125, device="cpu")
        >>> out, report = dtp(torch.zeros(3, 32, 32), torch.rand(3, 32, 32) * 2 - 1)
        >>> tuple(out.shape), len(report["history"])
        ((3, 32, 32), 3)
    """

    def __init__(
        self,
        *,
        iterations: int = 1000,
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.5, 0.999),
        train_encoder: bool = True,
        content_weight: float = 0.2,
        style_weight: float = 0.8,
        cycle_weight: float = 1.0,
        cycle_mode: str = CycleMode.IMAGE,
        corr_layer: str = "relu3_4",
        corr_patch: int = 3,
        corr_centering: str = "vector",
        corr_temperature: float = 0.01,
        corr_max_size: int = 64,
        residual_weight: float = 1.0 / 9.0,
        momentum: float = 0.4,
        composition: str = Composition.WARPED,
        nce_layers: Sequence[str] = NCE_LAYERS,
        nce_weights: Sequence[float] = NCE_WEIGHTS,
        nce_temperature: float = 0.07,
        style_layers: Sequence[str] = STYLE_LAYERS,
        style_weights: Sequence[float] = STYLE_WEIGHTS,
        style_patches: Sequence[int] = STYLE_PATCHES,
        num_patches: int = 2048,
        pretrained: bool = True,
        weights_path: Any = None,
        vgg_width: float = 1.0,
        arch: str = "vgg19",
        device: str | torch.device | None = None,
        seed: int = 1006,
        record_every: int = 1,
    ) -> None:
        from medi2i.checkpoint import resolve_device

        self.cycle_mode = CycleMode(look_up_option(cycle_mode, CycleMode))
        self.composition = Composition(look_up_option(composition, Composition))
        if corr_centering not in ("vector", "spatial"):
            raise ValueError(f"corr_centering={corr_centering!r}; allowed: 'vector', 'spatial'")
        if iterations < 1:
            raise ValueError(f"iterations={iterations} must be >= 1")
        if num_patches < 2:
            raise ValueError(f"num_patches={num_patches} must be >= 2")
        if corr_max_size < 1:
            raise ValueError(f"corr_max_size={corr_max_size} must be >= 1")
        if not 0.0 <= residual_weight <= 1.0:
            raise ValueError(f"residual_weight={residual_weight} must be in [0, 1]")
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum={momentum} must be in [0, 1]")
        for name, value in (
            ("lr", lr),
            ("corr_temperature", corr_temperature),
            ("nce_temperature", nce_temperature),
        ):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name}={value} must be finite and > 0")
        for name, value in (
            ("content_weight", content_weight),
            ("style_weight", style_weight),
            ("cycle_weight", cycle_weight),
        ):
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name}={value} must be finite and >= 0")
        if len(nce_layers) != len(nce_weights):
            raise ValueError(f"nce_layers ({len(nce_layers)}) and nce_weights ({len(nce_weights)}) differ in length")
        if not len(style_layers) == len(style_weights) == len(style_patches):
            raise ValueError("style_layers, style_weights and style_patches must have the same length")
        self.iterations, self.lr, self.betas = int(iterations), float(lr), tuple(betas)
        self.train_encoder = bool(train_encoder)
        self.content_weight, self.style_weight, self.cycle_weight = content_weight, style_weight, cycle_weight
        self.corr_layer, self.corr_patch, self.corr_centering = corr_layer, int(corr_patch), corr_centering
        self.corr_temperature, self.corr_max_size = float(corr_temperature), int(corr_max_size)
        self.residual_weight, self.momentum = float(residual_weight), float(momentum)
        self.nce_layers, self.nce_weights = tuple(nce_layers), tuple(nce_weights)
        self.nce_temperature = float(nce_temperature)
        self.style_layers, self.style_weights = tuple(style_layers), tuple(style_weights)
        self.style_patches = tuple(int(p) for p in style_patches)
        self.num_patches, self.seed, self.record_every = int(num_patches), int(seed), max(1, int(record_every))
        self.device = resolve_device(device)
        layers = tuple(dict.fromkeys((*self.style_layers, *self.nce_layers, self.corr_layer)))
        # the template: copied (deep) for every pair, so no pair sees another pair's fine-tuning
        self.encoder = VGGFeatures(
            arch, layers, pretrained=pretrained, weights_path=weights_path, width=vgg_width, seed=seed
        ).to(self.device)
        self.corr_channels = self.encoder.feature_channels[self.corr_layer]
        self.last_modules: dict[str, torch.nn.Module] = {}  # the last pair's trained encoder copy and decoder

    # -- helpers ---------------------------------------------------------------------------------------------
    @staticmethod
    def _encode(encoder: VGGFeatures, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return encoder(x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x)

    def _corr_grid(self, h: int, w: int) -> tuple[int, int]:
        scale = min(1.0, self.corr_max_size / max(h, w))
        return max(1, round(h * scale)), max(1, round(w * scale))

    def _blend(
        self, decoder: DTPDecoder, feat: torch.Tensor, image: torch.Tensor, size: tuple[int, int]
    ) -> torch.Tensor:
        """``lambda_w F(feat) + (1 - lambda_w) image`` at ``size`` (decoder output resized when needed)."""
        decoded = decoder(feat)
        if decoded.shape[-2:] != size:
            decoded = F.interpolate(decoded, size=size, mode="bilinear", align_corners=False)
        return self.residual_weight * decoded + (1.0 - self.residual_weight) * image

    def _up(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return x if x.shape[-2:] == size else F.interpolate(x, size=size, mode="bilinear", align_corners=False)

    def build_decoder(self, out_channels: int) -> DTPDecoder:
        """A freshly initialised decoder (seeded, without touching the global RNG)."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            decoder = DTPDecoder(self.corr_channels, out_channels, width=self.corr_channels / 256.0)
        return decoder.to(self.device)

    # -- main entry ------------------------------------------------------------------------------------------
    def __call__(self, content: torch.Tensor, style: torch.Tensor) -> tuple[torch.Tensor, dict[str, Any]]:
        """Stylise ``content`` ``(C, H, W)`` or ``(1, C, H, W)`` with ``style`` (resized to the content's size).

        Returns:
            ``(image, report)``: the image with the content's shape in ``[-1, 1]`` on the CPU, and the report
            (per-iteration losses, start/end means, SSIM to the content, seconds, parameter counts).
        """
        squeeze = content.ndim == 3
        content = _as_batch(content, "content").to(self.device, torch.float32)
        if isinstance(style, (list, tuple)):
            raise ValueError("DTP takes exactly one style image per content image (a list was given)")
        style = _as_batch(style, "style").to(self.device, torch.float32)
        channels = content.shape[1]
        if style.shape[1] != channels:
            style = luminance(style) if channels == 1 else style.expand(-1, 3, -1, -1)
        size = tuple(content.shape[-2:])
        if style.shape[-2:] != size:
            style = F.interpolate(style, size=size, mode="bilinear", align_corners=False, antialias=True)
        start = time.perf_counter()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)

        encoder = copy.deepcopy(self.encoder).requires_grad_(self.train_encoder)  # fresh copy for this pair
        decoder = self.build_decoder(channels)
        optimizers = [torch.optim.Adam(decoder.parameters(), lr=self.lr, betas=self.betas)]
        if self.train_encoder:
            optimizers.append(torch.optim.Adam(encoder.parameters(), lr=self.lr, betas=self.betas))
        generator = torch.Generator().manual_seed(self.seed)
        history: list[dict[str, float]] = []
        previous: torch.Tensor | None = None  # detached corr-layer features of the previous output (FMA)
        out = content
        grid: tuple[int, int] | None = None
        row_sum_error = 0.0
        first_output = content
        for step in range(self.iterations):
            for opt in optimizers:
                opt.zero_grad(set_to_none=True)
            fc = self._encode(encoder, content)
            fs = self._encode(encoder, style)
            c_corr, s_corr = fc[self.corr_layer], fs[self.corr_layer]
            if previous is not None:
                c_corr = self.momentum * c_corr + (1.0 - self.momentum) * previous
            grid = self._corr_grid(*c_corr.shape[-2:])
            c_corr, s_corr = self._up(c_corr, grid), self._up(s_corr, grid)
            qc = correlation_vectors(c_corr, patch=self.corr_patch, centering=self.corr_centering)
            qs = correlation_vectors(s_corr, patch=self.corr_patch, centering=self.corr_centering)
            corr, attn = soft_correspondence(qc, qs, self.corr_temperature)  # (1, N_c, N_s), rows sum to 1
            if step == 0:
                row_sum_error = float((attn.detach().sum(-1) - 1.0).abs().max())
            r = warp(attn, s_corr, grid)
            base_c = content if self.composition == Composition.CONTENT else None
            warped_image = self._up(warp(attn, F.adaptive_avg_pool2d(style, grid), grid), size)
            out = self._blend(decoder, r, warped_image if base_c is None else base_c, size)
            if step == 0:
                first_output = out.detach().clamp(-1.0, 1.0)
            fo = self._encode(encoder, out)

            l_cont = out.new_zeros(())
            for name, weight in zip(self.nce_layers, self.nce_weights, strict=True):
                h, w = fo[name].shape[-2:]
                index = _sample(h * w, self.num_patches, generator, self.device)
                l_cont = l_cont + weight * nce_content_loss(fo[name], fc[name], index, self.nce_temperature)
            l_style = out.new_zeros(())
            for name, weight, patch in zip(self.style_layers, self.style_weights, self.style_patches, strict=True):
                h, w = fo[name].shape[-2:]
                index = _sample(h * w, self.num_patches, generator, self.device)
                l_style = l_style + weight * nn_style_loss(fo[name], fs[name], index, patch)
            l_cyc = self._cycle_loss(decoder, corr, attn, c_corr, s_corr, r, content, style, grid, size)
            total = self.content_weight * l_cont + self.style_weight * l_style + self.cycle_weight * l_cyc
            total.backward()
            for opt in optimizers:
                opt.step()
            previous = self._up(fo[self.corr_layer].detach(), tuple(fc[self.corr_layer].shape[-2:]))
            if step % self.record_every == 0 or step == self.iterations - 1:
                history.append(
                    {
                        "iteration": step,
                        "total": float(total.detach()),
                        "content": float(l_cont.detach()),
                        "style": float(l_style.detach()),
                        "cycle": float(l_cyc.detach()),
                    }
                )
        self.last_modules = {"encoder": encoder, "decoder": decoder}
        image = out.detach().clamp(-1.0, 1.0)
        if not torch.isfinite(image).all():
            raise FloatingPointError("DTP produced non-finite values; lower lr")
        k = min(10, len(history))
        report = {
            "method": "dtp",
            "iterations": self.iterations,
            "history": history,
            "total_loss_start": sum(h["total"] for h in history[:k]) / k,
            "total_loss_end": sum(h["total"] for h in history[-k:]) / k,
            "style_loss_start": history[0]["style"],
            "style_loss_end": history[-1]["style"],
            "content_loss_start": history[0]["content"],
            "content_loss_end": history[-1]["content"],
            "correlation_grid": list(grid or ()),
            "correlation_row_sum_error": row_sum_error,
            "decoder_parameters": sum(p.numel() for p in decoder.parameters()),
            "encoder_parameters": sum(p.numel() for p in encoder.parameters()),
            "ssim_to_content": ssim_to_content(image, content),
            "ssim_to_content_first": ssim_to_content(first_output, content),
            "seconds": time.perf_counter() - start,
            "device": str(self.device),
        }
        if self.device.type == "cuda":
            report["peak_memory_bytes"] = int(torch.cuda.max_memory_allocated(self.device))
        image = image.cpu()
        return (image[0] if squeeze else image), report

    def _cycle_loss(
        self,
        decoder: DTPDecoder,
        corr: torch.Tensor,
        attn: torch.Tensor,
        c_corr: torch.Tensor,
        s_corr: torch.Tensor,
        r: torch.Tensor,
        content: torch.Tensor,
        style: torch.Tensor,
        grid: tuple[int, int],
        size: tuple[int, int],
    ) -> torch.Tensor:
        """Cycle consistency (digest 1.3.3). ``back`` = softmax over content positions, transposed ``(B, N_s, N_c)``."""
        if self.cycle_mode == CycleMode.NONE:
            return corr.new_zeros(())
        back = torch.softmax(corr / self.corr_temperature, dim=1).transpose(1, 2)
        r_scs = warp(back, r, grid)  # style features -> content grid -> back to the style grid
        r_csc = warp(attn, warp(back, c_corr, grid), grid)  # content features -> style grid -> back
        if self.cycle_mode == CycleMode.FEATURE:
            return F.mse_loss(r_csc, c_corr) + F.mse_loss(r_scs, s_corr)
        s_small, c_small = F.adaptive_avg_pool2d(style, grid), F.adaptive_avg_pool2d(content, grid)
        img_scs = self._up(warp(back, warp(attn, s_small, grid), grid), size)
        img_csc = self._up(warp(attn, warp(back, c_small, grid), grid), size)
        out_scs = self._blend(decoder, r_scs, img_scs, size)
        out_csc = self._blend(decoder, r_csc, img_csc, size)
        return F.mse_loss(out_scs, style) + F.mse_loss(out_csc, content)
