"""The registration MDP of RL-I2IT (digest section 1.2), batched and kept on the device.

State ``s_t = [I_F, I_M o U_{t-1}]`` (the *original* moving image warped once by the accumulated field),
action ``a_t`` = a per-step displacement (voxels), transition ``U_t = a_t + warp(U_{t-1}, a_t)`` (paper
Eq. 11-12 in the code's order, decision D1), reward ``r_t = k (Dice_t - Dice_{t-1})`` (paper Eq. 14) on
K-means pseudo-labels or ground-truth labels (D6), optional bonus and termination (D5), or an SSIM gain.
No method here synchronises with the host, so a CUDA rollout never waits for the GPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from monai.metrics.regression import SSIMMetric

from medi2i.registration.config import Composition, RewardKind, RewardLabels, RLI2ITConfig
from medi2i.spatial import compose, warp


def kmeans_labels(
    image: torch.Tensor,
    clusters: int = 3,
    iterations: int = 10,
    mask: torch.Tensor | None = None,
    init: str = "range",
) -> torch.Tensor:
    """Per-image 1-D K-means on intensity, labels sorted by centroid (D6): 0 = darkest cluster.

    Lloyd's iterations run a fixed number of times (no convergence test, so no host sync). Centroids start
    deterministically (no RNG): ``init="range"`` (digest default) spaces them evenly between each image's
    min and max; ``"quantile"`` puts centroid ``j`` at the ``(j + 1/2) / k`` intensity quantile, which keeps a
    few very bright voxels (scalp, vessels) from claiming a cluster of their own. With ``mask`` only the
    voxels inside it are clustered (initialisation and centroids); they get labels ``1..k`` (1 = darkest)
    and the voxels outside label 0, so no cluster shares its label with the outside.

    Args:
        image: ``(B, 1, *spatial)`` intensities.
        clusters: number of clusters k.
        iterations: Lloyd iterations.
        mask: optional ``(B, 1, *spatial)`` foreground (non-zero = inside); each image needs a voxel inside.
        init: ``"range"`` or ``"quantile"``.

    Returns:
        ``(B, 1, *spatial)`` int64 labels ordered by centroid intensity: ``0..k-1``, or with ``mask``
        ``1..k`` inside and 0 outside.

    Example:
        >>> img = torch.tensor([0.0, 0.1, 0.5, 0.55, 1.0, 0.95]).reshape(1, 1, 6, 1)
        >>> kmeans_labels(img).flatten().tolist()
        [0, 0, 1, 1, 2, 2]
        >>> inside = torch.tensor([1, 1, 1, 1, 0, 0]).reshape(1, 1, 6, 1)  # the bright voxels are outside
        >>> kmeans_labels(img, 2, mask=inside).flatten().tolist()
        [1, 1, 2, 2, 0, 0]
    """
    if clusters < 2 or iterations < 1:
        raise ValueError(f"clusters must be >= 2 and iterations >= 1, got {clusters}, {iterations}")
    if init not in ("range", "quantile"):
        raise ValueError(f"init must be 'range' or 'quantile', got {init!r}")
    x = image.flatten(1).float()  # (B, N)
    if mask is None:
        inside = torch.ones_like(x, dtype=torch.bool)
    else:
        if mask.shape != image.shape:
            raise ValueError(f"expected mask of shape {tuple(image.shape)}, got {tuple(mask.shape)}")
        inside = mask.flatten(1) != 0
    weight = inside.to(x.dtype)
    frac = (torch.arange(clusters, device=x.device, dtype=x.dtype) + 0.5) / clusters
    if init == "range":
        lo = torch.where(inside, x, torch.full_like(x, float("inf"))).min(dim=1, keepdim=True).values
        hi = torch.where(inside, x, torch.full_like(x, float("-inf"))).max(dim=1, keepdim=True).values
        centroids = lo + (hi - lo) * frac  # (B, k)
    else:  # masked quantiles without a host sync: outside voxels sort to the end
        ordered = torch.where(inside, x, torch.full_like(x, float("inf"))).sort(dim=1).values
        count = weight.sum(dim=1, keepdim=True).clamp_min(1.0)
        index = (frac[None, :] * count).long().clamp(max=x.shape[1] - 1)
        centroids = ordered.gather(1, index)
    for _ in range(iterations):
        assign = (x[:, :, None] - centroids[:, None, :]).abs().argmin(dim=2)  # (B, N)
        onehot = torch.nn.functional.one_hot(assign, clusters).to(x.dtype) * weight[:, :, None]  # (B, N, k)
        count = onehot.sum(dim=1)
        total = (onehot * x[:, :, None]).sum(dim=1)
        # an empty cluster keeps its centroid instead of collapsing to 0
        centroids = torch.where(count > 0, total / count.clamp_min(1.0), centroids)
    order = centroids.argsort(dim=1)
    rank = order.argsort(dim=1)  # rank[b, c] = position of cluster c after sorting by centroid
    assign = (x[:, :, None] - centroids[:, None, :]).abs().argmin(dim=2)
    labels = rank.gather(1, assign)
    if mask is not None:
        labels = (labels + 1) * inside.long()
    return labels.reshape(image.shape)


def label_dice(pred: torch.Tensor, ref: torch.Tensor, label_ids: tuple[int, ...]) -> torch.Tensor:
    """Mean Dice over ``label_ids`` present in ``ref`` (D15), per batch item, on the device.

    Args:
        pred: ``(B, 1, *spatial)`` integer labels (the warped moving labels).
        ref: ``(B, 1, *spatial)`` integer labels (the fixed labels).
        label_ids: labels to score; those absent from ``ref`` are skipped.

    Returns:
        ``(B,)`` float32; 1.0 for a pair whose reference holds none of the labels.

    Example:
        >>> ref = torch.zeros(1, 1, 4, 4, dtype=torch.long); ref[..., :2, :] = 1; ref[..., 2:, :] = 2
        >>> pred = ref.clone(); pred[..., 1, :] = 2
        >>> round(float(label_dice(pred, ref, (1, 2, 3))), 4)  # (2/3 + 4/5) / 2; label 3 is absent
        0.7333
    """
    ids = torch.as_tensor(label_ids, device=ref.device).reshape(1, -1, *([1] * (ref.ndim - 2)))
    p = (pred == ids).flatten(2).float()
    r = (ref == ids).flatten(2).float()
    inter, size_p, size_r = (p * r).sum(2), p.sum(2), r.sum(2)
    present = size_r > 0
    per_label = 2.0 * inter / (size_p + size_r).clamp_min(1.0)
    count = present.sum(1)
    mean = (per_label * present).sum(1) / count.clamp_min(1)
    return torch.where(count > 0, mean, torch.ones_like(mean))


@dataclass
class StepResult:
    """One batched transition: ``state`` is s_{t+1}; ``store`` marks transitions the buffer keeps (D20)."""

    state: torch.Tensor
    reward: torch.Tensor
    done: torch.Tensor
    score: torch.Tensor
    store: torch.Tensor


class RegistrationEnv:
    """Batched registration environment (digest section 1.2), all tensors on the inputs' device.

    Args:
        config: :class:`~medi2i.registration.config.RLI2ITConfig` (reward, labels, padding, composition).

    Example:
        >>> from medi2i.registration.config import smoke_config
        >>> env = RegistrationEnv(smoke_config(reward_labels="gt"))
        >>> fixed = torch.zeros(1, 1, 32, 32); fixed[..., 8:24, 8:24] = 1.0
        >>> moving = torch.roll(fixed, 2, dims=2)
        >>> state = env.reset(fixed, moving, fixed.long(), moving.long())
        >>> step = torch.zeros(1, 2, 32, 32); step[:, 0] = 1.0  # pull from one row further: undoes 1 of 2
        >>> result = env.step(step)
        >>> round(float(result.score), 4), round(float(result.reward), 2)
        (0.9375, 6.25)
    """

    def __init__(self, config: RLI2ITConfig) -> None:
        self.config = config
        self.ssim = SSIMMetric(config.spatial_dims, data_range=1.0, win_size=7) if config.reward == "ssim" else None
        self.t = 0

    # -- state ----------------------------------------------------------------------------------------
    def reset(
        self,
        fixed: torch.Tensor,
        moving: torch.Tensor,
        fixed_label: torch.Tensor | None = None,
        moving_label: torch.Tensor | None = None,
        fixed_mask: torch.Tensor | None = None,
        moving_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Start episodes for a batch of pairs ``(B, 1, *spatial)`` in [0, 1]; return s_1 ``(B, 2, *spatial)``.

        ``fixed_label``/``moving_label`` are required for ``reward_labels="gt"``; with ``"kmeans"`` the
        pseudo-labels are computed here, once per pair (D6), inside ``fixed_mask``/``moving_mask`` (required)
        when ``kmeans_mask`` is set.
        """
        cfg = self.config
        if fixed.shape != moving.shape or fixed.ndim != cfg.spatial_dims + 2 or fixed.shape[1] != 1:
            raise ValueError(
                f"expected fixed and moving of the same shape (B, 1, *spatial) with {cfg.spatial_dims} spatial "
                f"dims, got {tuple(fixed.shape)} and {tuple(moving.shape)}"
            )
        self.fixed, self.moving = fixed.float(), moving.float()
        if cfg.reward_labels == RewardLabels.GT:
            if fixed_label is None or moving_label is None:
                raise ValueError("reward_labels='gt' needs fixed_label and moving_label")
            self.fixed_labels, self.moving_labels = fixed_label.long(), moving_label.long()
            self.label_ids = tuple(cfg.reward_label_ids)
        else:
            if cfg.kmeans_mask and (fixed_mask is None or moving_mask is None):
                raise ValueError("kmeans_mask=True needs fixed_mask and moving_mask")
            if not cfg.kmeans_mask:
                fixed_mask = moving_mask = None
            k, it, init = cfg.kmeans_clusters, cfg.kmeans_iterations, cfg.kmeans_init
            self.fixed_labels = kmeans_labels(fixed, k, it, mask=fixed_mask, init=init)
            self.moving_labels = kmeans_labels(moving, k, it, mask=moving_mask, init=init)
            ids = cfg.kmeans_label_ids
            default = tuple(range(1, k + 1)) if cfg.kmeans_mask else tuple(range(1, k))
            self.label_ids = default if ids is None else tuple(int(i) for i in ids)
        batch = fixed.shape[0]
        self.field = torch.zeros(batch, cfg.spatial_dims, *fixed.shape[2:], device=fixed.device)
        self.warped = self.moving
        self.score = self._score(self.field, self.moving)
        self.initial_score = self.score
        self.done = torch.zeros(batch, dtype=torch.bool, device=fixed.device)
        self.t = 0
        return self.state()

    def state(self) -> torch.Tensor:
        """s_t = concat(I_F, I_M o U) ``(B, 2, *spatial)``."""
        return torch.cat([self.fixed, self.warped], dim=1)

    def _score(self, field: torch.Tensor, warped: torch.Tensor) -> torch.Tensor:
        if self.config.reward == RewardKind.SSIM:
            return self.ssim._compute_tensor(warped, self.fixed).reshape(-1).float()
        moved = warp(self.moving_labels, field, mode="nearest", padding_mode="zeros")
        return label_dice(moved, self.fixed_labels, self.label_ids)

    def compose(self, action: torch.Tensor, field: torch.Tensor) -> torch.Tensor:
        """Paper Eq. 11-12: ``U_t = C(a_t, U_{t-1})`` in the configured order (D1)."""
        if self.config.composition == Composition.CODE:
            return compose(action, field, padding_mode=self.config.field_padding)
        return field + warp(action, field, padding_mode=self.config.field_padding)

    # -- transition -----------------------------------------------------------------------------------
    def step(self, action: torch.Tensor) -> StepResult:
        """Apply the executed (already clamped) action ``(B, ndim, *spatial)``; finished episodes stay put."""
        cfg = self.config
        if action.shape != self.field.shape:
            raise ValueError(f"expected action of shape {tuple(self.field.shape)}, got {tuple(action.shape)}")
        active = ~self.done
        mask = active.reshape(-1, *([1] * (action.ndim - 1))).to(action.dtype)
        field = self.compose(action.float() * mask, self.field)
        # the original moving image, resampled once with the accumulated field (no repeated blurring)
        warped = warp(self.moving, field, padding_mode=cfg.image_padding)
        score = self._score(field, warped)
        newly_done = active & (score > cfg.done_threshold)
        reward = cfg.reward_scale * (score - self.score) + cfg.bonus * newly_done.float()  # Eq. (14), D5
        reward = reward * active.float()
        store = active & (score > cfg.min_store_dice)  # D20
        self.field, self.warped, self.score = field, warped, torch.where(active, score, self.score)
        self.done = self.done | newly_done
        self.t += 1
        return StepResult(self.state(), reward, newly_done, self.score, store)
