"""PatchNCE loss and projection head: eq. (3.6) by hand, positives on the diagonal, negatives, lazy MLP.

Digest park_thesis.md sections 4.2 and 4.6.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from medi2i.natural.toolkit.patchnce import PatchNCELoss, PatchSampleMLP, l2_normalize


def _unit(*shape: int, seed: int = 0) -> torch.Tensor:
    return l2_normalize(torch.randn(*shape, generator=torch.Generator().manual_seed(seed)))


def test_logits_layout_positive_first_and_self_pair_masked():
    q, k = _unit(2, 5, 4, seed=1), _unit(2, 5, 4, seed=2)
    crit = PatchNCELoss(temperature=0.5)
    logits = crit.logits(q, k)
    assert logits.shape == (10, 6)
    # column 0 holds the positives v . v+ (the diagonal of q k^T per image) / tau
    pos = torch.einsum("bsc,bsc->bs", q, k).reshape(-1) / 0.5
    torch.testing.assert_close(logits[:, 0], pos)
    # columns 1.. hold the same-image similarities with the self-pair set to -10 (before / tau)
    for b in range(2):
        sim = q[b] @ k[b].T
        sim.fill_diagonal_(-10.0)
        torch.testing.assert_close(logits[b * 5 : (b + 1) * 5, 1:], sim / 0.5)


def test_loss_equals_cross_entropy_by_hand():
    q, k = _unit(1, 3, 2, seed=3), _unit(1, 3, 2, seed=4)
    tau = 0.07
    total = 0.0
    for s in range(3):
        pos = math.exp(float(q[0, s] @ k[0, s]) / tau)
        neg = sum(math.exp(float(q[0, s] @ k[0, n]) / tau) for n in range(3) if n != s)
        neg += math.exp(-10.0 / tau)  # the masked self-pair of the code's layout
        total += -math.log(pos / (pos + neg))
    assert float(PatchNCELoss(tau)(q, k)) == pytest.approx(total / 3, rel=1e-5)


def test_code_form_equals_plain_cross_entropy_over_similarity_matrix():
    """Digest 4.6: [pos | negatives with diagonal -10] / tau and CE over S x S with target = diagonal agree."""
    q, k = _unit(1, 64, 64, seed=5), _unit(1, 64, 64, seed=6)
    plain = F.cross_entropy((q[0] @ k[0].T) / 0.07, torch.arange(64))
    torch.testing.assert_close(PatchNCELoss()(q, k), plain, rtol=1e-5, atol=1e-5)


def test_identical_separated_features_give_near_zero_and_random_at_least_log_s():
    s = 64
    eye = torch.eye(s).unsqueeze(0)  # S distinct orthogonal unit vectors, C = S
    assert float(PatchNCELoss()(eye, eye)) < 1e-3
    q, k = _unit(1, s, 64, seed=7), _unit(1, s, 64, seed=8)
    random_loss = float(PatchNCELoss()(q, k))
    assert random_loss >= math.log(s)  # digest [M]: 5.69 for S = C = 64 (log S = 4.16)
    same = float(PatchNCELoss()(q, q))
    assert same < random_loss - 2.0


def test_keys_are_detached():
    q = _unit(1, 6, 4, seed=9).requires_grad_(True)
    k = _unit(1, 6, 4, seed=10).requires_grad_(True)
    PatchNCELoss()(q, k).backward()
    assert q.grad is not None and q.grad.abs().sum() > 0
    assert k.grad is None


def test_negatives_are_per_image_regardless_of_batch():
    """The loss of a batch equals the mean of the per-image losses (no cross-image negatives)."""
    q, k = _unit(3, 16, 8, seed=11), _unit(3, 16, 8, seed=12)
    crit = PatchNCELoss()
    per_image = torch.stack([crit(q[i : i + 1], k[i : i + 1]) for i in range(3)]).mean()
    torch.testing.assert_close(crit(q, k), per_image)
    # changing another image's keys leaves image 0's per-query losses untouched
    k2 = k.clone()
    k2[1:] = _unit(2, 16, 8, seed=13)
    out1, out2 = crit.logits(q, k), crit.logits(q, k2)
    torch.testing.assert_close(out1[:16], out2[:16])


def test_batch_negatives_mode_uses_the_whole_batch():
    q, k = _unit(4, 1, 8, seed=14), _unit(4, 1, 8, seed=15)  # SinCUT: one patch per crop
    logits = PatchNCELoss(negatives="batch").logits(q, k)
    assert logits.shape == (4, 5)
    sim = q[:, 0] @ k[:, 0].T
    sim.fill_diagonal_(-10.0)
    torch.testing.assert_close(logits[:, 1:], sim / 0.07)
    # per-image mode with one patch per image has no real negative: loss ~ 0 whatever the features
    assert float(PatchNCELoss()(q, k)) < 1e-3


def test_scale_invariance_after_l2_normalisation():
    feats = [torch.randn(2, 3, 8, 8), torch.randn(2, 16, 4, 4)]
    other = [torch.randn_like(f) for f in feats]
    head = PatchSampleMLP(use_mlp=False)
    crit = PatchNCELoss()
    k, ids = head(feats, num_patches=10)
    q, _ = head(other, patch_ids=ids)
    k_scaled, _ = head([7.5 * f for f in feats], patch_ids=ids)
    q_scaled, _ = head([0.01 * f for f in other], patch_ids=ids)
    for a, b, c, d in zip(q, k, q_scaled, k_scaled, strict=True):
        torch.testing.assert_close(crit(a, b), crit(c, d), rtol=1e-4, atol=1e-5)


def test_mlp_is_built_lazily_with_the_features_channels():
    head = PatchSampleMLP()
    assert not head.built and len(list(head.parameters())) == 0
    feats = [torch.randn(1, 3, 32, 32), torch.randn(1, 128, 16, 16), torch.randn(1, 256, 8, 8)]
    out, ids = head(feats, num_patches=256)
    assert head.built and head.channels == [3, 128, 256]
    assert [m[0].in_features for m in head.mlps] == [3, 128, 256]
    assert all(m[0].out_features == 256 and m[2].in_features == 256 and m[2].out_features == 256 for m in head.mlps)
    assert isinstance(head.mlps[0][1], torch.nn.ReLU)
    # patches per layer: min(256, H*W); ids index the flattened map, no repeats; unit vectors out
    assert [o.shape for o in out] == [(1, 256, 256), (1, 256, 256), (1, 64, 256)]
    assert [len(set(i.tolist())) for i in ids] == [256, 256, 64]
    for o in out:  # unit vectors up to the code's eps = 1e-7 (the gain-0.02 init makes raw outputs ~1e-4 small)
        torch.testing.assert_close(o.norm(dim=-1), torch.ones(o.shape[:2]), rtol=0, atol=1e-2)
    # a second call with other channels is an error, not a silent rebuild
    with pytest.raises(ValueError, match="channels"):
        head([torch.randn(1, 4, 8, 8)] * 3)


def test_shared_ids_sample_the_same_locations_for_every_image_and_for_query_and_key():
    head = PatchSampleMLP(use_mlp=False)
    feat = torch.randn(2, 4, 5, 5)
    (k,), (ids,) = head([feat], num_patches=7)
    expected = l2_normalize(feat.flatten(2).transpose(1, 2)[:, ids, :])
    torch.testing.assert_close(k, expected)
    (q,), (ids_q,) = head([feat + 1.0], patch_ids=[ids])
    assert torch.equal(ids, ids_q)
    torch.testing.assert_close(q, l2_normalize((feat + 1.0).flatten(2).transpose(1, 2)[:, ids, :]))


def test_mlp_init_and_state_dict_round_trip_into_an_unbuilt_head():
    torch.manual_seed(0)
    head = PatchSampleMLP(mlp_channels=32)
    head.build([3, 16])
    w = head.mlps[1][0].weight.detach()
    # Xavier-normal, gain 0.02: std = 0.02 * sqrt(2 / (fan_in + fan_out))
    assert float(w.std()) == pytest.approx(0.02 * math.sqrt(2 / 48), rel=0.15)
    assert float(head.mlps[1][0].bias.detach().abs().max()) == 0.0
    fresh = PatchSampleMLP(mlp_channels=32)
    fresh.load_state_dict(head.state_dict())
    assert fresh.built and fresh.channels == [3, 16]
    feats = [torch.randn(2, 3, 4, 4), torch.randn(2, 16, 4, 4)]
    a, ids = head(feats, num_patches=5)
    b, _ = fresh(feats, patch_ids=ids)
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y)


@pytest.mark.parametrize("num_patches", [0, -3, 2.5, True])
def test_illegal_num_patches_raise(num_patches):
    with pytest.raises(ValueError, match="num_patches"):
        PatchSampleMLP()([torch.randn(1, 3, 4, 4)], num_patches=num_patches)


def test_illegal_loss_configs_and_shapes_raise():
    with pytest.raises(ValueError, match="temperature"):
        PatchNCELoss(temperature=0.0)
    with pytest.raises(ValueError):
        PatchNCELoss(negatives="other_images")
    with pytest.raises(ValueError, match="same shape"):
        PatchNCELoss()(torch.randn(1, 4, 8), torch.randn(1, 5, 8))
    with pytest.raises(ValueError, match="mlp_channels"):
        PatchSampleMLP(mlp_channels=0)
    with pytest.raises(ValueError, match="patch_ids"):
        PatchSampleMLP()([torch.randn(1, 3, 4, 4)], patch_ids=[torch.arange(3), torch.arange(2)])
