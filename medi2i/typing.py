"""Type aliases shared across medi2i."""

from __future__ import annotations

import os
from typing import Union

import numpy as np
import numpy.typing as npt
import torch

PathLike = Union[str, "os.PathLike[str]"]
ArrayLike = Union[np.ndarray, torch.Tensor]
FloatArray = npt.NDArray[np.floating]
Affine = npt.NDArray[np.float64]  # (4, 4) voxel -> RAS+ world (mm)
