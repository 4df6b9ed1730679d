"""PatchNCE: the patchwise contrastive loss of CUT and its projection head (Park et al., ECCV 2020).

Implements the thesis eqs. (3.6)-(3.7) (digest ``park_thesis.md`` section 4.2) as the official code computes it:

- :class:`PatchSampleMLP` (the code's ``netF``, "mlp_sample") samples ``S`` spatial locations per feature map
  (the same locations for every image of the batch, and the same for query and key features when the caller
  passes the key's ids to the query call), projects each feature vector with a 2-layer MLP
  ``Linear(C_l, 256) - ReLU - Linear(256, 256)`` (one MLP per layer ``l``) and L2-normalises it.
  The MLPs are built lazily from the channel counts of the first features seen (or with :meth:`build`),
  because ``C_l`` depends on the generator; loading a state dict into an unbuilt head builds it first, so a
  checkpoint restores it without a data-dependent forward.
- :class:`PatchNCELoss` is the InfoNCE of eq. (3.6) for each query ``v`` (output patch), its positive ``v+``
  (input patch at the same location) and negatives ``v-`` (the other sampled input locations)::

      l(v, v+, v-) = -log[ exp(v.v+ / tau) / (exp(v.v+ / tau) + sum_n exp(v.v-_n / tau)) ],  tau = 0.07

  Keys are detached (gradients reach the generator only through the query branch). Negatives come from the
  same image only (``negatives="image"``, the code's ``nce_includes_all_negatives_from_minibatch=False``,
  independent of batch size and device count - the code's per-GPU reshape bug cannot happen because the batch
  axis is explicit here), or from every location of the whole batch (``negatives="batch"``, SinCUT).
  As in the code, the logits are ``[positive | S negatives with the self-pair set to -10] / tau`` and the loss
  is a cross-entropy with target index 0; with tau = 0.07 the masked entry contributes ``exp(-142.9)``, so this
  equals a cross-entropy over the ``S x S`` similarity matrix with the diagonal as target (digest 4.6).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any

import torch
import torch.nn.functional as F
from monai.utils import look_up_option
from torch import Tensor, nn

__all__ = ["NegativeSource", "PatchNCELoss", "PatchSampleMLP", "l2_normalize"]


class NegativeSource(StrEnum):
    """Where PatchNCE takes its negatives from (digest 4.2 and 4.5)."""

    IMAGE = "image"  # other sampled locations of the same image (CUT, FastCUT)
    BATCH = "batch"  # other sampled locations of every image of the batch (SinCUT)


def l2_normalize(x: Tensor, eps: float = 1e-7) -> Tensor:
    """Divide each row of ``x`` (last axis = channels) by its L2 norm plus ``eps``, as the code's ``Normalize``."""
    return x / (x.norm(p=2, dim=-1, keepdim=True) + eps)


class PatchNCELoss(nn.Module):
    """Patchwise InfoNCE between query features (output image) and key features (input image), eq. (3.6).

    Args:
        temperature: tau of eq. (3.6); 0.07 in the thesis and the code (``nce_T``).
        negatives: ``"image"`` (negatives from the same image; CUT/FastCUT) or ``"batch"`` (negatives from all
            sampled locations of the batch; SinCUT with one patch per crop).
        self_logit: value written on the self-pair of the negatives block before dividing by tau (-10 in the
            code; the README pseudo-code uses -inf, which gives the same loss up to ``exp(-10/tau)``).

    Inputs of :meth:`forward`: ``query`` and ``key`` of shape ``(B, S, C)``: ``S`` sampled locations per image,
    row ``s`` of ``key`` being the positive of row ``s`` of ``query``; both normally L2-normalised.

    Example:
        >>> q = l2_normalize(torch.randn(2, 8, 16))
        >>> crit = PatchNCELoss()
        >>> tuple(crit.logits(q, q).shape)  # (B * S, 1 + S): positive first, then the S negatives
        (16, 9)
        >>> bool(crit(q, q) < crit(q, l2_normalize(torch.randn(2, 8, 16))))
        True
    """

    def __init__(self, temperature: float = 0.07, negatives: str = "image", self_logit: float = -10.0) -> None:
        super().__init__()
        if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
            raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
        self.temperature = float(temperature)
        self.negatives = NegativeSource(look_up_option(negatives, NegativeSource))
        self.self_logit = float(self_logit)

    def logits(self, query: Tensor, key: Tensor) -> Tensor:
        """Return the ``(N, 1 + M)`` logit matrix of eq. (3.6), already divided by tau; column 0 is the positive.

        ``N = B * S`` queries. With ``negatives="image"`` each row holds its ``M = S`` same-image similarities
        (self-pair masked); with ``"batch"`` it holds all ``M = B * S`` similarities of the batch (self masked).
        Keys are detached.
        """
        if query.ndim != 3 or key.shape != query.shape:
            raise ValueError(
                f"query and key must have the same shape (B, S, C), got {tuple(query.shape)} and {tuple(key.shape)}"
            )
        key = key.detach()
        b, s, c = query.shape
        # positive logits: v . v+ for each location, (B*S, 1)
        l_pos = (query * key).sum(dim=-1).reshape(b * s, 1)
        if self.negatives is NegativeSource.BATCH:
            query, key = query.reshape(1, b * s, c), key.reshape(1, b * s, c)
        groups, per_group = query.shape[0], query.shape[1]
        # negatives: v . v-_n for the other locations of the same group (image, or the whole batch), (G, S', S')
        l_neg = torch.bmm(query, key.transpose(1, 2))
        eye = torch.eye(per_group, dtype=torch.bool, device=query.device)
        l_neg = l_neg.masked_fill(eye.unsqueeze(0), self.self_logit).reshape(groups * per_group, per_group)
        return torch.cat([l_pos, l_neg], dim=1) / self.temperature

    def forward(self, query: Tensor, key: Tensor) -> Tensor:
        """Mean of eq. (3.6) over all queries (a scalar); cross-entropy with target 0 over :meth:`logits`."""
        out = self.logits(query, key)
        target = torch.zeros(out.shape[0], dtype=torch.long, device=out.device)
        return F.cross_entropy(out, target)


class PatchSampleMLP(nn.Module):
    """Sample patch locations from a list of feature maps and project them with per-layer MLPs (``netF``).

    For each feature map ``(B, C_l, H_l, W_l)`` it picks ``min(num_patches, H_l * W_l)`` locations (a random
    permutation, or the ``patch_ids`` given, shared by all images of the batch), projects the ``C_l``-vectors with
    ``H_l = Linear(C_l, mlp_channels) - ReLU - Linear(mlp_channels, mlp_channels)`` and L2-normalises them
    (section 3.3.1 of the thesis: "a two-layer MLP with 256 units at each layer ... normalize by its L2 norm").

    The MLPs are created at the first :meth:`forward` (their input widths are the features' channel counts) or by
    :meth:`build`, with Xavier-normal weights of gain ``init_gain`` (0.02, as the code's ``init_net(netF)``) and zero
    biases. Create the optimiser only after building.

    Args:
        mlp_channels: width of both MLP layers (``netF_nc``, 256).
        use_mlp: False gives the code's ``netF="sample"``: sampled features are only L2-normalised.
        init_gain: gain of the Xavier-normal init of the Linear weights (0.02 in the code).

    Example:
        >>> head = PatchSampleMLP(mlp_channels=8)
        >>> head.built
        False
        >>> feats = [torch.randn(2, 3, 4, 4), torch.randn(2, 5, 2, 2)]
        >>> out, ids = head(feats, num_patches=6)
        >>> [tuple(o.shape) for o in out], head.channels
        ([(2, 6, 8), (2, 4, 8)], [3, 5])
    """

    def __init__(self, mlp_channels: int = 256, *, use_mlp: bool = True, init_gain: float = 0.02) -> None:
        super().__init__()
        if not (isinstance(mlp_channels, int) and mlp_channels > 0):
            raise ValueError(f"mlp_channels must be a positive int, got {mlp_channels!r}")
        self.mlp_channels = mlp_channels
        self.use_mlp = bool(use_mlp)
        self.init_gain = float(init_gain)
        self.mlps = nn.ModuleList()
        self.channels: list[int] = []
        self._built = False

    @property
    def built(self) -> bool:
        """Whether the per-layer MLPs exist (after :meth:`build`, the first :meth:`forward` or a state-dict load)."""
        return self._built

    def build(self, channels: Sequence[int], *, device: torch.device | str | None = None, dtype=None) -> None:
        """Create one MLP per feature layer with input width ``channels[l]``; a no-op when already built alike.

        Raises:
            ValueError: when already built for other channel counts, or a channel count is not a positive int.
        """
        channels = [int(c) for c in channels]
        if not channels or any(c <= 0 for c in channels):
            raise ValueError(f"channels must be a non-empty list of positive ints, got {channels!r}")
        if self._built:
            if channels != self.channels:
                raise ValueError(f"PatchSampleMLP already built for channels {self.channels}, got {channels}")
            return
        self.channels = channels
        if self.use_mlp:
            for c in channels:
                mlp = nn.Sequential(
                    nn.Linear(c, self.mlp_channels), nn.ReLU(), nn.Linear(self.mlp_channels, self.mlp_channels)
                )
                for layer in mlp:
                    if isinstance(layer, nn.Linear):
                        nn.init.xavier_normal_(layer.weight, gain=self.init_gain)
                        nn.init.zeros_(layer.bias)
                self.mlps.append(mlp.to(device=device, dtype=dtype))
        self._built = True

    def sample_ids(self, feats: Sequence[Tensor], num_patches: int, generator: torch.Generator | None = None):
        """Random location ids per layer: the first ``min(num_patches, H_l * W_l)`` of a permutation of ``H_l*W_l``.

        The permutation is drawn on the CPU (``generator`` or the global CPU RNG, which the trainer checkpoints;
        the code moved off CUDA ``randperm`` for the same reason) and moved to the features' device.
        """
        _check_num_patches(num_patches)
        ids = []
        for feat in feats:
            n = feat.shape[2] * feat.shape[3]
            perm = torch.randperm(n, generator=generator)[: min(num_patches, n)]
            ids.append(perm.to(feat.device))
        return ids

    def forward(
        self,
        feats: Sequence[Tensor],
        num_patches: int = 256,
        patch_ids: Sequence[Tensor] | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[list[Tensor], list[Tensor]]:
        """Sample, project and normalise.

        Args:
            feats: feature maps ``(B, C_l, H_l, W_l)``, one per NCE layer.
            num_patches: locations per layer (``S``), capped at ``H_l * W_l``.
            patch_ids: the ids returned by an earlier call (the key features) to sample the query features at the
                same locations; new random ids when None.
            generator: optional CPU generator for the random ids.

        Returns:
            ``(projected, patch_ids)``: a list of ``(B, S_l, mlp_channels)`` unit vectors (``(B, S_l, C_l)`` when
            ``use_mlp=False``) and the list of ``(S_l,)`` location ids used.
        """
        feats = list(feats)
        if not feats or any(f.ndim != 4 for f in feats):
            raise ValueError(
                f"feats must be a non-empty list of (B, C, H, W) tensors, got {[tuple(f.shape) for f in feats]}"
            )
        if not self._built:
            self.build([f.shape[1] for f in feats], device=feats[0].device, dtype=feats[0].dtype)
        if [f.shape[1] for f in feats] != self.channels:
            raise ValueError(f"feature channels {[f.shape[1] for f in feats]} differ from the built {self.channels}")
        if patch_ids is None:
            patch_ids = self.sample_ids(feats, num_patches, generator)
        elif len(patch_ids) != len(feats):
            raise ValueError(f"got {len(patch_ids)} patch_ids for {len(feats)} feature maps")
        out = []
        for layer, (feat, ids) in enumerate(zip(feats, patch_ids, strict=True)):
            x = feat.flatten(2).transpose(1, 2)[:, ids.to(feat.device), :]  # (B, S_l, C_l)
            if self.use_mlp:
                x = self.mlps[layer](x)
            out.append(l2_normalize(x))
        return out, list(patch_ids)

    def _load_from_state_dict(
        self,
        state_dict: Mapping[str, Any],
        prefix: str,
        local_metadata: dict,
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        # A fresh head has no MLPs yet: build them from the checkpoint's first-layer weights so resuming needs no
        # data-dependent forward (the official code's fragile ``data_dependent_initialize``).
        if not self._built and self.use_mlp:
            channels: list[int] = []
            while f"{prefix}mlps.{len(channels)}.0.weight" in state_dict:
                weight = state_dict[f"{prefix}mlps.{len(channels)}.0.weight"]
                channels.append(int(weight.shape[1]))
            if channels:
                self.build(channels, device=weight.device, dtype=weight.dtype)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )


def _check_num_patches(num_patches: int) -> None:
    if isinstance(num_patches, bool) or not isinstance(num_patches, int) or num_patches <= 0:
        raise ValueError(f"num_patches must be a positive int, got {num_patches!r}")
