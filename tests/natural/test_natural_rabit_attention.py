"""Tests of RABIT's Sinkhorn top-k and bi-level attention (digest dtp_rabit_nst.md 2.8 d-f)."""

from __future__ import annotations

import pytest
import torch

from medi2i.natural.rabit_attention import (
    attention_memory,
    bi_level_attention,
    dense_attention,
    hard_topk_indicator,
    sinkhorn_topk,
)

torch.set_num_threads(1)


def _scores(rows: int = 6, n: int = 32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(rows, n, generator=g) * 2.0 - 1.0


@pytest.mark.parametrize("gradient", ["unrolled", "implicit"])
@pytest.mark.parametrize("k", [1, 3, 10])
def test_soft_topk_sums_to_k_and_lies_in_unit_interval(gradient: str, k: int) -> None:
    a = _scores()
    soft = sinkhorn_topk(a, k, epsilon=0.05, n_iters=50, gradient=gradient)
    assert soft.shape == a.shape
    torch.testing.assert_close(soft.sum(-1), torch.full((a.shape[0],), float(k)), atol=1e-3, rtol=0)
    assert soft.min() >= 0.0 and soft.max() <= 1.0 + 1e-3


@pytest.mark.parametrize("gradient", ["unrolled", "implicit"])
def test_soft_topk_converges_to_hard_topk_as_epsilon_shrinks(gradient: str) -> None:
    a = _scores(rows=8, n=48, seed=1)
    hard = hard_topk_indicator(a, 5)
    errors = [
        (sinkhorn_topk(a, 5, epsilon=eps, n_iters=30, gradient=gradient) - hard).abs().max().item()
        for eps in (0.3, 0.05, 0.01, 1e-3, 1e-4)
    ]
    assert all(later <= earlier + 1e-6 for earlier, later in zip(errors[:-1], errors[1:], strict=True)), errors
    assert errors[0] > 0.3  # really soft at large epsilon
    assert errors[-1] < 1e-2  # and hard at small epsilon


def test_soft_topk_matches_brute_force_ranking() -> None:
    # The indicator is monotone in the scores, so its top-k equals the brute-force top-k (sorting).
    for seed in range(5):
        a = _scores(rows=4, n=20, seed=seed)
        soft = sinkhorn_topk(a, 4, epsilon=0.05, n_iters=30)
        brute = torch.argsort(a, dim=-1, descending=True)[:, :4].sort(-1).values
        assert torch.equal(soft.topk(4, dim=-1).indices.sort(-1).values, brute)
        order = torch.argsort(a, dim=-1)
        assert (soft.gather(-1, order).diff(dim=-1) >= -1e-6).all()


def test_soft_topk_matches_closed_form_sigmoid_plan() -> None:
    # With two anchors the converged plan is A_i = sigmoid((tau + a_i) / eps) with sum A = k:
    # solve for tau by bisection and compare (independent of Sinkhorn).
    a = _scores(rows=3, n=16, seed=2).double()
    eps, k = 0.1, 4
    lo, hi = torch.full((3, 1), -3.0, dtype=torch.float64), torch.full((3, 1), 3.0, dtype=torch.float64)
    for _ in range(200):
        mid = (lo + hi) / 2
        too_many = torch.sigmoid((mid + a) / eps).sum(-1, keepdim=True) > k
        hi, lo = torch.where(too_many, mid, hi), torch.where(too_many, lo, mid)
    expected = torch.sigmoid(((lo + hi) / 2 + a) / eps)
    for gradient in ("unrolled", "implicit"):
        got = sinkhorn_topk(a, k, epsilon=eps, n_iters=200, gradient=gradient)
        torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)


def test_soft_topk_gradients_finite_nonzero_and_implicit_equals_unrolled() -> None:
    a = _scores(rows=4, n=24, seed=3).double().requires_grad_(True)
    weights = torch.randn(4, 24, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    grads = []
    for gradient in ("unrolled", "implicit"):
        soft = sinkhorn_topk(a, 6, epsilon=0.1, n_iters=300, gradient=gradient)
        (grad,) = torch.autograd.grad((soft * weights).sum(), a)
        assert torch.isfinite(grad).all() and grad.abs().max() > 1e-3
        grads.append(grad)
    torch.testing.assert_close(grads[0], grads[1], atol=1e-6, rtol=1e-5)


def test_soft_topk_k_equal_n_is_all_ones() -> None:
    a = _scores(rows=2, n=5)
    assert torch.equal(sinkhorn_topk(a, 5), torch.ones_like(a))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"k": 0}, "k=0"),
        ({"k": 9}, "k=9"),
        ({"k": 2.0}, "k=2.0"),
        ({"k": 2, "epsilon": 0.0}, "epsilon"),
        ({"k": 2, "n_iters": 0}, "n_iters"),
        ({"k": 2, "gradient": "backprop"}, "backprop"),
    ],
)
def test_soft_topk_illegal_arguments_raise(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        sinkhorn_topk(_scores(rows=1, n=8), **kwargs)


def _features(seed: int = 0, c: int = 8, h: int = 8, w: int = 8, cv: int = 3) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(2, c, h, w, generator=g),
        torch.randn(2, c, h, w, generator=g),
        torch.randn(2, cv, h, w, generator=g),
    )


@pytest.mark.parametrize("block", [(2, 2), (1, 4), 1])
def test_ras_with_k_equal_n_equals_dense_attention(block) -> None:
    q, k, v = _features(seed=4)
    bh, bw = (block, block) if isinstance(block, int) else block
    n = 64 // (bh * bw)
    dense = dense_attention(q, k, v, temperature=0.1)
    for gradient in ("unrolled", "implicit"):
        ras = bi_level_attention(q, k, v, mode="ras", block=block, k=n, temperature=0.1, gradient=gradient)
        torch.testing.assert_close(ras.warped, dense.warped, atol=1e-5, rtol=1e-5)


def _block_permuted(x: torch.Tensor, perm: torch.Tensor, bh: int = 2, bw: int = 2) -> torch.Tensor:
    b, c, h, w = x.shape
    blocks = x.reshape(b, c, h // bh, bh, w // bw, bw).permute(0, 2, 4, 1, 3, 5).reshape(b, -1, c, bh, bw)
    blocks = blocks[:, perm]
    return blocks.reshape(b, h // bh, w // bw, c, bh, bw).permute(0, 3, 1, 4, 2, 5).reshape(b, c, h, w)


@pytest.mark.parametrize("mode", ["ras", "reference", "dense"])
def test_attention_recovers_a_block_permuted_exemplar(mode: str) -> None:
    # The exemplar is the query with its 2x2 blocks shuffled; a sharp alignment must undo the shuffle.
    q, _, _ = _features(seed=5, c=16)
    perm = torch.randperm(16, generator=torch.Generator().manual_seed(0))
    key = _block_permuted(q, perm)
    value = _block_permuted(torch.arange(64.0).reshape(1, 1, 8, 8).expand(2, 1, 8, 8), perm)
    out = bi_level_attention(q, key, value, mode=mode, k=3, temperature=0.001, rank_temperature=0.001, epsilon=0.01)
    torch.testing.assert_close(out.warped, torch.arange(64.0).reshape(1, 1, 8, 8).expand(2, 1, 8, 8), atol=1e-3, rtol=0)
    assert out.confidence.min() > 0.999  # every block found an identical partner


@pytest.mark.parametrize(
    ("mode", "shapes"),
    [
        (
            "ras",
            {"ranking": (2, 16, 16), "attention": (2, 16, 4, 12), "indices": (2, 16, 3), "confidence": (2, 1, 4, 4)},
        ),
        ("reference", {"ranking": (2, 16, 16), "attention": (2, 16, 4, 4), "confidence": (2, 1, 4, 4)}),
        ("dense", {"ranking": (2, 64, 64), "confidence": (2, 1, 8, 8)}),
    ],
)
def test_attention_shapes_and_memory_accounting_match_tensors(mode: str, shapes: dict) -> None:
    q, k, v = _features(seed=6, cv=5)
    out = bi_level_attention(q, k, v, mode=mode, block=(2, 2), k=3)
    assert out.warped.shape == (2, 5, 8, 8)
    for name, shape in shapes.items():
        assert tuple(getattr(out, name).shape) == shape, name
    mem = attention_memory(8, 8, mode=mode, block=(2, 2), k=3, batch=2)
    assert mem.ranking_entries == out.ranking.numel()
    assert mem.attention_entries == out.attention.numel()
    assert mem.total_entries == out.ranking.numel() + out.attention.numel()
    assert mem.dense_entries == 2 * 64 * 64
    assert mem.total_bytes == 4 * mem.total_entries


def test_memory_accounting_lite_and_paper_numbers() -> None:
    lite = attention_memory(32, 32, block=(2, 2), k=3)  # digest 2.8 f
    assert (lite.ranking_entries, lite.attention_entries, lite.total_entries) == (65_536, 12_288, 77_824)
    assert lite.dense_entries == 1_048_576 and abs(lite.ratio - 0.0742) < 1e-4
    paper = attention_memory(128, 128, block=(2, 2), k=3)  # digest 2.2 complexity anchor
    assert paper.total_entries == 16_973_824 and paper.dense_entries == 268_435_456
    ref = attention_memory(32, 32, mode="reference", block=(2, 2))
    assert ref.total_entries == 65_536 + 256 * 16
    assert attention_memory(32, 32, mode="ras", block=(2, 2), k=256).sinkhorn_iterate_entries == 0


def test_attention_gradients_reach_both_feature_maps() -> None:
    q, k, v = _features(seed=7)
    q.requires_grad_(True)
    k.requires_grad_(True)
    out = bi_level_attention(q, k, v, mode="ras", k=3, temperature=0.1)
    out.warped.square().sum().backward()
    for t in (q, k):
        assert torch.isfinite(t.grad).all() and t.grad.abs().max() > 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"k": 0}, "k=0"),
        ({"k": 17}, "k=17"),
        ({"block": (3, 2)}, "divisible"),
        ({"block": (0, 2)}, "block"),
        ({"mode": "sparse"}, "sparse"),
        ({"temperature": 0.0}, "temperature"),
        ({"rank_temperature": -1.0}, "rank_temperature"),
    ],
)
def test_attention_illegal_configs_raise(kwargs: dict, match: str) -> None:
    q, k, v = _features()
    with pytest.raises(ValueError, match=match):
        bi_level_attention(q, k, v, **kwargs)


def test_attention_bad_tensors_raise() -> None:
    q, k, v = _features()
    with pytest.raises(ValueError, match="same shape"):
        bi_level_attention(q, k[:, :4], v)
    with pytest.raises(ValueError, match="value"):
        bi_level_attention(q, k, v[..., :4])
    with pytest.raises(ValueError, match="k=99"):
        attention_memory(8, 8, k=99)
