"""RABIT's bi-level feature alignment: differentiable Sinkhorn top-k and the ranking-and-attention scheme (RAS).

Zhan et al., "Bi-level Feature Alignment for Versatile Image Translation and Manipulation" (RABIT),
section 3.2; research digest ``dtp_rabit_nst.md`` sections 2.2, 2.6, 2.7 and 2.8 (d)-(f).

Three ways to warp an exemplar onto a conditional input (:class:`AttentionMode`):

``"ras"`` (the paper)
    The ``L = H * W`` features are grouped into ``N = L / b`` blocks of ``b = bh * bw`` neighbours.
    **Level 1 (ranking):** the cosine similarity of block descriptors gives the ``(N, N)`` ranking matrix;
    each query block retrieves its top-``k`` exemplar blocks through the differentiable regularised
    earth mover's top-k (:func:`sinkhorn_topk`, Eq. (1)-(2)). **Level 2 (attention):** the ``b`` features of
    a query block attend densely over the ``k * b`` features of the retrieved blocks (a ``(b, k*b)``
    matrix per block). Memory ``O(N^2 + N * b * k * b)`` instead of ``O(L^2)`` (section 3.2.3).
``"reference"`` (the released code, digest 2.2/2.6)
    Level 1 is a dense ``softmax(cos / rank_temperature)`` over all ``N`` blocks (a soft top-1, ``n_top=1``):
    the retrieved block is the soft-weighted sum of all exemplar blocks; level 2 attends over its ``b``
    features. Memory ``O(N^2 + N * b * b)``; it is *not* the paper's top-k, and the paper's memory numbers
    do not apply to it.
``"dense"`` (CoCosNet's cosine attention, the ``O(L^2)`` baseline)
    Every query feature attends over all ``L`` exemplar features.

Decisions (digest section 4, item 5; documented here and in the method docstring):

* **Block descriptor** = the mean of the ``b`` L2-normalised fine features, L2-normalised again (paper
  Fig. 1; the code's unused ``RankNet``), not a separate coarse head: one feature map, one correspondence.
* **Cost** ``C_i1 = (a_i + 1)^2, C_i2 = (a_i - 1)^2`` (paper) divided by its largest possible value 4, so
  ``epsilon`` is an absolute temperature on the cosine scale (the code divides by the observed max, which
  makes the softness depend on the batch).
* **Sinkhorn without the plan.** With two anchors one full Sinkhorn iteration (row then column scaling)
  reduces exactly to a scalar update of ``tau = g_2 - g_1`` per query row (:func:`_sinkhorn_step`, sums in the
  log domain, stable for small ``epsilon``), so the ``(N, 2)`` plan per row is never stored. ``tau`` is warm-started
  at the hard top-k threshold (the fixed point does not depend on the start; it saves ``O(1/epsilon)``
  iterations). The unrolled form ends with a column scaling, so its indicator sums to exactly ``k``.
* **Gradients**: ``"unrolled"`` (the paper: autograd through all iterations; keeps every iterate, i.e.
  ``O(n_iters * N^2)`` for backward) or ``"implicit"`` (exact gradient of the fixed point, Xie et al. 2020 /
  Luise et al. 2018: with two anchors the plan is ``A_i = sigmoid((tau - c_i) / epsilon)``, ``c_i = -a_i``, and
  ``d tau / d c_i = s_i / sum_j s_j`` with ``s = A (1 - A)``; memory ``O(N^2)``). Default ``"implicit"``,
  because otherwise the stored iterates exceed the dense ``L^2`` matrix at the paper's 128x128 size.
* **Gather**: the ``k`` blocks are gathered by *hard* top-k indices of the scores (memory), and the soft
  indicator enters the inner attention as a log-prior ``log A_j`` added to the logits of block ``j``'s keys,
  so gradients reach the ranking scores. At ``k = N`` the indicator is all ones and RAS equals dense
  attention exactly; as ``epsilon -> 0`` the prior is 0 on the retrieved blocks.
* **Inner attention temperature** ``temperature`` (default 0.01, i.e. CoCosNet's x100; the release uses
  0.001).
* **Confidence** (CONFI's CMAP) = ``(1 + max_j a_ij) / 2``: the paper's raw cosine peak of each query block,
  mapped affinely to ``[0, 1]`` (the release uses ``sigmoid(softmax peak - its mean)``).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from monai.utils import StrEnum, look_up_option

__all__ = [
    "AttentionMemory",
    "AttentionMode",
    "AttentionResult",
    "SinkhornGradient",
    "attention_memory",
    "bi_level_attention",
    "dense_attention",
    "hard_topk_indicator",
    "sinkhorn_topk",
]


class AttentionMode(StrEnum):
    """How the exemplar is aligned (see the module docstring)."""

    RAS = "ras"
    REFERENCE = "reference"
    DENSE = "dense"


class SinkhornGradient(StrEnum):
    """How the Sinkhorn top-k is differentiated."""

    UNROLLED = "unrolled"
    IMPLICIT = "implicit"


class AttentionResult(NamedTuple):
    """The output of :func:`bi_level_attention`.

    Attributes:
        warped: ``(B, Cv, H, W)`` the exemplar values warped onto the query grid.
        confidence: ``(B, 1, H / bh, W / bw)`` CMAP in ``[0, 1]`` per query block (per feature for ``"dense"``).
        ranking: the level-1 matrix, ``(B, N, N)`` (``"ras"``: the soft top-k indicator; ``"reference"``: the
            softmax ranking); ``(B, L, L)`` attention for ``"dense"``.
        attention: the level-2 matrices, ``(B, N, b, k*b)`` (``"ras"``) or ``(B, N, b, b)`` (``"reference"``);
            an empty tensor for ``"dense"``.
        indices: ``(B, N, k)`` hard top-k block indices (``"ras"``), else an empty tensor.
    """

    warped: torch.Tensor
    confidence: torch.Tensor
    ranking: torch.Tensor
    attention: torch.Tensor
    indices: torch.Tensor


class AttentionMemory(NamedTuple):
    """Entries of the correspondence matrices, from shapes only (digest 2.8 f).

    Attributes:
        ranking_entries: level-1 entries (``B * N^2``; ``B * L^2`` for ``"dense"``).
        attention_entries: level-2 entries (``B * N * b * k * b``; ``B * N * b * b`` for ``"reference"``).
        total_entries: the sum, the paper's ``N^2 + b * (k * b)`` per block row (section 3.2.3).
        dense_entries: ``B * L^2`` for comparison.
        ratio: ``total_entries / dense_entries``.
        total_bytes: ``total_entries * bytes_per_element``.
        sinkhorn_iterate_entries: entries of one Sinkhorn iterate (``B * N^2``: the scaled scores ``u`` of every
            query row; 0 unless ``"ras"`` with ``k < N``). ``"unrolled"`` gradients keep a few of them per iteration
            for the backward pass (``O(n_iters * N^2)``); ``"implicit"`` keeps a constant number.
        gathered_entries: the gathered exemplar keys and values, ``B * N * k * b * (C + Cv)`` (``"ras"``) or
            the soft-retrieved block ``B * N * b * (C + Cv)`` (``"reference"``), if channels were given.
    """

    ranking_entries: int
    attention_entries: int
    total_entries: int
    dense_entries: int
    ratio: float
    total_bytes: int
    sinkhorn_iterate_entries: int
    gathered_entries: int


def _check_k(k: int, n: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int):
        raise ValueError(f"k={k!r} must be an integer in [1, N={n}]")
    if not 1 <= k <= n:
        raise ValueError(f"k={k} must be in [1, N={n}] (N = number of candidates)")


def hard_topk_indicator(scores: torch.Tensor, k: int) -> torch.Tensor:
    """The exact top-k indicator: 1 on the ``k`` largest scores of the last axis, 0 elsewhere.

    Args:
        scores: ``(..., N)``.
        k: number of retrieved elements, ``1 <= k <= N``.

    Returns:
        ``(..., N)`` of 0/1 values in the dtype of ``scores``, summing to ``k`` along the last axis.
    """
    _check_k(k, scores.shape[-1])
    index = scores.topk(k, dim=-1).indices
    return torch.zeros_like(scores).scatter_(-1, index, 1.0)


def sinkhorn_topk(
    scores: torch.Tensor,
    k: int,
    *,
    epsilon: float = 0.05,
    n_iters: int = 20,
    gradient: str = SinkhornGradient.IMPLICIT,
) -> torch.Tensor:
    """Soft top-k indicator from the entropy-regularised earth mover's problem (RABIT Eq. (1)-(2)).

    Source ``mu_i = 1/N`` on the scores ``a_i`` (cosines in ``[-1, 1]``), target anchors ``{-1, +1}`` with masses
    ``((N - k)/N, k/N)``, cost ``C_i1 = (a_i + 1)^2 / 4``, ``C_i2 = (a_i - 1)^2 / 4``. The regularised plan
    ``T_eps`` is found by Sinkhorn (alternating row/column scaling, Cuturi 2013, see :func:`_sinkhorn_step`); the soft
    indicator is ``A = N * T_eps[:, 2]``, which sums to ``k`` and tends to the hard top-k as ``epsilon -> 0``.

    Args:
        scores: ``(..., N)`` scores, nominally in ``[-1, 1]``.
        k: number of retrieved elements, ``1 <= k <= N``; ``k = N`` returns ones (no gradient needed).
        epsilon: entropy weight (``> 0``); smaller is sharper (needs more iterations).
        n_iters: Sinkhorn iterations (``>= 1``).
        gradient: ``"implicit"`` (exact fixed-point gradient, ``O(N)`` memory per row) or ``"unrolled"``
            (backpropagate through every iteration, as in the paper).

    Returns:
        ``(..., N)`` soft indicator with values in ``[0, 1]`` (up to the Sinkhorn residual) summing to ``k``.

    Raises:
        ValueError: ``k`` outside ``[1, N]``, ``epsilon <= 0``, ``n_iters < 1`` or an unknown ``gradient``.

    Example:
        >>> a = torch.tensor([0.9, -0.2, 0.5, 0.1])
        >>> sinkhorn_topk(a, 2, epsilon=0.01, n_iters=200).round().tolist()
        [1.0, 0.0, 1.0, 0.0]
    """
    n = scores.shape[-1]
    _check_k(k, n)
    if not epsilon > 0 or not math.isfinite(epsilon):
        raise ValueError(f"epsilon={epsilon} must be a finite number > 0")
    if isinstance(n_iters, bool) or not isinstance(n_iters, int) or n_iters < 1:
        raise ValueError(f"n_iters={n_iters!r} must be an integer >= 1")
    mode = SinkhornGradient(look_up_option(gradient, SinkhornGradient))
    if k == n:
        return torch.ones_like(scores)
    if mode == SinkhornGradient.IMPLICIT:
        with torch.no_grad():
            tau = _sinkhorn_threshold(scores.detach(), k, epsilon, n_iters)
        # c_i = (C_i2 - C_i1) / epsilon_scale = -a_i (with the cost divided by 4). At the fixed point of the
        # row-normalised plan A_i = sigmoid((tau - c_i) / eps) with sum_i A_i = k; differentiating that
        # constraint gives d tau / d c_i = s_i / sum_j s_j, s = A (1 - A) (implicit function theorem).
        c = -scores
        with torch.no_grad():
            a_star = torch.sigmoid((tau - c.detach()) / epsilon)
            s = a_star * (1.0 - a_star)
            w = s / s.sum(-1, keepdim=True).clamp_min(torch.finfo(s.dtype).tiny)
        tau_diff = tau + (w * (c - c.detach())).sum(-1, keepdim=True)
        return torch.sigmoid((tau_diff - c) / epsilon)
    return _sinkhorn_plan(scores, k, epsilon, n_iters)


def _threshold_init(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Warm start ``tau_0`` halfway between the k-th and (k+1)-th largest score (the hard top-k plan), ``(..., 1)``.

    The fixed point does not depend on it; without it the iteration needs ``O(1 / epsilon)`` steps to move
    ``tau`` from 0 to the threshold when ``epsilon`` is small.
    """
    top = scores.detach().topk(k + 1, dim=-1).values
    return -(top[..., k - 1 : k] + top[..., k : k + 1]) / 2.0


def _sinkhorn_step(tau: torch.Tensor, scores: torch.Tensor, k: int, epsilon: float) -> torch.Tensor:
    """One Sinkhorn iteration (row scaling ``N^r`` then column scaling ``N^c``) written on ``tau = g_2 - g_1``.

    With potentials ``f`` (rows) and ``g`` (the two anchor columns), ``T_ij = exp((f_i + g_j - C_ij) / eps)`` and the
    cost difference ``(C_i2 - C_i1) / 4 = -a_i``, the row update makes ``T_i2 = sigmoid(u_i) / N`` with
    ``u_i = (tau + a_i) / eps``; the column update then gives exactly
    ``tau <- tau + eps * (log(k / sum_i sigmoid(u_i)) - log((N - k) / sum_i sigmoid(-u_i)))``.
    So the paper's alternating normalisation of the ``(N, 2)`` plan is carried out without building it
    (sums in the log domain, stable for small ``eps``).
    """
    n = scores.shape[-1]
    u = (tau + scores) / epsilon
    log_in = torch.logsumexp(F.logsigmoid(u), dim=-1, keepdim=True)  # log sum_i T_i2 * N
    log_out = torch.logsumexp(F.logsigmoid(-u), dim=-1, keepdim=True)  # log sum_i T_i1 * N
    return tau + epsilon * ((math.log(k) - log_in) - (math.log(n - k) - log_out))


def _sinkhorn_plan(scores: torch.Tensor, k: int, epsilon: float, n_iters: int) -> torch.Tensor:
    """``A = N * T[:, 2]`` after ``n_iters`` full iterations ending with a column scaling (sums exactly to ``k``)."""
    tau = _threshold_init(scores, k)
    for _ in range(n_iters - 1):
        tau = _sinkhorn_step(tau, scores, k, epsilon)
    # last iteration: row scaling gives T_i2 = sigmoid(u_i) / N, column scaling rescales column 2 to mass k / N
    log_row = F.logsigmoid((tau + scores) / epsilon)
    return k * torch.exp(log_row - torch.logsumexp(log_row, dim=-1, keepdim=True))


def _sinkhorn_threshold(scores: torch.Tensor, k: int, epsilon: float, n_iters: int) -> torch.Tensor:
    """``tau = g_2 - g_1`` after ``n_iters`` iterations (row-normalised plan: ``sigmoid((tau + a) / eps)``)."""
    tau = _threshold_init(scores, k)
    for _ in range(n_iters):
        tau = _sinkhorn_step(tau, scores, k, epsilon)
    return tau


def _check_block(block: tuple[int, int] | int) -> tuple[int, int]:
    pair = (block, block) if isinstance(block, int) else tuple(block)
    if len(pair) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in pair):
        raise ValueError(f"block={block!r} must be a positive int or a pair (bh, bw) of positive ints")
    return pair  # type: ignore[return-value]


def _blocks(x: torch.Tensor, bh: int, bw: int) -> torch.Tensor:
    """``(B, C, H, W)`` -> ``(B, N, b, C)`` with ``N = (H/bh)(W/bw)`` blocks in raster order."""
    b, c, h, w = x.shape
    x = x.reshape(b, c, h // bh, bh, w // bw, bw).permute(0, 2, 4, 3, 5, 1)
    return x.reshape(b, (h // bh) * (w // bw), bh * bw, c)


def _unblocks(x: torch.Tensor, h: int, w: int, bh: int, bw: int) -> torch.Tensor:
    """Inverse of :func:`_blocks`: ``(B, N, b, C)`` -> ``(B, C, H, W)``."""
    b, _, _, c = x.shape
    x = x.reshape(b, h // bh, w // bw, bh, bw, c).permute(0, 5, 1, 3, 2, 4)
    return x.reshape(b, c, h, w)


def _check_features(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> None:
    for name, t in (("query", query), ("key", key), ("value", value)):
        if not isinstance(t, torch.Tensor) or t.ndim != 4 or not t.is_floating_point():
            shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"expected {name} as a float tensor (B, C, H, W), got {shape}")
    if query.shape != key.shape:
        raise ValueError(f"query and key must have the same shape, got {tuple(query.shape)} and {tuple(key.shape)}")
    if value.shape[0] != key.shape[0] or value.shape[2:] != key.shape[2:]:
        raise ValueError(
            f"value must share batch and spatial size with key {tuple(key.shape)}, got {tuple(value.shape)}"
        )


def dense_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, *, temperature: float = 0.01
) -> AttentionResult:
    """CoCosNet-style dense cosine attention, the ``O(L^2)`` reference (digest 2.7 invariants).

    ``M = softmax_j(cos(q_i, k_j) / temperature)``, ``warped_i = sum_j M_ij v_j``.

    Args:
        query: ``(B, C, H, W)`` conditional-input features. key: ``(B, C, H, W)`` exemplar features.
        value: ``(B, Cv, H, W)`` exemplar values to warp (image, features).
        temperature: softmax temperature on the cosine (``> 0``).

    Returns:
        :class:`AttentionResult` with ``ranking`` the ``(B, L, L)`` attention and per-feature confidence.
    """
    _check_features(query, key, value)
    _check_temperature(temperature, "temperature")
    b, _, h, w = query.shape
    q = F.normalize(query.flatten(2), dim=1).transpose(1, 2)  # (B, L, C)
    kf = F.normalize(key.flatten(2), dim=1)  # (B, C, L)
    corr = torch.bmm(q, kf)  # (B, L, L)
    attn = torch.softmax(corr / temperature, dim=-1)
    warped = torch.bmm(attn, value.flatten(2).transpose(1, 2)).transpose(1, 2).reshape(b, -1, h, w)
    conf = ((1.0 + corr.amax(-1)) / 2.0).reshape(b, 1, h, w)
    empty = query.new_zeros(0)
    return AttentionResult(warped, conf, attn, empty, empty.long())


def _check_temperature(value: float, name: str) -> None:
    if not value > 0 or not math.isfinite(value):
        raise ValueError(f"{name}={value} must be a finite number > 0")


def bi_level_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    *,
    mode: str = AttentionMode.RAS,
    block: tuple[int, int] | int = (2, 2),
    k: int = 3,
    epsilon: float = 0.05,
    n_iters: int = 20,
    gradient: str = SinkhornGradient.IMPLICIT,
    temperature: float = 0.01,
    rank_temperature: float = 0.01,
) -> AttentionResult:
    """Warp exemplar ``value`` onto the query grid by bi-level alignment (RABIT section 3.2).

    Args:
        query: ``(B, C, H, W)`` conditional-input correlation features (L2-normalised inside).
        key: ``(B, C, H, W)`` exemplar correlation features (L2-normalised inside).
        value: ``(B, Cv, H, W)`` exemplar values to warp (RGB at the correspondence size, features).
        mode: ``"ras"`` (paper), ``"reference"`` (released dense soft top-1) or ``"dense"`` (``O(L^2)``).
        block: block size ``(bh, bw)``; ``H`` and ``W`` must be divisible by it. Default 2x2 (``b = 4``).
        k: blocks retrieved per query block (``"ras"`` only), ``1 <= k <= N``. Default 3 (paper).
        epsilon, n_iters, gradient: the Sinkhorn top-k (:func:`sinkhorn_topk`).
        temperature: inner (level-2) attention temperature on the cosine.
        rank_temperature: level-1 softmax temperature of ``"reference"`` (the release: 0.01, i.e. x100).

    Returns:
        :class:`AttentionResult`.

    Raises:
        ValueError: bad shapes, ``H``/``W`` not divisible by the block, ``k`` outside ``[1, N]``, bad options.
    """
    _check_features(query, key, value)
    choice = AttentionMode(look_up_option(mode, AttentionMode))
    _check_temperature(temperature, "temperature")
    _check_temperature(rank_temperature, "rank_temperature")
    if choice == AttentionMode.DENSE:
        return dense_attention(query, key, value, temperature=temperature)
    bh, bw = _check_block(block)
    bsz, _, h, w = query.shape
    if h % bh or w % bw:
        raise ValueError(f"feature size {(h, w)} is not divisible by block={(bh, bw)}")
    n = (h // bh) * (w // bw)
    if choice == AttentionMode.RAS:
        _check_k(k, n)
    q = _blocks(F.normalize(query, dim=1), bh, bw)  # (B, N, b, C)
    kb = _blocks(F.normalize(key, dim=1), bh, bw)  # (B, N, b, C)
    vb = _blocks(value, bh, bw)  # (B, N, b, Cv)
    # Block descriptors: mean of the fine features, normalised (decision 2.7).
    qd = F.normalize(q.mean(2), dim=-1)  # (B, N, C)
    kd = F.normalize(kb.mean(2), dim=-1)
    scores = torch.bmm(qd, kd.transpose(1, 2))  # (B, N, N) cosine, level-1 ranking scores
    conf = ((1.0 + scores.amax(-1)) / 2.0).reshape(bsz, 1, h // bh, w // bw)  # CMAP, paper section 3.3
    bsize = bh * bw
    if choice == AttentionMode.REFERENCE:
        rank = torch.softmax(scores / rank_temperature, dim=-1)  # (B, N, N) soft top-1
        k_ret = torch.bmm(rank, kb.flatten(2)).reshape_as(kb)  # retrieved block = sum_j R_ij block_j
        v_ret = torch.bmm(rank, vb.flatten(2)).reshape_as(vb)
        attn = torch.softmax(torch.matmul(q, k_ret.transpose(-1, -2)) / temperature, dim=-1)  # (B, N, b, b)
        out = torch.matmul(attn, v_ret)
        return AttentionResult(_unblocks(out, h, w, bh, bw), conf, rank, attn, query.new_zeros(0).long())
    indicator = sinkhorn_topk(scores, k, epsilon=epsilon, n_iters=n_iters, gradient=gradient)  # (B, N, N)
    index = scores.topk(k, dim=-1).indices  # (B, N, k) hard gather (memory), digest 2.7
    prior = torch.log(indicator.gather(-1, index).clamp_min(1e-12))  # (B, N, k) soft weights as a log-prior
    batch_ix = torch.arange(bsz, device=query.device)[:, None, None]
    k_sel = kb[batch_ix, index].reshape(bsz, n, k * bsize, -1)  # (B, N, k*b, C)
    v_sel = vb[batch_ix, index].reshape(bsz, n, k * bsize, -1)  # (B, N, k*b, Cv)
    logits = torch.matmul(q, k_sel.transpose(-1, -2)) / temperature  # (B, N, b, k*b)
    logits = logits + prior.repeat_interleave(bsize, dim=-1)[:, :, None, :]
    attn = torch.softmax(logits, dim=-1)
    out = torch.matmul(attn, v_sel)  # (B, N, b, Cv)
    return AttentionResult(_unblocks(out, h, w, bh, bw), conf, indicator, attn, index)


def attention_memory(
    height: int,
    width: int,
    *,
    mode: str = AttentionMode.RAS,
    block: tuple[int, int] | int = (2, 2),
    k: int = 3,
    batch: int = 1,
    channels: int = 0,
    value_channels: int = 0,
    bytes_per_element: int = 4,
) -> AttentionMemory:
    """Entries of the correspondence matrices of :func:`bi_level_attention`, from shapes alone.

    Per query block row the paper counts ``N^2 + b * (k * b)`` (section 3.2.3); summed over blocks this is
    ``N^2 + N * b * k * b`` (``"ras"``), ``N^2 + N * b * b`` (``"reference"``) or ``L^2`` (``"dense"``). E.g. the
    RABIT-lite correspondence (32x32, 2x2 blocks, k = 3): ``65,536 + 12,288 = 77,824`` vs ``1,048,576`` dense.

    Args:
        height, width: correspondence feature size. mode, block, k: as in :func:`bi_level_attention`.
        batch: batch size. channels, value_channels: ``C`` and ``Cv``, for ``gathered_entries`` (optional).
        bytes_per_element: 4 for fp32, 2 for fp16/bf16.

    Returns:
        :class:`AttentionMemory`.

    Example:
        >>> m = attention_memory(32, 32, block=(2, 2), k=3)
        >>> m.total_entries, m.dense_entries, round(m.ratio, 4)
        (77824, 1048576, 0.0742)
    """
    choice = AttentionMode(look_up_option(mode, AttentionMode))
    for name, v in (("height", height), ("width", width), ("batch", batch), ("bytes_per_element", bytes_per_element)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name}={v!r} must be a positive integer")
    length = height * width
    dense = batch * length * length
    cv = channels + value_channels
    if choice == AttentionMode.DENSE:
        ranking, attention, plan, gathered = dense, 0, 0, 0
    else:
        bh, bw = _check_block(block)
        if height % bh or width % bw:
            raise ValueError(f"feature size {(height, width)} is not divisible by block={(bh, bw)}")
        b = bh * bw
        n = length // b
        ranking = batch * n * n
        if choice == AttentionMode.RAS:
            _check_k(k, n)
            attention = batch * n * b * k * b
            plan = 0 if k == n else batch * n * n
            gathered = batch * n * k * b * cv
        else:
            attention = batch * n * b * b
            plan = 0
            gathered = batch * n * b * cv
    total = ranking + attention
    return AttentionMemory(
        ranking_entries=ranking,
        attention_entries=attention,
        total_entries=total,
        dense_entries=dense,
        ratio=total / dense,
        total_bytes=total * bytes_per_element,
        sinkhorn_iterate_entries=plan,
        gathered_entries=gathered,
    )
