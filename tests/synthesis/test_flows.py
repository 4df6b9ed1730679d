"""Flow baselines (rectified flow, I-CFM, VP-CFM): paths, targets and losses re-derived from the formulas."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from medi2i.errors import Medi2iInputError
from medi2i.synthesis.flows import VPCFM, IndependentCFM, LinearPath, ProbabilityPath, RectifiedFlow, VPPath
from medi2i.synthesis.networks import TINY_UNET, VelocityUNet


class ConstantVelocity(nn.Module):
    """u(x, t) = c everywhere (c a learnable scalar)."""

    def __init__(self, c: float) -> None:
        super().__init__()
        self.c = nn.Parameter(torch.tensor(float(c)))

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x) + self.c


class LinearVelocity(nn.Module):
    """u(x, t) = lam * x + mu * timesteps / 1000."""

    def __init__(self, lam: float, mu: float = 0.0) -> None:
        super().__init__()
        self.lam = nn.Parameter(torch.tensor(float(lam)))
        self.mu = nn.Parameter(torch.tensor(float(mu)))

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        return self.lam * x + self.mu * (timesteps / 1000.0).view(-1, *([1] * (x.ndim - 1)))


def _pair(batch: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 1, 6, 5, generator=g) * 2 - 1, torch.rand(batch, 1, 6, 5, generator=g) * 2 - 1


@pytest.mark.parametrize("sigma", [0.0, 0.1])
def test_linear_path_xt_and_target(sigma):
    a, b = _pair()
    torch.manual_seed(42)
    t = torch.rand(3)
    eps = torch.randn_like(a)
    path = LinearPath(sigma)
    expected_xt = (1 - t.view(-1, 1, 1, 1)) * a + t.view(-1, 1, 1, 1) * b + sigma * eps  # RF Eq. 1 / I-CFM
    xt = path.sample_xt(a, b, t, eps)
    torch.testing.assert_close(xt, expected_xt)
    torch.testing.assert_close(path.target_velocity(a, b, t, xt), b - a)


def test_vp_path_xt_and_target():
    a, b = _pair()
    t = torch.tensor([0.0, 0.3, 1.0])
    path = VPPath()
    tt = t.view(-1, 1, 1, 1)
    expected_xt = torch.cos(math.pi * tt / 2) * a + torch.sin(math.pi * tt / 2) * b
    expected_u = math.pi / 2 * (torch.cos(math.pi * tt / 2) * b - torch.sin(math.pi * tt / 2) * a)
    xt = path.sample_xt(a, b, t, torch.randn_like(a))
    torch.testing.assert_close(xt, expected_xt)
    torch.testing.assert_close(path.target_velocity(a, b, t, xt), expected_u)
    torch.testing.assert_close(xt[0], a[0])  # endpoints are the data
    torch.testing.assert_close(xt[2], b[2], atol=1e-6, rtol=0)


class BridgePath(LinearPath):
    """A time-dependent std (Schrodinger-bridge shape), defined here to exercise the overridable hooks."""

    def std(self, t):
        return self.sigma * torch.sqrt(t * (1 - t))

    def std_derivative(self, t):
        return self.sigma * (1 - 2 * t) / (2 * torch.sqrt(t * (1 - t)))


@pytest.mark.parametrize("path", [LinearPath(0.1), VPPath(0.05), BridgePath(0.3)], ids=["icfm", "vp", "bridge"])
def test_target_is_time_derivative_of_the_path(path):
    """u_t(x_t) = d/dt (mu_t + sigma_t eps) with eps fixed (Tong et al., Eq. 15), by central differences."""
    a, b = _pair()
    a, b = a.double(), b.double()
    eps = torch.randn_like(a)
    t = torch.tensor([0.2, 0.5, 0.7], dtype=torch.float64)
    h = 1e-6
    numeric = (path.sample_xt(a, b, t + h, eps) - path.sample_xt(a, b, t - h, eps)) / (2 * h)
    xt = path.sample_xt(a, b, t, eps)
    torch.testing.assert_close(path.target_velocity(a, b, t, xt), numeric, atol=1e-6, rtol=1e-6)


def test_probability_path_is_abstract():
    with pytest.raises(TypeError):
        ProbabilityPath()  # type: ignore[abstract]


@pytest.mark.parametrize("cls, kwargs", [(RectifiedFlow, {}), (IndependentCFM, {"sigma": 0.2}), (VPCFM, {})])
def test_training_loss_rederived_with_fixed_seed(cls, kwargs):
    net = LinearVelocity(0.3, -0.7)
    method = cls(net, **kwargs)
    a, b = _pair(4)
    torch.manual_seed(7)
    loss = method.training_loss(a, b)["loss"]
    torch.manual_seed(7)
    t = torch.rand(4)  # same draws, same order: t, then the path noise
    eps = torch.randn_like(a)
    tt = t.view(-1, 1, 1, 1)
    if cls is VPCFM:
        xt = torch.cos(math.pi * tt / 2) * a + torch.sin(math.pi * tt / 2) * b
        target = math.pi / 2 * (torch.cos(math.pi * tt / 2) * b - torch.sin(math.pi * tt / 2) * a)
    else:
        xt = (1 - tt) * a + tt * b + kwargs.get("sigma", 0.0) * eps
        target = b - a
    expected = ((0.3 * xt - 0.7 * tt - target) ** 2).mean()
    torch.testing.assert_close(loss, expected)


@pytest.mark.parametrize("rows, use", [("drop", [True, False, True, False]), ("couple", [True] * 4)])
def test_unpaired_rows(rows, use):
    method = RectifiedFlow(LinearVelocity(0.5), unpaired_rows=rows)
    a, b = _pair(4)
    paired = torch.tensor([True, False, True, False])
    torch.manual_seed(3)
    loss = method.training_loss(a, b, paired=paired)["loss"]
    keep = torch.tensor(use)
    torch.manual_seed(3)
    expected = method.training_loss(a[keep], b[keep])["loss"]
    torch.testing.assert_close(loss, expected)


def test_no_usable_row_gives_a_zero_loss_that_backpropagates():
    net = VelocityUNet(**TINY_UNET)
    method = RectifiedFlow(net)
    a, b = torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 8)
    loss = method.training_loss(a, b, paired=torch.tensor([False, False]))["loss"]
    assert float(loss.detach()) == 0.0
    loss.backward()
    assert all(p.grad is not None for p in net.parameters())


@pytest.mark.parametrize("nfe", [1, 2, 4, 8])
def test_constant_velocity_sampling_is_exact(nfe):
    method = RectifiedFlow(ConstantVelocity(0.25))
    a, b = _pair()
    torch.testing.assert_close(method.sample(a, "a2b", num_steps=nfe), a + 0.25)
    torch.testing.assert_close(method.sample(b, "b2a", num_steps=nfe), b - 0.25)


@pytest.mark.parametrize("nfe", [1, 3, 8])
def test_linear_velocity_sampling_is_euler(nfe):
    """u = lam x: explicit Euler gives x (1 + lam h)^N forward and x (1 - lam h)^N backward."""
    method = VPCFM(LinearVelocity(0.8))
    a, _ = _pair()
    torch.testing.assert_close(method.sample(a, "a2b", num_steps=nfe), a * (1 + 0.8 / nfe) ** nfe)
    torch.testing.assert_close(method.sample(a, "b2a", num_steps=nfe), a * (1 - 0.8 / nfe) ** nfe)


def test_time_dependent_velocity_evaluated_at_step_starts():
    """u = t: forward Euler sums t_0..t_{N-1}, backward sums t_N..t_1 (velocity at the right end)."""
    method = RectifiedFlow(LinearVelocity(0.0, 1.0))
    x = torch.zeros(1, 1, 2, 2)
    n = 4
    forward = sum(k / n for k in range(n)) / n
    backward = -sum(k / n for k in range(1, n + 1)) / n
    assert float(method.sample(x, "a2b", num_steps=n).mean()) == pytest.approx(forward)
    assert float(method.sample(x, "b2a", num_steps=n).mean()) == pytest.approx(backward)


def test_default_nfe_and_bad_nfe():
    method = RectifiedFlow(ConstantVelocity(1.0), num_steps=4)
    x = torch.zeros(1, 1, 2, 2)
    torch.testing.assert_close(method.sample(x, "a2b"), x + 1.0)
    with pytest.raises(Medi2iInputError, match="num_steps"):
        method.sample(x, "a2b", num_steps=0)
    with pytest.raises(Medi2iInputError, match="direction"):
        method.sample(x, "ab")


def test_icfm_refuses_sigma_zero():
    with pytest.raises(ValueError, match="sigma"):
        IndependentCFM(ConstantVelocity(0.0), sigma=0.0)
