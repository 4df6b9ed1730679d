"""Shared network blocks: pretrained feature extractors (VGG, LPIPS, FID Inception) that load local weights only."""

from __future__ import annotations

from medi2i.nets.inception import FIDInceptionFeatures
from medi2i.nets.lpips import LPIPS
from medi2i.nets.vgg import VGGFeatures, vgg_layer_names

__all__ = ["LPIPS", "FIDInceptionFeatures", "VGGFeatures", "vgg_layer_names"]
