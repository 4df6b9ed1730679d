"""LPIPS (VGG16, v0.1): learned perceptual image patch similarity from local weights.

Zhang, Isola, Efros, Shechtman, Wang, "The Unreasonable Effectiveness of Deep Features as a Perceptual
Metric", CVPR 2018 (Eq. 1), in the form of the reference package ``lpips`` v0.1 (the version used as
the paired distance ``d`` of Bi-DPM, bidpm.md Eq. 7). For images ``x, y`` in [-1, 1]:

1. scale: ``(x - shift) / scale`` with shift (-0.030, -0.088, -0.188), scale (0.458, 0.448, 0.450)
   (v0.1's input scaling; v0.0 omitted it). These equal ``2 * mean - 1`` and ``2 * std`` of the ImageNet
   statistics, i.e. torchvision's preprocessing of ``(x + 1) / 2``.
2. features ``f_l`` of VGG16 (torchvision weights) at relu1_2, relu2_2, relu3_3, relu4_3, relu5_3;
3. unit-normalise along channels: ``f / (||f||_2 + 1e-10)`` (paper: ``\\hat y^l``);
4. squared difference, weighted per channel by the non-negative 1x1 head ``w_l`` (paper: ``w_l``);
5. average over the ``H_l x W_l`` positions and sum over the five layers.

Constants and math were checked against the installed ``lpips`` package source (``lpips/lpips.py``:
``ScalingLayer``, ``NetLinLayer``, ``normalize_tensor``, ``spatial_average``, ``upsample``); no code was
taken from it and it is not imported (it needs torchvision). Its v0.1 heads file ``weights/v0.1/vgg.pth``
has keys ``lin0.model.1.weight`` ... ``lin4.model.1.weight`` of shapes ``(1, C_l, 1, 1)``.

LPIPS is defined on 2D images; for volumes apply it per slice.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from medi2i.errors import Medi2iInputError
from medi2i.nets.vgg import VGGFeatures, WeightLayout
from medi2i.typing import PathLike
from medi2i.weights import load_state_dict_file, resolve_weights, weights_dir

__all__ = ["LPIPS", "LPIPS_LAYERS", "LPIPS_SCALE", "LPIPS_SHIFT", "LPIPS_WEIGHTS", "find_lpips_heads"]

logger = logging.getLogger(__name__)

LPIPS_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")
LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)
LPIPS_WEIGHTS = "lpips_vgg_v0.1.pth"
_EPS = 1e-10  # added to the feature norm, as in the reference implementation


def _wheel_heads() -> Path | None:
    """The v0.1 VGG heads shipped inside an installed ``lpips`` wheel, found without importing it."""
    spec = importlib.util.find_spec("lpips")  # top-level name: locates the package, does not import it
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "weights" / "v0.1" / "vgg.pth"
        if candidate.is_file():
            return candidate
    return None


def find_lpips_heads(path: PathLike | None = None) -> Path:
    """Locate the LPIPS v0.1 VGG linear heads.

    Order: ``path`` if given; else ``lpips_vgg_v0.1.pth`` in the weights folder (``$MEDI2I_WEIGHTS``);
    else ``lpips/weights/v0.1/vgg.pth`` of an installed ``lpips`` wheel (not imported, and not a medi2i
    dependency).

    Raises:
        Medi2iInputError: none of them exists (names the file, the folder and how to get it).
    """
    if path is None and not (weights_dir() / LPIPS_WEIGHTS).is_file():
        wheel = _wheel_heads()
        if wheel is not None:  # say which file: the result then depends on what is installed
            logging.getLogger("medi2i.nets").info("LPIPS linear heads from the installed lpips wheel: %s", wheel)
            return wheel
    return resolve_weights(LPIPS_WEIGHTS, path=path, purpose="LPIPS (linear heads)")


class LPIPS(nn.Module):
    """LPIPS distance (VGG16 trunk, v0.1 heads), frozen; gradients flow to the inputs.

    Args:
        pretrained: load the VGG16 trunk and the linear heads from local files (default). ``False`` gives
            a seeded random trunk and random non-negative heads (logs a warning): a well-defined
            distance for tests, not a perceptual one.
        vgg_weights: the torchvision-layout VGG16 file (default ``vgg16-397923af.pth`` in the weights
            folder). Caffe-layout VGG16 files are refused: the heads were fitted to torchvision's VGG16.
        lin_weights: the heads file (default: see :func:`find_lpips_heads`).
        width: trunk width multiplier, ``< 1`` only with ``pretrained=False`` (fast tests).
        seed: seed of the random weights (``pretrained=False``).

    Example:
        >>> metric = LPIPS(pretrained=False, width=0.125)
        >>> x = torch.rand(2, 1, 32, 32) * 2 - 1
        >>> metric(x, x).tolist()
        [0.0, 0.0]
        >>> tuple(metric.distance_map(x, -x).shape)
        (2, 1, 32, 32)
    """

    def __init__(
        self,
        *,
        pretrained: bool = True,
        vgg_weights: PathLike | None = None,
        lin_weights: PathLike | None = None,
        width: float = 1.0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if not pretrained and (vgg_weights is not None or lin_weights is not None):
            raise ValueError("vgg_weights/lin_weights are given but pretrained=False; set pretrained=True to load them")
        # VGGFeatures checks width (in (0, 1], < 1 only without weights) and reports the VGG16 file.
        self.vgg = VGGFeatures(
            "vgg16", LPIPS_LAYERS, pretrained=pretrained, weights_path=vgg_weights, width=width, seed=seed
        )
        if self.vgg.layout != WeightLayout.TORCHVISION:
            raise Medi2iInputError(
                "LPIPS needs torchvision-layout VGG16 weights (its heads were fitted to them)",
                path=vgg_weights,
                field="vgg_weights",
                found=f"{self.vgg.layout.value} layout",
                expected="vgg16-397923af.pth ('features.N.*' keys)",
            )
        channels = [self.vgg.feature_channels[name] for name in LPIPS_LAYERS]
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, kernel_size=1, bias=False) for c in channels)
        if pretrained:
            self._load_heads(find_lpips_heads(lin_weights))
        else:
            generator = torch.Generator().manual_seed(seed + 1)
            for lin, c in zip(self.lins, channels, strict=True):
                # non-negative like trained heads (the reference clamps them at 0), mean 1/C per layer
                lin.weight.data = torch.rand(lin.weight.shape, generator=generator) * (2.0 / c)
        self.register_buffer("shift", torch.tensor(LPIPS_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(LPIPS_SCALE).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def _load_heads(self, path: Path) -> None:
        state = load_state_dict_file(path)
        for k, lin in enumerate(self.lins):
            # lpips stores Dropout at model.0 and the conv at model.1; files trained without dropout use model.0
            key = next((c for c in (f"lin{k}.model.1.weight", f"lin{k}.model.0.weight") if c in state), None)
            if key is None:
                raise Medi2iInputError(
                    "LPIPS heads file lacks a linear head",
                    path=path,
                    field=f"lin{k}.model.1.weight",
                    found=sorted(state)[:8],
                    expected="lin0..lin4 '.model.1.weight' keys",
                )
            weight = state[key]
            if tuple(weight.shape) != tuple(lin.weight.shape):
                raise Medi2iInputError(
                    "wrong shape for the LPIPS VGG head (is this the AlexNet/SqueezeNet file?)",
                    path=path,
                    field=key,
                    found=tuple(weight.shape),
                    expected=tuple(lin.weight.shape),
                )
            if not torch.isfinite(weight).all() or (weight < 0).any():
                raise Medi2iInputError(
                    "LPIPS head weights must be finite and non-negative",
                    path=path,
                    field=key,
                    found=f"min {float(weight.min()):.4g}",
                    expected=">= 0",
                )
            lin.weight.data.copy_(weight)

    def _layer_distances(self, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
        """Per-layer maps ``w_l . (f_l(x) - f_l(y))**2``, each ``(B, 1, H_l, W_l)``."""
        if x.shape != y.shape:
            raise ValueError(f"expected x and y of the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
        if x.ndim != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"expected images of shape (B, C, H, W) with C in (1, 3), got {tuple(x.shape)}")
        if not x.is_floating_point() or not y.is_floating_point():
            raise ValueError(f"expected floating-point images, got {x.dtype} and {y.dtype}")
        # Two trunk passes, not one on cat([x, y]): identical inputs then give bit-identical features,
        # so d(x, x) is exactly 0 whatever the batch-dependent kernels do.
        feats_x = self.vgg.forward_preprocessed(self._scale(x))
        feats_y = self.vgg.forward_preprocessed(self._scale(y))
        out = []
        for name, lin in zip(LPIPS_LAYERS, self.lins, strict=True):
            diff = (_unit_normalise(feats_x[name]) - _unit_normalise(feats_y[name])) ** 2
            out.append(lin(diff))
        return out

    def _scale(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)  # grey slices are compared as grey RGB images
        return (x - self.shift.to(x.dtype)) / self.scale.to(x.dtype)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """LPIPS distance per image.

        Args:
            x: ``(B, C, H, W)`` in [-1, 1], ``C`` in {1, 3}, ``H, W >= 16``.
            y: same shape.

        Returns:
            ``(B,)`` distances (>= 0; 0 for identical images).
        """
        return sum(d.mean(dim=(1, 2, 3)) for d in self._layer_distances(x, y))

    def distance_map(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Spatial LPIPS map: each layer's map upsampled (bilinear) to the input size, summed over layers.

        Args:
            x: ``(B, C, H, W)`` in [-1, 1], ``C`` in {1, 3}.
            y: same shape.

        Returns:
            ``(B, 1, H, W)``.
        """
        size = tuple(x.shape[2:])
        return sum(
            F.interpolate(d, size=size, mode="bilinear", align_corners=False) for d in self._layer_distances(x, y)
        )


def _unit_normalise(features: torch.Tensor) -> torch.Tensor:
    """Divide each position's feature vector by its L2 norm over channels (+1e-10)."""
    return features / (features.pow(2).sum(dim=1, keepdim=True).sqrt() + _EPS)
