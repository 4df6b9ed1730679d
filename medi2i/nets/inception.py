"""FID Inception-v3 feature extractor (2048-d pool features) from local weights; no torchvision, no downloads.

Szegedy et al., "Rethinking the Inception Architecture for Computer Vision", CVPR 2016; FID: Heusel et
al., NeurIPS 2017. FID is defined with the TensorFlow Inception graph ``inception-2015-12-05``; its
PyTorch port ``pt_inception-2015-12-05-6726825d.pth`` (pytorch-fid) uses the torchvision ``Inception3``
key layout (``Conv2d_1a_3x3.conv.weight``, ``Mixed_5b.branch1x1.bn.running_mean``, ..., ``fc.*`` with
1008 classes). Three details differ from torchvision's Inception and are reproduced here, because they
change the features (and so every FID value):

* the pooling branch of the A, C and first E blocks averages over the 3x3 window *without* the zero
  padding (TensorFlow's ``count_include_pad=False``);
* the pooling branch of the last E block (``Mixed_7c``) is a 3x3 *max* pool;
* images are resized to 299 x 299 (bilinear, ``align_corners=False``) and scaled to [-1, 1].

Only the trunk up to the global average pool is built; classifier (``fc.*``) and auxiliary
(``AuxLogits.*``) weights in the file are ignored.
"""

from __future__ import annotations

import logging
import re

import torch
import torch.nn.functional as F
from monai.utils import look_up_option
from torch import nn

from medi2i.errors import Medi2iInputError
from medi2i.nets.vgg import InputRange
from medi2i.typing import PathLike
from medi2i.weights import load_state_dict_file, resolve_weights

__all__ = ["FID_INCEPTION_WEIGHTS", "FIDInceptionFeatures"]

logger = logging.getLogger(__name__)

FID_INCEPTION_WEIGHTS = "pt_inception-2015-12-05-6726825d.pth"
_IGNORED_KEY = re.compile(r"^(fc\.|AuxLogits\.)|\.num_batches_tracked$")
_MIN_SIZE = 75  # smallest input the stride pattern of Inception-v3 accepts without resizing


class ConvBN(nn.Module):
    """Convolution without bias, batch norm (eps 1e-3, as in the TF graph), ReLU."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int = 1,
        padding: int | tuple[int, int] = 0,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, eps=1e-3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg_pool_valid(x: torch.Tensor) -> torch.Tensor:
    # TF averages only over the in-image part of the window; torchvision's default counts the padding
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


def _max_pool_same(x: torch.Tensor) -> torch.Tensor:
    return F.max_pool2d(x, kernel_size=3, stride=1, padding=1)


class MixedA(nn.Module):
    """35x35 block: 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | pool-1x1 (``Mixed_5b..5d``)."""

    def __init__(self, in_channels: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = ConvBN(in_channels, 64, 1)
        self.branch5x5_1 = ConvBN(in_channels, 48, 1)
        self.branch5x5_2 = ConvBN(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = ConvBN(in_channels, 64, 1)
        self.branch3x3dbl_2 = ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = ConvBN(96, 96, 3, padding=1)
        self.branch_pool = ConvBN(in_channels, pool_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.branch1x1(x)
        b = self.branch5x5_2(self.branch5x5_1(x))
        c = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        d = self.branch_pool(_avg_pool_valid(x))
        return torch.cat([a, b, c, d], dim=1)


class ReductionB(nn.Module):
    """35 -> 17 reduction: 3x3/2 | 1x1-3x3-3x3/2 | maxpool/2 (``Mixed_6a``)."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3 = ConvBN(in_channels, 384, 3, stride=2)
        self.branch3x3dbl_1 = ConvBN(in_channels, 64, 1)
        self.branch3x3dbl_2 = ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = ConvBN(96, 96, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.branch3x3(x)
        b = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([a, b, F.max_pool2d(x, kernel_size=3, stride=2)], dim=1)


class MixedC(nn.Module):
    """17x17 block with factorised 7x7 convolutions (``Mixed_6b..6e``)."""

    def __init__(self, in_channels: int, channels_7x7: int) -> None:
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = ConvBN(in_channels, 192, 1)
        self.branch7x7_1 = ConvBN(in_channels, c7, 1)
        self.branch7x7_2 = ConvBN(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = ConvBN(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = ConvBN(in_channels, c7, 1)
        self.branch7x7dbl_2 = ConvBN(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = ConvBN(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = ConvBN(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = ConvBN(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = ConvBN(in_channels, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.branch1x1(x)
        b = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        c = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            c = layer(c)
        d = self.branch_pool(_avg_pool_valid(x))
        return torch.cat([a, b, c, d], dim=1)


class ReductionD(nn.Module):
    """17 -> 8 reduction: 1x1-3x3/2 | 1x1-1x7-7x1-3x3/2 | maxpool/2 (``Mixed_7a``)."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3_1 = ConvBN(in_channels, 192, 1)
        self.branch3x3_2 = ConvBN(192, 320, 3, stride=2)
        self.branch7x7x3_1 = ConvBN(in_channels, 192, 1)
        self.branch7x7x3_2 = ConvBN(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = ConvBN(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = ConvBN(192, 192, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.branch3x3_2(self.branch3x3_1(x))
        b = self.branch7x7x3_1(x)
        for layer in (self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            b = layer(b)
        return torch.cat([a, b, F.max_pool2d(x, kernel_size=3, stride=2)], dim=1)


class MixedE(nn.Module):
    """8x8 block with split 1x3/3x1 outputs (``Mixed_7b`` average pool, ``Mixed_7c`` max pool)."""

    def __init__(self, in_channels: int, *, max_pool: bool) -> None:
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = ConvBN(in_channels, 320, 1)
        self.branch3x3_1 = ConvBN(in_channels, 384, 1)
        self.branch3x3_2a = ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = ConvBN(in_channels, 448, 1)
        self.branch3x3dbl_2 = ConvBN(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = ConvBN(in_channels, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.branch1x1(x)
        b = self.branch3x3_1(x)
        b = torch.cat([self.branch3x3_2a(b), self.branch3x3_2b(b)], dim=1)
        c = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        c = torch.cat([self.branch3x3dbl_3a(c), self.branch3x3dbl_3b(c)], dim=1)
        d = self.branch_pool(_max_pool_same(x) if self.max_pool else _avg_pool_valid(x))
        return torch.cat([a, b, c, d], dim=1)


class FIDInceptionFeatures(nn.Module):
    """The 2048-d pool features of the FID Inception-v3, frozen, from a local weights file.

    Args:
        pretrained: load ``pt_inception-2015-12-05-6726825d.pth`` (default). ``False`` gives seeded
            random weights (Kaiming normal convs, unit batch norms) and logs a warning; FID values from it
            are only good for tests.
        weights_path: the file, or a folder holding it (default: the weights folder, ``$MEDI2I_WEIGHTS``).
        input_range: ``"[-1,1]"`` (default, the range of medi2i's synthesis outputs) or ``"[0,1]"``.
        in_channels: 1 (grey slices, repeated to RGB) or 3.
        resize_input: resize to 299 x 299 first (default ``True``, as FID is defined). ``False`` needs
            inputs of at least 75 x 75 and gives features that are not comparable with published FIDs.
        seed: seed of the random weights (``pretrained=False``).

    Example:
        >>> net = FIDInceptionFeatures(pretrained=False, resize_input=False)
        >>> tuple(net(torch.zeros(2, 3, 75, 75)).shape)
        (2, 2048)
    """

    def __init__(
        self,
        *,
        pretrained: bool = True,
        weights_path: PathLike | None = None,
        input_range: str = InputRange.MINUS_ONE_ONE,
        in_channels: int = 3,
        resize_input: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.input_range = InputRange(look_up_option(input_range, InputRange))
        if in_channels not in (1, 3):
            raise ValueError(f"in_channels={in_channels} is not supported; allowed: 1 (repeated to RGB) or 3")
        if weights_path is not None and not pretrained:
            raise ValueError("weights_path is given but pretrained=False; set pretrained=True to load the file")
        self.in_channels = in_channels
        self.resize_input = resize_input
        # Find the file before building 22 M parameters, so a missing file fails fast.
        path = (
            resolve_weights(FID_INCEPTION_WEIGHTS, path=weights_path, purpose="FID Inception features")
            if pretrained
            else None
        )
        # Attribute names are the torchvision/pytorch-fid module names, so the file's keys load directly.
        self.Conv2d_1a_3x3 = ConvBN(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = ConvBN(32, 32, 3)
        self.Conv2d_2b_3x3 = ConvBN(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = ConvBN(64, 80, 1)
        self.Conv2d_4a_3x3 = ConvBN(80, 192, 3)
        self.Mixed_5b = MixedA(192, pool_features=32)
        self.Mixed_5c = MixedA(256, pool_features=64)
        self.Mixed_5d = MixedA(288, pool_features=64)
        self.Mixed_6a = ReductionB(288)
        self.Mixed_6b = MixedC(768, channels_7x7=128)
        self.Mixed_6c = MixedC(768, channels_7x7=160)
        self.Mixed_6d = MixedC(768, channels_7x7=160)
        self.Mixed_6e = MixedC(768, channels_7x7=192)
        self.Mixed_7a = ReductionD(768)
        self.Mixed_7b = MixedE(1280, max_pool=False)
        self.Mixed_7c = MixedE(2048, max_pool=True)
        if path is not None:
            self._load(path)
        else:
            logger.warning(
                "FIDInceptionFeatures: pretrained=False, using random weights (seed %d); FID values "
                "are not comparable with published ones",
                seed,
            )
            self._init_random(seed)
        self.requires_grad_(False)
        self.eval()

    def _init_random(self, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu", generator=generator)

    def _load(self, path: PathLike) -> None:
        state = {k: v for k, v in load_state_dict_file(path).items() if not _IGNORED_KEY.search(k)}
        own = {k: v for k, v in self.state_dict().items() if not _IGNORED_KEY.search(k)}
        for key, value in state.items():
            if key not in own:
                raise Medi2iInputError(
                    "unexpected key for the FID Inception-v3",
                    path=path,
                    field=key,
                    expected=f"the pytorch-fid layout of {FID_INCEPTION_WEIGHTS}",
                )
            if tuple(value.shape) != tuple(own[key].shape):
                raise Medi2iInputError(
                    "wrong shape for the FID Inception-v3",
                    path=path,
                    field=key,
                    found=tuple(value.shape),
                    expected=tuple(own[key].shape),
                )
        missing = [key for key in own if key not in state]
        if missing:
            raise Medi2iInputError(
                f"weights file lacks {len(missing)} tensors of the FID Inception-v3",
                path=path,
                field=missing[0],
                expected=f"the pytorch-fid layout of {FID_INCEPTION_WEIGHTS}",
            )
        # strict=False only because old files omit the batch-norm counters (num_batches_tracked), which
        # eval-mode batch norm never reads; every other key was matched above.
        self.load_state_dict(state, strict=False)

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """Map images in ``input_range`` to the network input: RGB, [-1, 1], 299 x 299 if ``resize_input``.

        Args:
            x: ``(B, in_channels, H, W)``.

        Returns:
            ``(B, 3, H', W')``.
        """
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected images of shape (B, {self.in_channels}, H, W), got {tuple(x.shape)}")
        if not x.is_floating_point():
            raise ValueError(f"expected floating-point images, got dtype {x.dtype}")
        if not self.resize_input and min(x.shape[2:]) < _MIN_SIZE:
            raise ValueError(f"expected H, W >= {_MIN_SIZE} with resize_input=False, got {tuple(x.shape[2:])}")
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if self.input_range == InputRange.ZERO_ONE:
            x = 2.0 * x - 1.0  # the TF graph takes [-1, 1]
        if self.resize_input:
            x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pool features of images in ``input_range``.

        Args:
            x: ``(B, in_channels, H, W)``; any size when ``resize_input`` (default), else ``H, W >= 75``.

        Returns:
            ``(B, 2048)`` features (the input of FID's Gaussian fit).
        """
        x = self.preprocess(x)
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b, self.Mixed_6c,
                      self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b, self.Mixed_7c):  # fmt: skip
            x = block(x)
        return x.mean(dim=(2, 3))
