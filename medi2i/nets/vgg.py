"""VGG16 / VGG19 feature extractors with local weights (no torchvision, no downloads).

Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale Image Recognition", ICLR 2015.
Only the convolutional trunk is built (conv 3x3 + ReLU, 2x2 pooling); classifier weights in a file
are ignored, so a features-only file (about 58 MB for VGG16, 80 MB for VGG19) is enough.

Two on-disk layouts exist, and each carries its own input convention (research digest
dtp_rabit_nst.md, section 0.2). The layout is detected from the keys and the matching preprocessing
is applied inside the module, so callers always pass images in their declared ``input_range``:

=============  ====================================  ===============================================
layout         keys                                  network input
=============  ====================================  ===============================================
torchvision    ``features.<idx>.weight|bias``        RGB in [0, 1], ``(x - mean) / std`` with ImageNet
               (``vgg16-397923af.pth``, ...)          mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225)
caffe          ``conv<b>_<i>.weight|bias``           BGR in [0, 255] minus mean (103.939, 116.779,
               (``vgg_conv.pth``, ``vgg19_conv.pth``)  123.68) (BGR order), std 1
=============  ====================================  ===============================================

Layer names follow the paper's blocks: ``conv<b>_<i>``, ``relu<b>_<i>``, ``pool<b>``; the module's own
``state_dict`` uses the torchvision indices (``features.<idx>.*``), so a saved trunk reloads as a
torchvision-layout file.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence

import torch
from monai.utils import StrEnum, look_up_option
from torch import nn

from medi2i.errors import Medi2iInputError
from medi2i.typing import PathLike
from medi2i.weights import load_state_dict_file, resolve_weights

__all__ = [
    "CAFFE_MEAN_BGR",
    "DEFAULT_VGG_WEIGHTS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "InputRange",
    "VGGArch",
    "VGGFeatures",
    "VGGPooling",
    "WeightLayout",
    "convert_vgg_state_dict",
    "vgg_layer_names",
]

logger = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # RGB, of [0, 1] images (torchvision layout)
IMAGENET_STD = (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)  # BGR, of [0, 255] images (caffe layout)

# Convolutions per block; both nets have 5 blocks of 64, 128, 256, 512, 512 channels.
_BLOCK_CONVS = {"vgg16": (2, 2, 3, 3, 3), "vgg19": (2, 2, 4, 4, 4)}
_BLOCK_CHANNELS = (64, 128, 256, 512, 512)

DEFAULT_VGG_WEIGHTS = {"vgg16": "vgg16-397923af.pth", "vgg19": "vgg19-dcbb9e9d.pth"}

_TORCHVISION_KEY = re.compile(r"^features\.(\d+)\.(weight|bias)$")
_CAFFE_KEY = re.compile(r"^(conv\d+_\d+)\.(weight|bias)$")
_IGNORED_KEY = re.compile(r"^(classifier\.|fc\d+\.)")  # classifier heads of either layout


class VGGArch(StrEnum):
    """VGG depth (configurations D and E of the paper)."""

    VGG16 = "vgg16"
    VGG19 = "vgg19"


class InputRange(StrEnum):
    """Intensity range of the images passed to ``forward``."""

    MINUS_ONE_ONE = "[-1,1]"
    ZERO_ONE = "[0,1]"


class WeightLayout(StrEnum):
    """Key layout of a weights file, which fixes the preprocessing."""

    TORCHVISION = "torchvision"
    CAFFE = "caffe"


class VGGPooling(StrEnum):
    """Pooling between blocks (Gatys et al. use average pooling for synthesis)."""

    MAX = "max"
    AVG = "avg"


def _layer_table(arch: str) -> list[tuple[str, int, int]]:
    """``(name, torchvision index, block)`` of every layer of the trunk, in order."""
    table = []
    index = 0
    for block, n_convs in enumerate(_BLOCK_CONVS[arch], start=1):
        for i in range(1, n_convs + 1):
            table.append((f"conv{block}_{i}", index, block))
            table.append((f"relu{block}_{i}", index + 1, block))
            index += 2
        table.append((f"pool{block}", index, block))
        index += 1
    return table


def vgg_layer_names(arch: str = VGGArch.VGG19) -> tuple[str, ...]:
    """All layer names of a VGG trunk in order (``conv1_1``, ``relu1_1``, ..., ``pool5``).

    Example:
        >>> names = vgg_layer_names("vgg16")
        >>> len(names), names[:4], names[-1]
        (31, ('conv1_1', 'relu1_1', 'conv1_2', 'relu1_2'), 'pool5')
    """
    return tuple(name for name, _, _ in _layer_table(look_up_option(arch, VGGArch)))


def _conv_index(arch: str) -> dict[str, int]:
    """Caffe conv name -> torchvision ``features`` index."""
    return {name: index for name, index, _ in _layer_table(arch) if name.startswith("conv")}


def _expected_shapes(arch: str) -> dict[int, tuple[tuple[int, ...], tuple[int, ...]]]:
    """torchvision index -> (weight shape, bias shape) of each full-width conv."""
    shapes = {}
    in_ch = 3
    for name, index, block in _layer_table(arch):
        if name.startswith("conv"):
            out_ch = _BLOCK_CHANNELS[block - 1]
            shapes[index] = ((out_ch, in_ch, 3, 3), (out_ch,))
            in_ch = out_ch
    return shapes


def convert_vgg_state_dict(
    state: Mapping[str, torch.Tensor], arch: str, *, source: PathLike | None = None
) -> tuple[dict[str, torch.Tensor], WeightLayout]:
    """Detect the layout of a VGG state dict and return its conv weights under torchvision keys.

    Args:
        state: the file's state dict, torchvision (``features.N.*``) or caffe (``convX_Y.*``) layout;
            classifier keys (``classifier.*``, ``fcN.*``) are ignored.
        arch: ``"vgg16"`` or ``"vgg19"``; every conv key must exist in it with the full-width shape.
        source: the file name, for error messages.

    Returns:
        ``(features_state, layout)`` with keys ``features.<idx>.weight|bias``.

    Raises:
        Medi2iInputError: mixed or unknown layouts, an unexpected key (e.g. batch-norm statistics), a
            key that does not exist in ``arch`` (a VGG19 file given as VGG16), or a wrong shape; the
            message names the key.

    Example:
        >>> w = {"conv1_1.weight": torch.zeros(64, 3, 3, 3), "conv1_1.bias": torch.zeros(64)}
        >>> state, layout = convert_vgg_state_dict(w, "vgg16")
        >>> sorted(state), layout.value
        (['features.0.bias', 'features.0.weight'], 'caffe')
    """
    arch = look_up_option(arch, VGGArch)
    conv_index = _conv_index(arch)
    shapes = _expected_shapes(arch)
    layouts: set[WeightLayout] = set()
    converted: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if _IGNORED_KEY.match(key):
            continue
        tv_match = _TORCHVISION_KEY.match(key)
        caffe_match = _CAFFE_KEY.match(key)
        if tv_match:
            layouts.add(WeightLayout.TORCHVISION)
            index, kind = int(tv_match.group(1)), tv_match.group(2)
            if index not in shapes:
                raise Medi2iInputError(
                    f"key has no convolution in {arch} (is this a file for another VGG depth, or a batch-norm VGG?)",
                    path=source,
                    field=key,
                    expected=f"conv indices {sorted(shapes)}",
                )
        elif caffe_match:
            layouts.add(WeightLayout.CAFFE)
            name, kind = caffe_match.group(1), caffe_match.group(2)
            if name not in conv_index:
                raise Medi2iInputError(
                    f"key has no convolution in {arch} (is this a file for another VGG depth?)",
                    path=source,
                    field=key,
                    expected=f"conv names {sorted(conv_index)}",
                )
            index = conv_index[name]
        else:
            raise Medi2iInputError(
                "unexpected key in a VGG weights file",
                path=source,
                field=key,
                expected="'features.<idx>.weight|bias' or 'conv<b>_<i>.weight|bias' (plus ignored classifier keys)",
            )
        expected = shapes[index][0 if kind == "weight" else 1]
        if tuple(value.shape) != expected:
            raise Medi2iInputError(
                f"wrong shape for {arch}", path=source, field=key, found=tuple(value.shape), expected=expected
            )
        if not value.is_floating_point():
            raise Medi2iInputError("weights must be floating point", path=source, field=key, found=str(value.dtype))
        converted[f"features.{index}.{kind}"] = value
    if len(layouts) != 1:
        found = "both 'features.N' and 'convX_Y' keys" if layouts else "no conv keys"
        raise Medi2iInputError(
            "cannot tell the VGG weight layout",
            path=source,
            field="keys",
            found=found,
            expected="only torchvision 'features.N.*' keys or only caffe 'convX_Y.*' keys",
        )
    return converted, layouts.pop()


class VGGFeatures(nn.Module):
    """Frozen VGG16/VGG19 trunk returning the feature maps of named layers.

    Images in ``input_range`` are converted to the convention of the weights' layout (see the module
    docstring). Single-channel images (``in_channels=1``, e.g. MR/CT slices) are repeated to three
    identical channels before that conversion, i.e. treated as grey RGB.

    Args:
        arch: ``"vgg16"`` or ``"vgg19"``.
        layers: names to return (see :func:`vgg_layer_names`); the trunk is built only up to the deepest.
        pretrained: load weights from a local file (default). ``False`` gives seeded random Kaiming
            weights (torchvision's init: normal, fan-out, zero bias) and logs a warning; for tests only.
        weights_path: the file (or a folder holding it); default: ``DEFAULT_VGG_WEIGHTS[arch]`` in the
            weights folder (``$MEDI2I_WEIGHTS``). Any layout is accepted; files may omit the classifier.
        width: channel multiplier in ``(0, 1]``; ``< 1`` gives a thin random network for fast CPU tests
            and requires ``pretrained=False``.
        input_range: ``"[-1,1]"`` (default) or ``"[0,1]"``, the range of images passed to ``forward``.
        in_channels: 1 or 3 (default).
        seed: seed of the random initialisation (``pretrained=False``).
        pooling: ``"max"`` (default) or ``"avg"``.
        requires_grad: train the trunk (default ``False``: frozen). The module starts in eval mode.

    Raises:
        ValueError: an illegal argument or combination (names the argument, value and allowed values).
        Medi2iInputError: a missing, corrupt or mismatching weights file.

    Attributes:
        feature_channels: ``{layer name: channels}`` of the returned maps (reduced by ``width``).
        layout: the :class:`WeightLayout` of the loaded file (``torchvision`` for random weights), which
            sets the preprocessing.

    Example:
        >>> net = VGGFeatures("vgg19", layers=("relu1_2", "relu2_2"), pretrained=False, width=0.125)
        >>> feats = net(torch.zeros(2, 3, 32, 32))
        >>> {k: tuple(v.shape) for k, v in feats.items()}
        {'relu1_2': (2, 8, 32, 32), 'relu2_2': (2, 16, 16, 16)}
    """

    def __init__(
        self,
        arch: str = VGGArch.VGG19,
        layers: Sequence[str] = ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3"),
        *,
        pretrained: bool = True,
        weights_path: PathLike | None = None,
        width: float = 1.0,
        input_range: str = InputRange.MINUS_ONE_ONE,
        in_channels: int = 3,
        seed: int = 0,
        pooling: str = VGGPooling.MAX,
        requires_grad: bool = False,
    ) -> None:
        super().__init__()
        self.arch = VGGArch(look_up_option(arch, VGGArch))
        self.input_range = InputRange(look_up_option(input_range, InputRange))
        self.pooling = VGGPooling(look_up_option(pooling, VGGPooling))
        if isinstance(layers, str):
            raise ValueError(f"layers must be a sequence of layer names, got the string {layers!r}")
        table = _layer_table(self.arch)
        index_of = {name: index for name, index, _ in table}
        unknown = [name for name in layers if name not in index_of]
        if not layers or unknown:
            raise ValueError(f"layers={tuple(layers)!r}: unknown or empty for {self.arch}; allowed: {list(index_of)}")
        if len(set(layers)) != len(layers):
            raise ValueError(f"layers={tuple(layers)!r} contains duplicates")
        if not 0.0 < width <= 1.0:
            raise ValueError(f"width={width} must be in (0, 1]")
        if width < 1.0 and pretrained:
            raise ValueError(f"width={width} < 1 needs pretrained=False (pretrained weights are full width)")
        if in_channels not in (1, 3):
            raise ValueError(f"in_channels={in_channels} is not supported; allowed: 1 (repeated to RGB) or 3")
        if weights_path is not None and not pretrained:
            raise ValueError("weights_path is given but pretrained=False; set pretrained=True to load the file")

        # Find the file before building the trunk, so a missing file fails fast.
        path = (
            resolve_weights(
                DEFAULT_VGG_WEIGHTS[self.arch], path=weights_path, purpose=f"VGGFeatures({self.arch}, pretrained=True)"
            )
            if pretrained
            else None
        )
        self.layers = tuple(layers)
        self.in_channels = in_channels
        self._index_of = {name: index_of[name] for name in self.layers}
        depth = max(self._index_of.values()) + 1
        self._deepest = table[depth - 1][0]
        self._pools = sum(1 for name, index, _ in table if name.startswith("pool") and index < depth)
        self.features = self._build_trunk(table[:depth], width)

        if path is not None:
            self.layout = self._load(path)
        else:
            logger.warning(
                "VGGFeatures(%s): pretrained=False, using random weights (seed %d, width %g); "
                "features are not ImageNet features",
                self.arch,
                seed,
                width,
            )
            self._init_random(seed)
            self.layout = WeightLayout.TORCHVISION  # random weights: use the torchvision convention
        self._register_preprocessing()
        self.requires_grad_(requires_grad)
        self.eval()

    def _build_trunk(self, table: list[tuple[str, int, int]], width: float) -> nn.Sequential:
        modules: list[nn.Module] = []
        in_ch = 3
        channels: dict[str, int] = {}
        for name, _, block in table:
            if name.startswith("conv"):
                out_ch = max(1, round(_BLOCK_CHANNELS[block - 1] * width))
                modules.append(nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=1))
                in_ch = out_ch
            elif name.startswith("relu"):
                # not in-place: a requested conv output must survive the ReLU that follows it
                modules.append(nn.ReLU(inplace=False))
            else:
                modules.append(nn.MaxPool2d(2, 2) if self.pooling == VGGPooling.MAX else nn.AvgPool2d(2, 2))
            channels[name] = in_ch
        self.feature_channels = {name: channels[name] for name in self.layers}
        return nn.Sequential(*modules)

    def _init_random(self, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        for module in self.features:
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu", generator=generator)
                nn.init.zeros_(module.bias)

    def _load(self, path: PathLike) -> WeightLayout:
        state, layout = convert_vgg_state_dict(load_state_dict_file(path), self.arch, source=path)
        own = self.features.state_dict()
        wanted = {key: state.get(f"features.{key}") for key in own}
        missing = [f"features.{key}" for key, value in wanted.items() if value is None]
        if missing:
            raise Medi2iInputError(
                f"weights file lacks {len(missing)} conv tensors needed up to layer '{self._deepest}'",
                path=path,
                field=missing[0] if layout == WeightLayout.TORCHVISION else _caffe_name(missing[0], self.arch),
                expected=f"all {self.arch} conv weights",
            )
        # Only the trunk up to the deepest requested layer is built; deeper tensors were checked, not kept.
        self.features.load_state_dict(wanted, strict=True)
        return layout

    def _register_preprocessing(self) -> None:
        if self.layout == WeightLayout.TORCHVISION:
            mean, std, scale, bgr = IMAGENET_MEAN, IMAGENET_STD, 1.0, False
        else:
            mean, std, scale, bgr = CAFFE_MEAN_BGR, (1.0, 1.0, 1.0), 255.0, True
        # non-persistent: the state dict stays a pure torchvision-layout weights file
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self._value_scale = scale
        self._bgr = bgr

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """Map images in ``input_range`` to the network input of the weights' layout.

        Args:
            x: ``(B, in_channels, H, W)`` in ``input_range``.

        Returns:
            ``(B, 3, H, W)`` network input (torchvision: normalised RGB; caffe: mean-subtracted BGR x 255).
        """
        self._check_input(x)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if self.input_range == InputRange.MINUS_ONE_ONE:
            x = (x + 1.0) / 2.0
        if self._bgr:
            x = x.flip(1)
        return (x * self._value_scale - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def forward_preprocessed(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Run the trunk on a network input that is already preprocessed (e.g. LPIPS's own scaling).

        Args:
            x: ``(B, 3, H, W)`` network input.

        Returns:
            ``{layer name: (B, C_l, H_l, W_l)}`` in the order of ``layers``.
        """
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected network input of shape (B, 3, H, W), got {tuple(x.shape)}")
        self._check_size(x)
        by_index = {index: name for name, index in self._index_of.items()}
        found: dict[str, torch.Tensor] = {}
        for index, module in enumerate(self.features):
            x = module(x)
            if index in by_index:
                found[by_index[index]] = x
        return {name: found[name] for name in self.layers}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Features of images in ``input_range``.

        Args:
            x: ``(B, in_channels, H, W)``; ``H, W >= 2**p`` for the ``p`` poolings before the deepest layer.

        Returns:
            ``{layer name: (B, C_l, H / 2**k, W / 2**k)}`` in the order of ``layers``.
        """
        return self.forward_preprocessed(self.preprocess(x))

    def _check_input(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor) or x.ndim != 4:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"expected images of shape (B, C, H, W), got {shape}")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"expected images with {self.in_channels} channels (in_channels), got {x.shape[1]}")
        if not x.is_floating_point():
            raise ValueError(f"expected floating-point images, got dtype {x.dtype}")

    def _check_size(self, x: torch.Tensor) -> None:
        smallest = 2**self._pools
        if min(x.shape[2:]) < smallest:
            raise ValueError(
                f"expected H, W >= {smallest} for {self._pools} poolings up to '{self._deepest}', "
                f"got {tuple(x.shape[2:])}"
            )


def _caffe_name(torchvision_key: str, arch: str) -> str:
    """``features.<idx>.<kind>`` -> ``conv<b>_<i>.<kind>`` for error messages about caffe files."""
    _, index, kind = torchvision_key.split(".")
    names = {i: n for n, i in _conv_index(arch).items()}
    return f"{names[int(index)]}.{kind}"
