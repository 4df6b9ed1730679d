"""Bi-DPM: bi-directional discrete process matching (Xiong, Ding & Zhang, arXiv 2409.03977 / ICLR 2025 sub.).

Written from the paper and its digest ``shared/research/bidpm.md`` (equation numbers are the paper's).
Paper names -> code names: ``x`` (modality A, ``X_0``) -> ``a``; ``z`` (modality B, ``X_1``) -> ``b``;
``X^f_{t_n}`` -> ``forward[n]``; ``X^b_{t_n}`` -> ``backward[n]``; ``u_theta`` -> :meth:`velocity`;
``lambda_u`` -> ``lambda_unpaired``.

One velocity network serves both directions. On the uniform grid ``0 = t_0 < ... < t_N = 1``
(``h = 1 / N``):

* forward chain (Eq. 5): ``X^f_{t_0} = a``, ``X^f_{t_n} = X^f_{t_{n-1}} + h u(X^f_{t_{n-1}}, t_{n-1})``;
* backward chain (Eq. 5): ``X^b_{t_N} = b``, ``X^b_{t_{n-1}} = X^b_{t_n} - h u(X^b_{t_n}, t_n)``, iterated
  ``n = N .. 1`` (erratum: Alg. 1/2 write one loop ``n = 1..N`` for both chains, bidpm.md section 1.3);
* loss (Eq. 6, 7, 8, 9): ``L = sum_n w_n mean_{paired} d(X^f_{t_n}, X^b_{t_n})
  + lambda_u sum_n w_n MMD^2(X^f_{t_n}, X^b_{t_n})``, ``n = 0..N``, ``w_0 = w_N = 1`` and ``w_n = 0.5``
  inside (section 4 of the paper; Eq. 7/8 print the sums without ``w_n``, bidpm.md section 6 item 4).

Gradients flow through every state of both unrolled chains; ``X^f_{t_0} = a`` and ``X^b_{t_N} = b`` are data.
Step ``k`` of the forward chain and step ``k`` of the backward chain are independent given the previous
states, so both are computed by one network call on the concatenated ``2B`` batch (exact because the UNet
normalises per sample): ``N`` network calls per training step instead of ``2N``.

Sampling (Alg. 2) integrates the same grid: ``N`` forward Euler steps for A -> B, ``N`` backward steps for
B -> A. The network was trained only at the grid times, so another ``N`` is refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum
from typing import Any

import torch
from torch import nn

from medi2i.errors import Medi2iInputError
from medi2i.synthesis.base import (
    Direction,
    EulerGrid,
    SynthesisMethod,
    check_image_pair,
    check_paired_mask,
    graph_zero,
)
from medi2i.synthesis.losses import KernelMMD
from medi2i.synthesis.losses import paired_metric as make_paired_metric

__all__ = ["BiDPM", "MMDRows"]


class MMDRows(str, Enum):
    """Which rows enter the unpaired MMD at each grid time (bidpm.md section 6 item 8).

    ``all``: forward states of all rows vs backward states of all rows (the marginals must agree whatever
    the pairing). ``unpaired_vs_all``: forward states of the unpaired rows vs backward states of all rows,
    plus backward states of the unpaired rows vs forward states of all rows (the paper's wording "between
    the unpaired data and all data in the same batch", made symmetric).
    """

    ALL = "all"
    UNPAIRED_VS_ALL = "unpaired_vs_all"


class BiDPM(SynthesisMethod):
    """Bi-DPM objective and sampler around one velocity network.

    Batches (what :meth:`training_loss` expects): ``a`` and ``b`` hold ``B`` rows; ``paired[i]`` says
    whether ``(a[i], b[i])`` is a real pair. The paired term averages ``d`` over the paired rows only; the
    unpaired (MMD) term uses the rows chosen by ``mmd_rows``. For partially paired data the paper fills
    every batch with equal numbers of paired and unpaired rows (the data loader's job); unpaired rows hold
    an A image and a B image of different subjects. With ``lambda_unpaired = 0`` unpaired rows are ignored.

    Args:
        network: velocity network ``network(x, timesteps)`` (e.g. :class:`~medi2i.synthesis.networks.VelocityUNet`).
        num_steps: ``N``, Euler steps of the uniform grid (paper: 1 or 2). Fixed per model.
        paired_metric: ``"lpips"`` (paper; needs local LPIPS-VGG weights), ``"l1"``, ``"ssim_l1"``, or a
            module ``d(x, y) -> (B,)``.
        lambda_unpaired: ``lambda_u`` of Eq. 9 (paper: 0 for fully paired, 0.2 or 0.3 otherwise).
        mmd_kernel_scales: bandwidth multipliers of the median heuristic (bidpm.md section 6 item 7).
        mmd_pool: average-pooling factor applied before the MMD (4: 192 x 192 -> 48 x 48).
        mmd_rows: ``"all"`` or ``"unpaired_vs_all"`` (:class:`MMDRows`).
        endpoint_weight: ``w_0 = w_N``.
        interior_weight: ``w_n`` for ``0 < n < N``.
        lpips_pretrained: for ``paired_metric="lpips"``: ``False`` = random LPIPS weights (tests only).
        time_scale: network timestep = ``time_scale * t``.
        checkpoint_activations: recompute each network call in the backward pass (memory for ``N >= 3``).

    Example:
        >>> from medi2i.synthesis.networks import VelocityUNet, TINY_UNET
        >>> method = BiDPM(VelocityUNet(**TINY_UNET), num_steps=2, paired_metric="l1")
        >>> a, b = torch.rand(2, 1, 16, 16) * 2 - 1, torch.rand(2, 1, 16, 16) * 2 - 1
        >>> sorted(method.training_loss(a, b))
        ['loss', 'paired', 'unpaired']
        >>> bool(torch.equal(method.sample(a, "a2b"), a))  # the untrained network is u = 0: identity
        True
    """

    name = "bidpm"

    def __init__(
        self,
        network: nn.Module,
        *,
        num_steps: int = 2,
        paired_metric: str | nn.Module = "lpips",
        lambda_unpaired: float = 0.0,
        mmd_kernel_scales: Sequence[float] = (0.25, 0.5, 1.0, 2.0, 4.0),
        mmd_pool: int = 4,
        mmd_rows: MMDRows | str = MMDRows.ALL,
        endpoint_weight: float = 1.0,
        interior_weight: float = 0.5,
        lpips_pretrained: bool = True,
        time_scale: float = 1000.0,
        checkpoint_activations: bool = False,
    ) -> None:
        if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
            raise ValueError(f"num_steps must be an integer >= 1, got {num_steps!r}")
        if not lambda_unpaired >= 0:
            raise ValueError(f"lambda_unpaired must be >= 0, got {lambda_unpaired!r}")
        if not endpoint_weight >= 0 or not interior_weight >= 0 or endpoint_weight + interior_weight == 0:
            raise ValueError(
                f"endpoint_weight and interior_weight must be >= 0 and not both 0, "
                f"got endpoint_weight={endpoint_weight!r}, interior_weight={interior_weight!r}"
            )
        if num_steps == 1 and endpoint_weight == 0:
            raise ValueError("endpoint_weight must be > 0 for num_steps=1 (there are no interior grid points)")
        try:
            rows = MMDRows(mmd_rows)
        except ValueError:
            raise ValueError(f"mmd_rows must be one of {[r.value for r in MMDRows]}, got {mmd_rows!r}") from None
        if not isinstance(paired_metric, str | nn.Module):
            raise ValueError(f"paired_metric must be a metric name or an nn.Module, got {type(paired_metric).__name__}")
        super().__init__(network, time_scale=time_scale, checkpoint_activations=checkpoint_activations)
        self.mmd = KernelMMD(scales=mmd_kernel_scales, pool=mmd_pool)  # validates the MMD arguments
        if isinstance(paired_metric, str):
            # an unknown name or missing LPIPS weights raise Medi2iInputError (a ValueError) naming the field/file
            metric = make_paired_metric(paired_metric, lpips_pretrained=lpips_pretrained)
        else:
            metric = paired_metric
        self.paired_metric = metric
        self.num_steps = num_steps
        self.lambda_unpaired = float(lambda_unpaired)
        self.mmd_rows = rows
        self.endpoint_weight = float(endpoint_weight)
        self.interior_weight = float(interior_weight)
        self.lpips_pretrained = bool(lpips_pretrained)
        self.grid = EulerGrid()
        self.grid.set_timesteps(num_steps)
        # the metric is frozen and rebuilt from config(): keep its (VGG) weights out of checkpoints
        self.exclude_from_checkpoint("paired_metric")

    def loss_weights(self) -> list[float]:
        """``w_0 .. w_N``: ``endpoint_weight`` at ``t_0`` and ``t_N``, ``interior_weight`` in between."""
        n = self.num_steps
        return [self.endpoint_weight if k in (0, n) else self.interior_weight for k in range(n + 1)]

    def unroll(self, a: torch.Tensor, b: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Both Euler chains (Eq. 5), fused: step ``k`` of each chain in one network call on ``2B`` rows.

        Args:
            a: ``(B, C, *spatial)`` modality A (``X^f_{t_0}``).
            b: same shape, modality B (``X^b_{t_N}``).

        Returns:
            ``(forward, backward)``, each a list of ``N + 1`` tensors: the states at ``t_0 .. t_N``.
        """
        check_image_pair(a, b)
        n, rows = self.num_steps, a.shape[0]
        forward = [a]  # X^f_{t_0}, X^f_{t_1}, ...
        backward_reversed = [b]  # X^b_{t_N}, X^b_{t_{N-1}}, ... (the chain runs n = N..1)
        for k in range(n):
            # forward step k goes t_k -> t_{k+1}; backward step k goes t_{N-k} -> t_{N-k-1}
            states = torch.cat([forward[k], backward_reversed[k]])
            t = torch.cat(
                [
                    a.new_full((rows,), self.grid.evaluation_time(k, Direction.A2B)),
                    a.new_full((rows,), self.grid.evaluation_time(k, Direction.B2A)),
                ]
            )
            v = self.velocity(states, t)
            forward.append(self.grid.step(v[:rows], k, forward[k], Direction.A2B))  # Eq. 5, forward
            backward_reversed.append(self.grid.step(v[rows:], k, backward_reversed[k], Direction.B2A))  # Eq. 5
        return forward, backward_reversed[::-1]

    def training_loss(
        self, a: torch.Tensor, b: torch.Tensor, *, paired: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Eq. 9: ``L = L^p + lambda_u L^u`` for one batch.

        Args:
            a: ``(B, C, H, W)`` modality A in [-1, 1].
            b: same shape, modality B.
            paired: ``(B,)`` bool, ``True`` where ``(a[i], b[i])`` is a real pair; ``None`` = all paired.

        Returns:
            ``{"loss": L, "paired": L^p, "unpaired": L^u}`` (parts detached; ``L^u`` is 0 when unused).
        """
        check_image_pair(a, b)
        mask = check_paired_mask(paired, a.shape[0], a.device)
        forward, backward = self.unroll(a, b)
        weights = self.loss_weights()
        paired_loss = graph_zero(forward[-1])  # keeps every parameter in the graph when no row is paired
        if bool(mask.any()):
            for w, xf, xb in zip(weights, forward, backward, strict=True):
                if w:
                    paired_loss = paired_loss + w * self.paired_metric(xf[mask], xb[mask]).mean()  # Eq. 7
        unpaired_loss = graph_zero(forward[-1])
        use_mmd = self.lambda_unpaired > 0 and (self.mmd_rows is MMDRows.ALL or not bool(mask.all()))
        if use_mmd:
            for w, xf, xb in zip(weights, forward, backward, strict=True):
                if w:
                    unpaired_loss = unpaired_loss + w * self._mmd(xf, xb, ~mask)  # Eq. 8
        loss = paired_loss + self.lambda_unpaired * unpaired_loss  # Eq. 9
        return {"loss": loss, "paired": paired_loss.detach(), "unpaired": unpaired_loss.detach()}

    def _mmd(self, xf: torch.Tensor, xb: torch.Tensor, unpaired: torch.Tensor) -> torch.Tensor:
        if self.mmd_rows is MMDRows.ALL:
            return self.mmd(xf, xb)
        return self.mmd(xf[unpaired], xb) + self.mmd(xb[unpaired], xf)

    @torch.no_grad()
    def sample(self, x: torch.Tensor, direction: Direction | str, *, num_steps: int | None = None) -> torch.Tensor:
        """Translate on the training grid (Alg. 2): ``N`` forward steps (a2b) or ``N`` backward steps (b2a).

        Args:
            x: ``(B, C, H, W)`` images of the source modality in [-1, 1].
            direction: ``"a2b"`` or ``"b2a"``.
            num_steps: must be ``None`` or the trained ``N``.

        Returns:
            ``(B, C, H, W)`` translated images.

        Raises:
            Medi2iInputError: ``num_steps`` differs from the training grid, or a bad direction/input.
        """
        direction = self._direction(x, direction)
        if num_steps is not None and num_steps != self.num_steps:
            raise Medi2iInputError(
                "Bi-DPM only samples on the grid it was trained on (its network never saw other times)",
                field="num_steps",
                found=num_steps,
                expected=self.num_steps,
            )
        return self.integrate(x, direction, self.num_steps)

    def method_config(self) -> dict[str, Any]:
        name = getattr(self.paired_metric, "metric_name", None)
        if name is None:
            raise ValueError(
                f"paired_metric was given as a {type(self.paired_metric).__name__} module, which config() cannot "
                "record; pass a metric name (lpips, l1, ssim_l1) to make the method rebuildable"
            )
        return {
            "num_steps": self.num_steps,
            "paired_metric": name,
            "lambda_unpaired": self.lambda_unpaired,
            "mmd_kernel_scales": list(self.mmd.scales),
            "mmd_pool": self.mmd.pool,
            "mmd_rows": self.mmd_rows.value,
            "endpoint_weight": self.endpoint_weight,
            "interior_weight": self.interior_weight,
            "lpips_pretrained": self.lpips_pretrained,
        }
