"""Registration benchmark: RL-I2IT (t = 1, 10, 20) vs VoxelMorph vs identity (vs ANTs SyN) on demo-cohort pairs.

Protocol: the demo cohort's registration manifest (``registration_2d`` or ``registration_3d``); training
pairs = ``train`` split, evaluation pairs = ``val`` + ``test``. Images through ``registration_preprocessing``
([0, 1], padded to a multiple of 32 per axis). RL-I2IT uses the ``vm_budget`` preset and ground-truth
reward labels (weakly supervised, D6) or K-means (``--reward-labels kmeans``); VoxelMorph (MONAI
``VoxelMorph``, VM-2 widths) is trained with the same NCC + smoothness loss. Reported per method: Dice over
CSF/GM/WM, HD95 (voxels), folding %, SDlogJ (standard), parameters (RL-I2IT: planner + actor, as the
paper's Table 9), seconds per pair (wall, batch 1), its ratio to one VoxelMorph forward (the issue's target:
one RL-I2IT registration <= 10x one VoxelMorph forward) and peak memory (CUDA allocator peak; on CPU the
resident-set growth during the method's registrations, in this process, so it depends on run order), plus the
RL-I2IT Dice over steps. Training budgets are tiny by default (CPU); say so when quoting numbers.
``--rl-options '{"kmeans_mask": true}'`` overrides any :class:`RLI2ITConfig` field (e.g. the demo overlay's).
``--methods`` picks the rows (``ants`` adds ANTs ``--ants-transform``, default ``SyN``, through antspyx, which
lives in its own environment); ``--downsample 2`` shrinks every axis (a CPU-sized 3D run at 4 mm).

Usage::

    python benchmarks/registration.py --dims 2 --episodes 300 --vm-iterations 600 \\
        --out benchmarks/results/registration_2d_cpu.md
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from medi2i.data.demo import demo_manifest
from medi2i.metrics import registration_metrics
from medi2i.registration.ants_syn import TRANSFORMS, ants_unavailable, register_ants
from medi2i.registration.baselines import VoxelMorphBaseline, register_identity, register_voxelmorph, train_voxelmorph
from medi2i.registration.config import RLI2ITConfig
from medi2i.registration.inference import register
from medi2i.registration.learner import RLI2ITLearner
from medi2i.registration.networks import count_parameters
from medi2i.registration.trainer import PairSet, all_ordered_pairs, load_pairs

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/ is a folder of scripts, not a package
from _bench_common import PeakMemory, machine  # noqa: E402

LABELS = (1, 2, 3)  # CSF, GM, WM
METHODS = ("identity", "voxelmorph", "rl-i2it", "ants")


def rl_options(text: str | None) -> dict:
    """``--rl-options`` JSON object -> RLI2ITConfig keyword arguments (JSON lists become tuples)."""
    if not text:
        return {}
    try:
        options = json.loads(text)
    except json.JSONDecodeError as error:
        raise SystemExit(f"--rl-options is not valid JSON: {error}") from None
    if not isinstance(options, dict):
        raise SystemExit("--rl-options must be a JSON object of RLI2ITConfig fields")
    return {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}


def _concat(a: PairSet, b: PairSet) -> PairSet:
    return PairSet(
        torch.cat([a.fixed, b.fixed]),
        torch.cat([a.moving, b.moving]),
        torch.cat([a.fixed_label, b.fixed_label]),
        torch.cat([a.moving_label, b.moving_label]),
        a.ids + b.ids,
    )


def downsample_pairs(pairs: PairSet, factor: int, multiple: int = 32) -> PairSet:
    """Shrink every spatial axis by ``factor`` (images: mean over ``factor``-wide blocks; labels: every
    ``factor``-th voxel, so values stay integer) and zero-pad each axis symmetrically to a multiple of
    ``multiple`` (the networks' 2**levels). ``factor`` 1 returns ``pairs`` unchanged.

    Shapes: (N, 1, *S) -> (N, 1, *S') with ``S'_k = ceil(S_k / factor / multiple) * multiple``.
    """
    if factor == 1:
        return pairs
    dims = pairs.fixed.ndim - 2
    pool = torch.nn.functional.avg_pool2d if dims == 2 else torch.nn.functional.avg_pool3d
    shape = [s // factor for s in pairs.fixed.shape[2:]]
    target = [-(-s // multiple) * multiple for s in shape]
    pad: list[int] = []
    for s, t in reversed(list(zip(shape, target, strict=True))):
        pad += [(t - s) // 2, t - s - (t - s) // 2]
    crop = (slice(None), slice(None), *(slice(0, s * factor, factor) for s in shape))

    def image(x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.pad(pool(x, factor), pad)

    def label(y: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.pad(y[crop], pad)

    return PairSet(
        image(pairs.fixed), image(pairs.moving), label(pairs.fixed_label), label(pairs.moving_label), pairs.ids
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
    """Run ``fn(i)`` per pair (batch 1) after one untimed warm-up call; return the ddfs, the mean wall seconds
    per pair and the peak memory (MB) of the timed calls."""
    with torch.no_grad():
        fn(0)
    ddfs, total = [], 0.0
    with PeakMemory(device) as memory:
        for i in range(len(pairs)):
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            with torch.no_grad():
                ddfs.append(fn(i))
            if device.type == "cuda":
                torch.cuda.synchronize()
            total += time.perf_counter() - t0
    return torch.cat(ddfs), total / len(pairs), memory.peak_mb


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
    parser.add_argument("--network", choices=("vm_budget", "spac"), default="vm_budget")
    parser.add_argument("--train-steps", type=int, default=20, help="RL-I2IT steps per training episode")
    parser.add_argument("--rl-options", default=None, help="JSON object of RLI2ITConfig overrides")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--downsample",
        type=int,
        default=1,
        help="shrink the images by this factor per axis before everything (e.g. 2 for a CPU-sized 3D run at 4 mm)",
    )
    parser.add_argument(
        "--all-pairs", action="store_true", help="train on all ordered pairs of the train subjects (demo_cpu.json)"
    )
    parser.add_argument(
        "--eval-all-pairs",
        action="store_true",
        help="evaluate on all ordered pairs of the val + test subjects (12 held-out pairs on the demo) instead of "
        "the manifest's val and test pairs (2)",
    )
    parser.add_argument(
        "--methods",
        nargs="+",
        choices=METHODS,
        default=["identity", "voxelmorph", "rl-i2it"],
        help="rows to train and score; 'ants' needs antspyx (its own environment, see benchmarks/README.md)",
    )
    parser.add_argument("--ants-transform", choices=TRANSFORMS, default="SyN", help="ANTs type_of_transform")
    args = parser.parse_args(argv)
    options = rl_options(args.rl_options)
    methods = set(args.methods)
    if "ants" in methods and (reason := ants_unavailable()):
        raise SystemExit(f"--methods ants: {reason}")
    if args.threads:
        torch.set_num_threads(args.threads)
        os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = str(args.threads)  # ANTs
    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    demo = args.demo_dir or Path(tempfile.mkdtemp(prefix="medi2i_demo_"))
    manifest = demo_manifest(f"registration_{args.dims}d", out=demo)
    size = (96, 128) if args.dims == 2 else (96, 128, 96)
    train = downsample_pairs(load_pairs(manifest, "train", args.dims, size), args.downsample)
    if args.all_pairs:
        train = all_ordered_pairs(train)
    evaluation = downsample_pairs(
        _concat(load_pairs(manifest, "val", args.dims, size), load_pairs(manifest, "test", args.dims, size)),
        args.downsample,
    )
    size = tuple(train.fixed.shape[2:])
    if args.eval_all_pairs:
        evaluation = all_ordered_pairs(evaluation)
    # a faster cadence than the code's (1 update per 8 steps after 100 episodes) for CPU-sized budgets (D13)
    settings = dict(
        spatial_dims=args.dims,
        network=args.network,
        reward_labels=args.reward_labels,
        reward_label_ids=LABELS,
        train_steps=args.train_steps,
        warmup_episodes=5,
        update_every=2,
        planner_every=4,
        batch_size=8,
        buffer_capacity=400,
        lr_actor=1e-3,
        lr_planner=2e-4,
        lr_critic=2e-4,
        lr_alpha=1e-3,
        seed=args.seed,
    )
    settings.update(options)
    cfg = RLI2ITConfig(**settings)
    learner = RLI2ITLearner(cfg, size, device) if "rl-i2it" in methods else None
    sampler = torch.Generator().manual_seed(args.seed)
    t0 = time.perf_counter()
    for _ in range(args.episodes if learner is not None else 0):
        i = torch.randint(0, len(train), (1,), generator=sampler)
        learner.run_episode(*train.select(i))
    rl_train = time.perf_counter() - t0
    vm = VoxelMorphBaseline(args.dims).to(device)
    t0 = time.perf_counter()
    if "voxelmorph" in methods:
        train_voxelmorph(vm, train.fixed, train.moving, cfg, iterations=args.vm_iterations, batch_size=4)
    vm_train = time.perf_counter() - t0

    rows = []
    vm_sec = 0.0
    if "identity" in methods:
        ident, _, _ = _timed(
            lambda i: register_identity(evaluation.fixed[i : i + 1], evaluation.moving[i : i + 1]).ddf,
            evaluation,
            device,
        )
        rows.append(("identity", 0, 0.0, 0.0, _scores(ident, evaluation)))
    if "voxelmorph" in methods:
        vm.eval()
        ddf, vm_sec, mb = _timed(
            lambda i: register_voxelmorph(vm, evaluation.fixed[i : i + 1], evaluation.moving[i : i + 1]).ddf,
            evaluation,
            device,
        )
        rows.append(("VoxelMorph", count_parameters(vm), vm_sec, mb, _scores(ddf, evaluation)))
    if "ants" in methods:
        ddf, sec, mb = _timed(
            lambda i: (
                register_ants(
                    evaluation.fixed[i : i + 1],
                    evaluation.moving[i : i + 1],
                    transform=args.ants_transform,
                    seed=args.seed,
                ).ddf
            ),
            evaluation,
            device,
        )
        rows.append((f"ANTs {args.ants_transform}", 0, sec, mb, _scores(ddf, evaluation)))
    curve = None
    if learner is not None:
        params = count_parameters(learner.agent.planner) + count_parameters(learner.agent.actor)
        learner.agent.eval()
        for steps in (1, 10, 20):
            ddf, sec, mb = _timed(
                lambda i, s=steps: (
                    register(
                        learner.agent,
                        evaluation.fixed[i : i + 1],
                        evaluation.moving[i : i + 1],
                        steps=s,
                        track_ssim=False,
                    ).ddf
                ),
                evaluation,
                device,
            )
            rows.append((f"RL-I2IT t={steps}", params, sec, mb, _scores(ddf, evaluation)))
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

    pair_source = "all ordered pairs of the training subjects" if args.all_pairs else "the manifest train split"
    eval_source = "all ordered pairs of the val + test subjects" if args.eval_all_pairs else "the val and test pairs"
    command = shlex.join(["python", "benchmarks/registration.py", *(sys.argv[1:] if argv is None else argv)])
    shrunk = f" (every axis shrunk {args.downsample}x, then zero-padded)" if args.downsample > 1 else ""
    memory_kind = "CUDA allocator peak" if device.type == "cuda" else "RSS growth in this process (order dependent)"
    lines = [
        f"# Registration benchmark ({args.dims}D demo cohort, {len(train)} training / "
        f"{len(evaluation)} evaluation pairs)",
        "",
        f"Machine: {machine(device)}. Device: {device}.",
        "",
        f"Command: `{command}`",
        "",
        f"Images {'x'.join(map(str, size))}{shrunk}. Training pairs {pair_source}, evaluation pairs {eval_source}. "
        + (
            f"RL-I2IT ({args.network}, {args.train_steps} steps per episode): {args.episodes} episodes "
            f"({rl_train:.0f} s), reward labels {args.reward_labels}, config overrides "
            f"{json.dumps(options) if options else 'none'}. "
            if "rl-i2it" in methods
            else ""
        )
        + (f"VoxelMorph: {args.vm_iterations} iterations ({vm_train:.0f} s). " if "voxelmorph" in methods else "")
        + (
            f"ANTs {args.ants_transform}: antspyx defaults, per pair on the CPU, including its transform files. "
            if "ants" in methods
            else ""
        )
        + f"Seed {args.seed}. Per pair: batch 1, after one untimed warm-up call; peak MB: "
        f"{memory_kind}; x VM: seconds per pair / one VoxelMorph forward (target <= 10 for RL-I2IT t=20).",
        "",
        "| method | Dice CSF/GM/WM | HD95 (vox) | folding % | SDlogJ | params | s / pair | x VM | peak MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, n, sec, mb, s in rows:
        ratio = f"{sec / vm_sec:.1f}" if vm_sec > 0 and name != "identity" else "-"
        lines.append(
            f"| {name} | {s['dice_mean']:.4f} | {s['hd95_mean']:.2f} | {s['folding_percent']:.3f} | "
            f"{s['sdlogj']:.4f} | {n:,} | {sec:.3f} | {ratio} | {mb:.0f} |"
        )
    if curve is not None:
        lines += ["", "RL-I2IT Dice over steps (t = 0..20): " + ", ".join(f"{float(v):.4f}" for v in curve)]
    lines.append("")
    text = "\n".join(lines)
    print(text)
    if args.out is not None:
        from medi2i.io import atomic_path

        args.out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(args.out) as tmp:
            Path(tmp).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
