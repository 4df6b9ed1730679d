"""Registration benchmark: RL-I2IT (t = 1, 10, 20) vs VoxelMorph vs identity on demo-cohort pairs.

Protocol: the demo cohort's registration manifest (``registration_2d`` or ``registration_3d``); training
pairs = ``train`` split, evaluation pairs = ``val`` + ``test``. Images through ``registration_preprocessing``
([0, 1], padded to a multiple of 32 per axis). RL-I2IT uses the ``vm_budget`` preset and ground-truth
reward labels (weakly supervised, D6) or K-means (``--reward-labels kmeans``); VoxelMorph (MONAI
``VoxelMorph``, VM-2 widths) is trained with the same NCC + smoothness loss. Reported per method: Dice over
CSF/GM/WM, HD95 (voxels), folding %, SDlogJ (standard), parameters (RL-I2IT: planner + actor, as the
paper's Table 9), seconds per pair (wall, batch 1) and peak memory (CUDA only), plus the RL-I2IT Dice over
steps. Training budgets are tiny by default (CPU); say so when quoting numbers.

Usage::

    python benchmarks/registration.py --dims 2 --episodes 300 --vm-iterations 600 \\
        --out benchmarks/results/registration_2d_cpu.md
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from medi2i.data.demo import demo_manifest
from medi2i.metrics import registration_metrics
from medi2i.registration.baselines import VoxelMorphBaseline, register_identity, register_voxelmorph, train_voxelmorph
from medi2i.registration.config import RLI2ITConfig
from medi2i.registration.inference import register
from medi2i.registration.learner import RLI2ITLearner
from medi2i.registration.networks import count_parameters
from medi2i.registration.trainer import PairSet, load_pairs

LABELS = (1, 2, 3)  # CSF, GM, WM


def _concat(a: PairSet, b: PairSet) -> PairSet:
    return PairSet(
        torch.cat([a.fixed, b.fixed]),
        torch.cat([a.moving, b.moving]),
        torch.cat([a.fixed_label, b.fixed_label]),
        torch.cat([a.moving_label, b.moving_label]),
        a.ids + b.ids,
    )


def _scores(ddf: torch.Tensor, pairs: PairSet) -> dict[str, float]:
    rows = [
        registration_metrics(
            ddf[i].cpu().numpy(), pairs.fixed_label[i, 0].numpy(), pairs.moving_label[i, 0].numpy(), labels=LABELS
        )
        for i in range(len(pairs))
    ]
    keys = ("dice_mean", "hd95_mean", "folding_percent", "sdlogj")
    return {k: float(np.nanmean([r[k] for r in rows])) for k in keys}


def _timed(fn, pairs: PairSet, device: torch.device):
    """Run ``fn(i)`` per pair (batch 1); return the ddfs and the mean wall seconds per pair."""
    ddfs, total = [], 0.0
    for i in range(len(pairs)):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        ddfs.append(fn(i))
        if device.type == "cuda":
            torch.cuda.synchronize()
        total += time.perf_counter() - t0
    return torch.cat(ddfs), total / len(pairs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dims", type=int, choices=(2, 3), default=2)
    parser.add_argument("--episodes", type=int, default=300, help="RL-I2IT training episodes")
    parser.add_argument("--vm-iterations", type=int, default=600)
    parser.add_argument("--reward-labels", choices=("gt", "kmeans"), default="gt")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--demo-dir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (1 is faster on busy CPUs)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    demo = args.demo_dir or Path(tempfile.mkdtemp(prefix="medi2i_demo_"))
    manifest = demo_manifest(f"registration_{args.dims}d", out=demo)
    size = (96, 128) if args.dims == 2 else (96, 128, 96)
    train = load_pairs(manifest, "train", args.dims, size)
    evaluation = _concat(load_pairs(manifest, "val", args.dims, size), load_pairs(manifest, "test", args.dims, size))
    # a faster cadence than the code's (1 update per 8 steps after 100 episodes) for CPU-sized budgets (D13)
    cfg = RLI2ITConfig(
        spatial_dims=args.dims,
        network="vm_budget",
        reward_labels=args.reward_labels,
        reward_label_ids=LABELS,
        warmup_episodes=5,
        update_every=2,
        planner_every=4,
        batch_size=8,
        buffer_capacity=400,
        lr_actor=1e-3,
        lr_planner=2e-4,
        lr_critic=2e-4,
        lr_alpha=1e-3,
    )
    learner = RLI2ITLearner(cfg, size, device)
    sampler = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    for _ in range(args.episodes):
        i = torch.randint(0, len(train), (1,), generator=sampler)
        learner.run_episode(*train.select(i))
    rl_train = time.perf_counter() - t0
    vm = VoxelMorphBaseline(args.dims).to(device)
    t0 = time.perf_counter()
    train_voxelmorph(vm, train.fixed, train.moving, cfg, iterations=args.vm_iterations, batch_size=4)
    vm_train = time.perf_counter() - t0

    rows = []
    ident, _ = _timed(
        lambda i: register_identity(evaluation.fixed[i : i + 1], evaluation.moving[i : i + 1]).ddf, evaluation, device
    )
    rows.append(("identity", 0, 0.0, _scores(ident, evaluation)))
    ddf, sec = _timed(
        lambda i: register_voxelmorph(vm, evaluation.fixed[i : i + 1], evaluation.moving[i : i + 1]).ddf,
        evaluation,
        device,
    )
    rows.append(("VoxelMorph", count_parameters(vm), sec, _scores(ddf, evaluation)))
    params = count_parameters(learner.agent.planner) + count_parameters(learner.agent.actor)
    for steps in (1, 10, 20):
        ddf, sec = _timed(
            lambda i, s=steps: (
                register(
                    learner.agent, evaluation.fixed[i : i + 1], evaluation.moving[i : i + 1], steps=s, track_ssim=False
                ).ddf
            ),
            evaluation,
            device,
        )
        rows.append((f"RL-I2IT t={steps}", params, sec, _scores(ddf, evaluation)))
    curve = register(
        learner.agent,
        evaluation.fixed,
        evaluation.moving,
        steps=20,
        fixed_label=evaluation.fixed_label,
        moving_label=evaluation.moving_label,
        label_ids=LABELS,
        track_ssim=False,
    ).dice.mean(0)

    lines = [
        f"# Registration benchmark ({args.dims}D demo cohort, {len(train)} training / "
        f"{len(evaluation)} evaluation pairs)",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, device {device}, "
        f"torch {torch.__version__}. RL-I2IT: {args.episodes} episodes ({rl_train:.0f} s), reward labels "
        f"{args.reward_labels}; VoxelMorph: {args.vm_iterations} iterations ({vm_train:.0f} s).",
        "",
        "| method | Dice CSF/GM/WM | HD95 (vox) | folding % | SDlogJ | params | s / pair |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, n, sec, s in rows:
        lines.append(
            f"| {name} | {s['dice_mean']:.4f} | {s['hd95_mean']:.2f} | {s['folding_percent']:.3f} | "
            f"{s['sdlogj']:.4f} | {n:,} | {sec:.3f} |"
        )
    lines += ["", "RL-I2IT Dice over steps (t = 0..20): " + ", ".join(f"{float(v):.4f}" for v in curve), ""]
    text = "\n".join(lines)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
