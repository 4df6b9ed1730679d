"""Bi-DPM against the paper's formulas (bidpm.md 1.3-1.8), plus the contract suite of every synthesis method."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from medi2i.errors import Medi2iInputError
from medi2i.synthesis import METHODS, BiDPM, build_method
from medi2i.synthesis.losses import mmd_rbf
from medi2i.synthesis.networks import TINY_UNET, VelocityUNet


class LinearVelocity(nn.Module):
    """u(x, t) = lam * x + mu * timesteps / 1000, recording the timesteps of every call."""

    def __init__(self, lam: float, mu: float = 0.0) -> None:
        super().__init__()
        self.lam = nn.Parameter(torch.tensor(float(lam)))
        self.mu = nn.Parameter(torch.tensor(float(mu)))
        self.calls: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        self.calls.append(timesteps.detach().clone())
        return self.lam * x + self.mu * (timesteps / 1000.0).view(-1, *([1] * (x.ndim - 1)))


class OutputRecorder(nn.Module):
    """Wraps a network and keeps its outputs with ``retain_grad`` (to see which rows receive gradient)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.outputs: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        out = self.net(x, timesteps)
        out.retain_grad()
        self.outputs.append(out)
        return out


#: smaller than TINY_UNET to keep the suite cheap; same structure (2 levels, mid-block attention)
TEST_UNET = {**TINY_UNET, "channels": [8, 16], "attention_levels": [False, False], "num_head_channels": 8}


def seeded_unet(seed: int = 0, spatial_dims: int = 2) -> VelocityUNet:
    """A tiny UNet with seeded weights where MONAI zero-initialises (residual-branch and output convs).

    MONAI zeroes each ResBlock's second conv, the attention output projection and the output conv, so at
    init u = 0 and no gradient reaches the inner layers; drawing them from N(0, 0.05^2) makes u non-trivial.
    """
    torch.manual_seed(seed)
    net = VelocityUNet(spatial_dims=spatial_dims, **TEST_UNET)
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if "norm" not in name and not p.any():
                p.copy_(torch.randn(p.shape, generator=generator) * 0.05)
    return net


def images(batch: int = 2, size: tuple[int, ...] = (8, 8), seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 1, *size, generator=g) * 2 - 1, torch.rand(batch, 1, *size, generator=g) * 2 - 1


# --------------------------------------------------------------------------------------- formulas


@pytest.mark.parametrize(
    "n, endpoint, interior, expected",
    [
        (1, 1.0, 0.5, [1.0, 1.0]),
        (2, 1.0, 0.5, [1.0, 0.5, 1.0]),
        (4, 1.0, 0.5, [1.0, 0.5, 0.5, 0.5, 1.0]),
        (3, 2.0, 0.0, [2.0, 0.0, 0.0, 2.0]),
    ],  # fmt: skip
)
def test_loss_weights(n, endpoint, interior, expected):
    method = BiDPM(LinearVelocity(0.0), num_steps=n, paired_metric="l1", endpoint_weight=endpoint,
                   interior_weight=interior)  # fmt: skip
    assert method.loss_weights() == expected
    assert method.grid.timesteps.tolist() == pytest.approx([k / n for k in range(n + 1)])


@pytest.mark.parametrize("n", [1, 2, 3])
def test_chains_closed_form_linear_field(n):
    """u = lam x: X^f_{t_k} = a (1 + lam h)^k and X^b_{t_k} = b (1 - lam h)^(N - k) (Eq. 5, h = 1/N)."""
    lam, h = 0.7, 1.0 / n
    method = BiDPM(LinearVelocity(lam), num_steps=n, paired_metric="l1")
    a, b = images(3)
    forward, backward = method.unroll(a, b)
    assert len(forward) == len(backward) == n + 1
    for k in range(n + 1):
        torch.testing.assert_close(forward[k], a * (1 + lam * h) ** k)
        torch.testing.assert_close(backward[k], b * (1 - lam * h) ** (n - k))


@pytest.mark.parametrize("n", [1, 2, 3])
def test_network_sees_1000_t_in_fused_calls(n):
    """Step k: forward rows at t_k, backward rows at t_{N-k} (the backward chain runs N..1)."""
    net = LinearVelocity(0.1)
    method = BiDPM(net, num_steps=n, paired_metric="l1")
    a, b = images(2)
    method.unroll(a, b)
    assert len(net.calls) == n  # N fused calls, not 2N
    for k, timesteps in enumerate(net.calls):
        expected = [1000.0 * k / n] * 2 + [1000.0 * (n - k) / n] * 2
        assert timesteps.tolist() == pytest.approx(expected)


@pytest.mark.parametrize("n", [1, 2, 3])
def test_loss_closed_form_constant_field(n):
    """u = c: X^f_{t_k} = a + t_k c, X^b_{t_k} = b - (1 - t_k) c, so every d is mean|a - b + c|."""
    c = 0.3
    net = LinearVelocity(0.0, 0.0)
    with torch.no_grad():
        net.mu.fill_(0.0)
    method = BiDPM(_Constant(c), num_steps=n, paired_metric="l1")
    a, b = images(4)
    per_image = (a - b + c).abs().mean(dim=(1, 2, 3))
    expected = sum(method.loss_weights()) * per_image.mean()
    parts = method.training_loss(a, b)
    torch.testing.assert_close(parts["loss"], expected)
    torch.testing.assert_close(parts["paired"], expected)
    assert float(parts["unpaired"]) == 0.0


class _Constant(nn.Module):
    def __init__(self, c: float) -> None:
        super().__init__()
        self.c = nn.Parameter(torch.tensor(c))

    def forward(self, x, timesteps):
        return torch.zeros_like(x) + self.c


def naive_unroll(net: nn.Module, a: torch.Tensor, b: torch.Tensor, n: int, scale: float = 1000.0):
    """Eq. 5 written out: one network call per step and per chain, backward chain iterated n = N..1."""
    t = [k / n for k in range(n + 1)]
    forward = [a]
    for k in range(1, n + 1):
        v = net(forward[-1], torch.full((a.shape[0],), scale * t[k - 1]))
        forward.append(forward[-1] + (t[k] - t[k - 1]) * v)
    backward = [b]
    for k in range(n, 0, -1):
        v = net(backward[0], torch.full((b.shape[0],), scale * t[k]))
        backward.insert(0, backward[0] - (t[k] - t[k - 1]) * v)
    return forward, backward


@pytest.mark.parametrize("n", [1, 2, 3])
def test_fused_equals_naive_unfused(n):
    net = seeded_unet(0)
    method = BiDPM(net, num_steps=n, paired_metric="l1")
    a, b = images(2)
    forward, backward = method.unroll(a, b)
    ref_f, ref_b = naive_unroll(net, a, b, n)
    for k in range(n + 1):
        torch.testing.assert_close(forward[k], ref_f[k], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(backward[k], ref_b[k], atol=1e-5, rtol=1e-5)
    # the loss and its gradient equal Eq. 6 on the naive chains
    loss = method.training_loss(a, b)["loss"]
    grads = torch.autograd.grad(loss, list(net.parameters()))
    weights = method.loss_weights()
    ref_loss = sum(w * (f - g).abs().mean() for w, f, g in zip(weights, ref_f, ref_b, strict=True))
    ref_grads = torch.autograd.grad(ref_loss, list(net.parameters()))
    torch.testing.assert_close(loss, ref_loss, atol=1e-5, rtol=1e-5)
    for g, r in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r, atol=1e-4, rtol=1e-3)


@pytest.mark.parametrize(
    "n, endpoint, interior, live_calls",
    [(1, 1.0, 0.5, [True]), (2, 1.0, 0.5, [True, True]), (2, 0.0, 1.0, [True, False])],
)
def test_gradients_flow_from_both_chains(n, endpoint, interior, live_calls):
    """Each fused call that the loss depends on gets gradient in its forward AND its backward rows.

    With only the interior term (``w_0 = w_2 = 0``, N = 2) the loss is ``d(X^f_{t_1}, X^b_{t_1})``, which
    depends on the first call only (a -> t_1 and b -> t_1): the second call must then get no gradient.
    """
    recorder = OutputRecorder(seeded_unet(1))
    method = BiDPM(recorder, num_steps=n, paired_metric="l1", endpoint_weight=endpoint, interior_weight=interior)
    a, b = images(2)
    method.training_loss(a, b)["loss"].backward()
    assert len(recorder.outputs) == n
    for out, live in zip(recorder.outputs, live_calls, strict=True):
        forward_grad = 0.0 if out.grad is None else float(out.grad[:2].abs().sum())
        backward_grad = 0.0 if out.grad is None else float(out.grad[2:].abs().sum())
        assert (forward_grad > 0, backward_grad > 0) == (live, live)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in recorder.net.parameters())


def test_n1_special_case():
    """N = 1: a2b = a + u(a, 0), b2a = b - u(b, 1), L = w_0 d(a, b - u(b, 1)) + w_1 d(a + u(a, 0), b)."""
    net = seeded_unet(2)
    method = BiDPM(net, num_steps=1, paired_metric="l1")
    a, b = images(2)
    ua = net(a, torch.zeros(2))
    ub = net(b, torch.full((2,), 1000.0))
    torch.testing.assert_close(method.sample(a, "a2b"), a + ua, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(method.sample(b, "b2a"), b - ub, atol=1e-6, rtol=1e-6)
    expected = (a - (b - ub)).abs().mean() + (a + ua - b).abs().mean()
    torch.testing.assert_close(method.training_loss(a, b)["loss"], expected, atol=1e-6, rtol=1e-6)


def test_sample_equals_the_training_chains():
    net = seeded_unet(3)
    method = BiDPM(net, num_steps=2, paired_metric="l1")
    a, b = images(2)
    forward, backward = method.unroll(a, b)
    torch.testing.assert_close(method.sample(a, "a2b"), forward[-1], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(method.sample(b, "b2a"), backward[0], atol=1e-5, rtol=1e-5)


def test_paired_term_only_uses_paired_rows():
    net = seeded_unet(4)
    method = BiDPM(net, num_steps=2, paired_metric="l1")
    a, b = images(4)
    paired = torch.tensor([True, False, False, True])
    masked = method.training_loss(a, b, paired=paired)
    subset = method.training_loss(a[paired], b[paired])
    torch.testing.assert_close(masked["loss"], subset["loss"], atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("rows", ["all", "unpaired_vs_all"])
def test_unpaired_term_is_weighted_mmd(rows):
    net = seeded_unet(5)
    method = BiDPM(net, num_steps=2, paired_metric="l1", lambda_unpaired=0.3, mmd_pool=4, mmd_rows=rows)
    a, b = images(4)
    paired = torch.tensor([True, True, False, False])
    parts = method.training_loss(a, b, paired=paired)
    forward, backward = naive_unroll(net, a, b, 2)
    pool = lambda x: F.avg_pool2d(x, 4)  # noqa: E731
    if rows == "all":
        mmds = [mmd_rbf(pool(f), pool(g)) for f, g in zip(forward, backward, strict=True)]
    else:
        mmds = [
            mmd_rbf(pool(f[~paired]), pool(g)) + mmd_rbf(pool(g[~paired]), pool(f))
            for f, g in zip(forward, backward, strict=True)
        ]
    expected_u = sum(w * m for w, m in zip([1.0, 0.5, 1.0], mmds, strict=True))
    expected_p = sum(
        w * (f[paired] - g[paired]).abs().mean() for w, f, g in zip([1.0, 0.5, 1.0], forward, backward, strict=True)
    )
    torch.testing.assert_close(parts["unpaired"], expected_u, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(parts["loss"], expected_p + 0.3 * expected_u, atol=1e-5, rtol=1e-4)


def test_all_unpaired_batch_backpropagates():
    net = seeded_unet(6)
    method = BiDPM(net, num_steps=1, paired_metric="l1", lambda_unpaired=0.2)
    a, b = images(2)
    parts = method.training_loss(a, b, paired=torch.tensor([False, False]))
    assert float(parts["paired"]) == 0.0 and float(parts["unpaired"]) > 0
    parts["loss"].backward()
    assert all(p.grad is not None for p in net.parameters())


def test_activation_checkpointing_changes_nothing_but_memory():
    a, b = images(2)
    results = []
    for flag in (False, True):
        net = seeded_unet(7)
        method = BiDPM(net, num_steps=3, paired_metric="l1", checkpoint_activations=flag)
        loss = method.training_loss(a, b)["loss"]
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in net.parameters()]))
    torch.testing.assert_close(results[0][0], results[1][0])
    for g0, g1 in zip(results[0][1], results[1][1], strict=True):
        torch.testing.assert_close(g0, g1, atol=1e-6, rtol=1e-5)


def test_refuses_another_grid():
    method = BiDPM(seeded_unet(0), num_steps=2, paired_metric="l1")
    x = torch.zeros(1, 1, 8, 8)
    assert method.sample(x, "a2b", num_steps=2).shape == x.shape
    with pytest.raises(Medi2iInputError, match="num_steps.*trained on"):
        method.sample(x, "a2b", num_steps=4)


def test_untrained_model_is_the_identity():
    method = BiDPM(VelocityUNet(**TEST_UNET), num_steps=2, paired_metric="l1")
    a, b = images(2)
    torch.testing.assert_close(method.sample(a, "a2b"), a)
    torch.testing.assert_close(method.sample(b, "b2a"), b)


def test_lpips_metric_weights_stay_out_of_checkpoints():
    method = BiDPM(seeded_unet(0), num_steps=1, paired_metric="lpips", lpips_pretrained=False)
    state = method.state_dict()
    assert state and all(key.startswith("network.") for key in state)
    clone = build_method(method.config())
    clone.load_state_dict(state)  # strict: the metric's keys are neither saved nor required
    x = torch.rand(1, 1, 16, 16) * 2 - 1
    torch.testing.assert_close(clone.sample(x, "a2b"), method.sample(x, "a2b"))


def test_lpips_default_needs_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDI2I_WEIGHTS", str(tmp_path))
    with pytest.raises(Medi2iInputError, match="vgg16"):
        BiDPM(VelocityUNet(**TEST_UNET))  # paired_metric="lpips" is the paper default: no silent L1


def test_module_metric_cannot_be_serialised():
    method = BiDPM(VelocityUNet(**TEST_UNET), paired_metric=nn.L1Loss())
    with pytest.raises(ValueError, match="paired_metric"):
        method.config()


# Golden values: BiDPM(num_steps=2, paired_metric="l1") around seeded_unet(0) (TEST_UNET, zero-initialised
# layers drawn from N(0, 0.05^2) with generator seed 1), input images(1, (8, 8), seed=0)[0] / [1]. Computed once
# with torch 2.13 / monai 1.6.1 on CPU (float32); they pin the whole sampling loop (grid, time scaling,
# Euler signs, direction handling) against silent changes.
GOLDEN_A2B = {"sum": -11.81428, "pixels": [-0.016934, 0.545474, -0.082344, -1.234934]}
GOLDEN_B2A = {"sum": 7.129073, "pixels": [0.835599, -0.668472, 1.031614, -0.058937]}
GOLDEN_PIXELS = [(0, 0), (3, 7), (4, 4), (7, 2)]


def test_golden_sampling_loop():
    method = BiDPM(seeded_unet(0), num_steps=2, paired_metric="l1")
    a, b = images(1)
    for x, direction, golden in ((a, "a2b", GOLDEN_A2B), (b, "b2a", GOLDEN_B2A)):
        out = method.sample(x, direction)[0, 0]
        assert float(out.sum()) == pytest.approx(golden["sum"], abs=1e-3)
        assert [float(out[i, j]) for i, j in GOLDEN_PIXELS] == pytest.approx(golden["pixels"], abs=1e-5)


# --------------------------------------------------------------------------------------- contract suite

CONFIGS = {
    "bidpm": {"method": "bidpm", "num_steps": 2, "paired_metric": "l1"},
    "rectified_flow": {"method": "rectified_flow", "num_steps": 3},
    "icfm": {"method": "icfm", "sigma": 0.1},
    "vpcfm": {"method": "vpcfm"},
    "regression": {"method": "regression"},
}
ILLEGAL = {
    "bidpm": [({"num_steps": 0}, "num_steps"), ({"lambda_unpaired": -1.0}, "lambda_unpaired"),
              ({"interior_weight": -0.5}, "interior_weight"), ({"mmd_rows": "some"}, "mmd_rows"),
              ({"mmd_kernel_scales": []}, "mmd_kernel_scales"), ({"paired_metric": "l2"}, "paired_metric"),
              ({"time_scale": 0.0}, "time_scale")],
    "rectified_flow": [({"num_steps": 0}, "num_steps"), ({"unpaired_rows": "keep"}, "unpaired_rows")],
    "icfm": [({"sigma": 0.0}, "sigma"), ({"num_steps": -1}, "num_steps")],
    "vpcfm": [({"sigma": -0.1}, "sigma"), ({"time_scale": -1.0}, "time_scale")],
    "regression": [({"loss": "l2"}, "loss"), ({"lpips_weight": 0.0}, "lpips_weight")],
}  # fmt: skip


def test_every_registered_method_is_covered():
    assert set(CONFIGS) == set(METHODS) == set(ILLEGAL)


def make(name: str, spatial_dims: int = 2) -> nn.Module:
    method = build_method(CONFIGS[name], network=seeded_unet(0, spatial_dims))
    return method


@pytest.mark.parametrize("name", sorted(CONFIGS))
class TestMethodContract:
    @pytest.mark.parametrize("batch, size", [(1, (8, 8)), (2, (8, 12)), (2, (4, 4, 4))])
    def test_shapes(self, name, batch, size):
        method = make(name, spatial_dims=len(size))
        a, b = images(batch, size)
        parts = method.training_loss(a, b)
        assert parts["loss"].ndim == 0 and torch.isfinite(parts["loss"]) and parts["loss"].requires_grad
        assert all(v.ndim == 0 and not v.requires_grad for k, v in parts.items() if k != "loss")
        parts["loss"].backward()
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in method.network.parameters())
        for x, direction in ((a, "a2b"), (b, "b2a")):
            out = method.sample(x, direction)
            assert out.shape == x.shape and torch.isfinite(out).all()

    def test_sample_is_deterministic(self, name):
        method = make(name)
        a, _ = images(2)
        torch.manual_seed(1)
        first = method.sample(a, "a2b")
        torch.manual_seed(2)
        torch.testing.assert_close(method.sample(a, "a2b"), first, atol=0, rtol=0)

    def test_config_round_trip(self, name):
        method = make(name)
        cfg = method.config()
        assert cfg["method"] == name
        import json

        assert json.loads(json.dumps(cfg)) == cfg  # plain JSON
        rebuilt = build_method(cfg)
        assert type(rebuilt) is type(method) and rebuilt.config() == cfg

    def test_state_dict_round_trip(self, name):
        method = make(name)
        rebuilt = build_method(method.config())
        rebuilt.load_state_dict(copy.deepcopy(method.state_dict()))
        a, _ = images(2)
        torch.testing.assert_close(rebuilt.sample(a, "b2a"), method.sample(a, "b2a"), atol=0, rtol=0)

    def test_illegal_configs_name_the_argument(self, name):
        for override, argument in ILLEGAL[name]:
            with pytest.raises(ValueError, match=argument):
                build_method({**CONFIGS[name], **override}, network=seeded_unet(0))

    def test_bad_inputs(self, name):
        method = make(name)
        a, b = images(2)
        with pytest.raises(Medi2iInputError, match="b"):
            method.training_loss(a, b[:1])
        with pytest.raises(Medi2iInputError, match="paired"):
            method.training_loss(a, b, paired=torch.tensor([1, 0]))
        with pytest.raises(Medi2iInputError, match="direction"):
            method.sample(a, "a_to_b")
        with pytest.raises(Medi2iInputError, match="unknown argument"):
            build_method({**CONFIGS[name], "bogus": 1}, network=seeded_unet(0))


def test_build_method_errors():
    with pytest.raises(Medi2iInputError, match="did you mean 'bidpm'"):
        build_method({"method": "bidmp"}, network=seeded_unet(0))
    with pytest.raises(Medi2iInputError, match="network"):
        build_method({"method": "rectified_flow"})
