"""Benchmark: a full registration evaluation and a full SynthRAD evaluation of one 160x192x224 case.

medi2i's metrics are timed beside MONAI's (``DiceMetric``, ``compute_hausdorff_distance``, ``SSIMMetric``)
and scikit-image's own functions in the same run, on the same synthetic data:

* registration: 35-label parcellation of an ellipsoid "brain", a moving label map made from it with one
  smooth random field, and a second smooth random field as the prediction to score: label warping,
  Dice over 35 labels, HD95 over 35 labels (surface-distance definition), Jacobian statistics
  (standard and Learn2Reg SDlogJ, folding, mean/std det J);
* synthesis: a CT-like volume in HU with a body mask and a noisy synthetic CT: SynthRAD2023 MAE, PSNR, SSIM.

The MONAI and scikit-image rows compute *their own* definitions (voxel-centre edges and an unweighted
quantile for MONAI's HD95, no mask and valid convolution for MONAI's SSIM); they are reference points for
speed, and their values are printed so the differences in definition are visible.

Usage::

    taskset -c 0,1 python benchmarks/bench_metrics.py --out benchmarks/results_metrics.md

Not part of the test suite.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

SHAPE = (160, 192, 224)
N_LABELS = 35


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    """Best wall time over ``repeats`` runs (the least disturbed one) and the last result."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def parcellation(rng: np.random.Generator) -> np.ndarray:
    """35 Voronoi parcels inside an ellipsoid, on the 160x192x224 grid (int16)."""
    from scipy.spatial import cKDTree

    coarse = tuple(n // 4 for n in SHAPE)
    seeds = rng.uniform(0.15, 0.85, (N_LABELS, 3)) * np.array(coarse)
    grid = np.indices(coarse).reshape(3, -1).T + 0.5
    _, nearest = cKDTree(seeds).query(grid)
    labels = ndimage.zoom((nearest + 1).reshape(coarse).astype(np.int16), 4, order=0)
    centre = (np.array(SHAPE) - 1) / 2
    axes = [((np.arange(n) - c) / (0.45 * n)) ** 2 for n, c in zip(SHAPE, centre, strict=True)]
    inside = axes[0][:, None, None] + axes[1][None, :, None] + axes[2][None, None, :] < 1
    return np.where(inside, labels, 0).astype(np.int16)


def smooth_field(rng: np.random.Generator, amplitude: float, sigma: float = 6.0) -> np.ndarray:
    """A smooth random DDF (3, *SHAPE), float32, voxel units, with some folding at this amplitude."""
    coarse = tuple(n // 4 for n in SHAPE)
    out = np.empty((3,) + SHAPE, np.float32)
    for c in range(3):
        noise = ndimage.gaussian_filter(rng.standard_normal(coarse), sigma / 4)
        noise *= amplitude / noise.std()
        out[c] = ndimage.zoom(noise, 4, order=1)[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    return out


def bench_registration(repeats: int) -> list[dict]:
    from monai.metrics import DiceMetric, compute_hausdorff_distance

    from medi2i.metrics import jacobian_stats, overlap_metrics, registration_metrics, warp_labels

    rng = np.random.default_rng(0)
    fixed = parcellation(rng)
    moving = warp_labels(fixed, smooth_field(rng, 2.0)).astype(np.int16)
    ddf = smooth_field(rng, 2.5)
    rows = []

    t, out = timed(lambda: registration_metrics(ddf, fixed, moving), repeats)
    rows.append(
        (
            "registration",
            "medi2i registration_metrics (warp + Dice + HD95 + Jacobian)",
            t,
            f"Dice {out['dice_mean']:.4f}, HD95 {out['hd95_mean']:.3f}, SDlogJ {out['sdlogj']:.4f} / "
            f"L2R {out['sdlogj_l2r']:.4f}, folding {out['folding_percent']:.3f} %",
        )
    )
    warped = warp_labels(moving, ddf)
    t, _ = timed(lambda: warp_labels(moving, ddf), repeats)
    rows.append(("registration", "  medi2i warp_labels (map_coordinates order 0)", t, ""))
    t, d = timed(lambda: overlap_metrics(warped, fixed, with_hd95=False)["dice"], repeats)
    rows.append(("registration", "  medi2i Dice, 35 labels", t, f"mean {np.mean(list(d.values())):.4f}"))
    t, h = timed(lambda: overlap_metrics(warped, fixed, with_dice=False)["hd95"], repeats)
    rows.append(
        ("registration", "  medi2i HD95, 35 labels (surfel-weighted)", t, f"mean {np.mean(list(h.values())):.4f}")
    )
    t, _ = timed(lambda: jacobian_stats(ddf), repeats)
    rows.append(("registration", "  medi2i Jacobian stats (standard + L2R SDlogJ)", t, ""))

    pred_t = torch.from_numpy(warped.astype(np.int64))[None, None]
    ref_t = torch.from_numpy(fixed.astype(np.int64))[None, None]
    metric = DiceMetric(include_background=False, num_classes=N_LABELS + 1)

    def monai_dice():
        metric.reset()
        return metric(pred_t, ref_t)

    t, md = timed(monai_dice, repeats)
    rows.append(("registration", "  MONAI DiceMetric(num_classes=36), label maps", t, f"mean {md.mean().item():.4f}"))

    def monai_hd95():
        values = []
        for k in range(1, N_LABELS + 1):
            p = pred_t == k
            r = ref_t == k
            values.append(
                compute_hausdorff_distance(torch.cat([~p, p], 1), torch.cat([~r, r], 1), percentile=95).item()
            )
        return values

    t, mh = timed(monai_hd95, 1)
    rows.append(
        (
            "registration",
            "  MONAI compute_hausdorff_distance(percentile=95), per label",
            t,
            f"mean {np.mean(mh):.4f} (voxel-centre edges, unweighted quantile)",
        )
    )
    return rows


def bench_synthesis(repeats: int) -> list[dict]:
    from monai.metrics import SSIMMetric
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    from medi2i.metrics import synthrad_metrics

    rng = np.random.default_rng(1)
    centre = (np.array(SHAPE) - 1) / 2
    axes = [((np.arange(n) - c) / (0.46 * n)) ** 2 for n, c in zip(SHAPE, centre, strict=True)]
    body = axes[0][:, None, None] + axes[1][None, :, None] + axes[2][None, None, :] < 1
    tissue = 40 + 400 * ndimage.gaussian_filter(rng.standard_normal(SHAPE).astype(np.float32), 3.0)
    ct = np.where(body, tissue, -1000.0).astype(np.float32)
    sct = (ct + 60 * rng.standard_normal(SHAPE).astype(np.float32)).astype(np.float32)
    mask = body.astype(np.uint8)
    rows = []

    t, out = timed(lambda: synthrad_metrics(sct, ct, mask), repeats)
    rows.append(
        (
            "synthesis",
            "medi2i synthrad_metrics (MAE + PSNR + SSIM, masked)",
            t,
            f"MAE {out['mae']:.3f} HU, PSNR {out['psnr']:.3f} dB, SSIM {out['ssim']:.5f}",
        )
    )

    def skimage_own():
        lo, hi = -1024.0, 3000.0
        gt, pr = np.clip(ct, lo, hi), np.clip(sct, lo, hi)
        p = peak_signal_noise_ratio(gt[body], pr[body], data_range=hi - lo)
        s = structural_similarity(np.where(body, gt, lo) - lo, np.where(body, pr, lo) - lo, data_range=hi - lo)
        return p, s

    t, (p, s) = timed(skimage_own, repeats)
    rows.append(("synthesis", "  scikit-image PSNR + SSIM (unmasked mean)", t, f"PSNR {p:.3f} dB, SSIM {s:.5f}"))
    monai_ssim = SSIMMetric(spatial_dims=3, data_range=4024.0, kernel_type="uniform", win_size=7)
    gt_t = torch.from_numpy(np.clip(ct, -1024, 3000) + 1024)[None, None]
    pr_t = torch.from_numpy(np.clip(sct, -1024, 3000) + 1024)[None, None]
    t, ms = timed(lambda: monai_ssim(pr_t, gt_t), repeats)
    rows.append(("synthesis", "  MONAI SSIMMetric(uniform 7, no mask)", t, f"SSIM {ms.item():.5f}"))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help="markdown file for the results table (default: stdout only)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per measurement; the best is reported")
    args = parser.parse_args(argv)

    import monai
    import scipy
    import skimage

    rows = bench_registration(args.repeats) + bench_synthesis(args.repeats)
    lines = [
        "## medi2i metrics benchmark",
        "",
        f"Machine: {cpu_model()}, {cores()} usable cores, torch threads {torch.get_num_threads()}; "
        f"Python {platform.python_version()}, torch {torch.__version__}, monai {monai.__version__}, "
        f"numpy {np.__version__}, scipy {scipy.__version__}, scikit-image {skimage.__version__}.",
        f"Volume {SHAPE[0]}x{SHAPE[1]}x{SHAPE[2]}, {N_LABELS} labels; best of {args.repeats} runs (MONAI HD95: 1 run).",
        "",
        "| task | implementation | time (s) | values |",
        "|---|---|---:|---|",
    ]
    lines += [f"| {task} | {name} | {seconds:.2f} | {values} |" for task, name, seconds, values in rows]
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
