"""RL-I2IT test-time cost against one VoxelMorph forward (issue 6, section 5 "Performance").

The issue's targets, on an H100: a 20-step registration at 128^3 in <= 40 ms (the paper reports 1.05 s), at
128^2 in <= 5 ms, and one registration <= 10x one VoxelMorph forward. Cost does not depend on the weights'
values, so the agents are randomly initialised (seeded) and the pair is a seeded smooth random image pair; no
data or weights files are needed.

Per (dims, network preset, precision) the script times, after ``--warmup`` untimed calls, the median wall time
over ``--repeats`` calls (CUDA synchronised before and after each) of:

* ``VoxelMorph forward``: MONAI ``VoxelMorph`` (the harness's VM-2 widths) on the same pair: the baseline;
* ``RL-I2IT 1 step`` and ``RL-I2IT 20 steps``: :func:`medi2i.registration.inference.register` with the mean
  plan, ``stop="none"`` (every step runs; the similarity stop of the demo overlay can only end earlier) and no
  Dice/SSIM tracking, i.e. planner + actor + clamp + field composition + image warp per step.

Also: the ratio to the VoxelMorph forward, peak memory (CUDA allocator peak; CPU: RSS growth in this process)
and, on CUDA, the number of host synchronisations inside one registration (``torch.cuda.set_sync_debug_mode``
warnings; the issue asks for none per step). ``--compile`` adds rows with ``torch.compile`` of the planner and
actor. A ``met?`` column compares with the targets only on CUDA at the target size; elsewhere only the ratio
column is comparable.

Usage::

    python benchmarks/registration_perf.py --device cuda --out benchmarks/results/registration_perf_cuda.md
    OMP_NUM_THREADS=1 python benchmarks/registration_perf.py --device cpu --threads 1 --size-3d 64 --repeats 3 \\
        --out benchmarks/results/registration_perf_cpu.md
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from medi2i.registration.baselines import VoxelMorphBaseline
from medi2i.registration.config import RLI2ITConfig
from medi2i.registration.inference import register
from medi2i.registration.sac import RLI2ITAgent

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/ is a folder of scripts, not a package
from _bench_common import PeakMemory, machine, positive_int, synchronize  # noqa: E402

#: issue 6, section 5: milliseconds for a 20-step registration on an H100, keyed by (dims, size per axis)
TARGET_MS = {(3, 128): 40.0, (2, 128): 5.0}
TARGET_RATIO = 10.0
STEPS = 20


@dataclass
class Row:
    dims: int
    size: int
    network: str
    precision: str
    method: str
    ms: float
    peak_mb: float
    syncs: int | None = None
    ratio: float | None = None


def smooth_pair(dims: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """``(2, 1, *[size] * dims)`` smooth random images in [0, 1] (upsampled 8^dims noise): fixed, moving."""
    low = torch.randn(2, 1, *([8] * dims), generator=generator)
    x = F.interpolate(low, size=(size,) * dims, mode="bilinear" if dims == 2 else "trilinear", align_corners=False)
    lo = x.flatten(1).amin(1).reshape(-1, *[1] * (dims + 1))
    hi = x.flatten(1).amax(1).reshape(-1, *[1] * (dims + 1))
    return ((x - lo) / (hi - lo)).contiguous()


def median_ms(fn: Callable[[], object], device: torch.device, warmup: int, repeats: int) -> tuple[float, float]:
    """Median wall milliseconds of ``fn()`` over ``repeats`` timed calls after ``warmup`` untimed ones, and the
    peak memory (MB) of the timed calls."""
    with torch.no_grad():
        for _ in range(warmup):
            fn()
        times = []
        with PeakMemory(device) as memory:
            for _ in range(repeats):
                synchronize(device)
                t0 = time.perf_counter()
                fn()
                synchronize(device)
                times.append(1000.0 * (time.perf_counter() - t0))
    return statistics.median(times), memory.peak_mb


def host_syncs(fn: Callable[[], object], device: torch.device) -> int | None:
    """Number of synchronising CUDA calls made by one ``fn()`` (``None`` on CPU, where it means nothing)."""
    if device.type != "cuda":
        return None
    synchronize(device)
    previous = torch.cuda.get_sync_debug_mode()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            with torch.no_grad():
                fn()
        finally:
            torch.cuda.set_sync_debug_mode(previous)
    return sum("synchroniz" in str(w.message) for w in caught)


def autocast(device: torch.device, precision: str):
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=precision == "bf16" and device.type == "cuda")


def measure(args: argparse.Namespace, device: torch.device, dims: int, size: int, precision: str) -> list[Row]:
    """The VoxelMorph baseline and the RL-I2IT rows of one (dims, size, precision) for every network preset."""
    generator = torch.Generator().manual_seed(args.seed)
    fixed, moving = smooth_pair(dims, size, generator).to(device).chunk(2)
    torch.manual_seed(args.seed)
    vm = VoxelMorphBaseline(dims).to(device).eval()

    def vm_forward() -> torch.Tensor:
        with autocast(device, precision):
            return vm(moving, fixed)

    vm_ms, vm_mb = median_ms(vm_forward, device, args.warmup, args.repeats)
    rows = [Row(dims, size, "VM-2", precision, "VoxelMorph forward", vm_ms, vm_mb, host_syncs(vm_forward, device))]
    for network in args.networks:
        for compiled in (False, True) if args.compile else (False,):
            cfg = RLI2ITConfig(spatial_dims=dims, network=network, precision=precision, seed=args.seed)
            agent = RLI2ITAgent(cfg, (size,) * dims).to(device).eval()
            if compiled:
                agent.planner = torch.compile(agent.planner)
                agent.actor = torch.compile(agent.actor)
            name = f"{network}{' compiled' if compiled else ''}"
            for steps in (1, STEPS):

                def run(steps: int = steps, agent: RLI2ITAgent = agent) -> torch.Tensor:
                    return register(agent, fixed, moving, steps=steps, track_ssim=False, stop="none").ddf

                ms, mb = median_ms(run, device, args.warmup, args.repeats)
                method = f"RL-I2IT {steps} step{'s' if steps > 1 else ''}"
                rows.append(Row(dims, size, name, precision, method, ms, mb, host_syncs(run, device), ms / vm_ms))
    return rows


def met(row: Row, device: torch.device) -> str:
    if row.ratio is None or not row.method.endswith(f"{STEPS} steps"):
        return ""
    target = TARGET_MS.get((row.dims, row.size))
    if device.type != "cuda" or target is None:
        return "n/a here"
    return "yes" if row.ms <= target and row.ratio <= TARGET_RATIO else "no"


def table(rows: list[Row], args: argparse.Namespace, device: torch.device, argv: list[str]) -> str:
    lines = [
        "# RL-I2IT registration cost vs one VoxelMorph forward",
        "",
        f"Machine: {machine(device)}. Device: {device}.",
        "",
        f"Command: `{shlex.join(['python', 'benchmarks/registration_perf.py', *argv])}`",
        "",
        f"Randomly initialised networks (seed {args.seed}), one smooth random pair at batch 1; median of "
        f"{args.repeats} timed calls after {args.warmup} warm-up calls; `x VM` = ms / the VoxelMorph forward of the "
        f"same row block; peak MB: "
        f"{'CUDA allocator peak' if device.type == 'cuda' else 'RSS growth in this process (order dependent)'}; "
        "host syncs: synchronising CUDA calls in one call (CUDA only). Targets (issue 6, H100): 20 steps at 128^3 "
        f"<= {TARGET_MS[(3, 128)]:.0f} ms, at 128^2 <= {TARGET_MS[(2, 128)]:.0f} ms, and <= {TARGET_RATIO:.0f}x "
        "one VoxelMorph forward.",
        "",
        "| dims | size | network | precision | method | ms | x VM | host syncs | peak MB | met? |",
        "|---:|---:|---|---|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        ratio = "-" if r.ratio is None else f"{r.ratio:.1f}"
        syncs = "n/a" if r.syncs is None else str(r.syncs)
        lines.append(
            f"| {r.dims}D | {r.size} | {r.network} | {r.precision} | {r.method} | {r.ms:.2f} | {ratio} | {syncs} | "
            f"{r.peak_mb:.0f} | {met(r, device)} |"
        )
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    cuda = torch.cuda.is_available()
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda" if cuda else "cpu")
    p.add_argument("--dims", type=int, nargs="+", choices=(2, 3), default=[2, 3])
    p.add_argument("--size-2d", type=positive_int, default=128, help="2D side (a multiple of 32)")
    p.add_argument("--size-3d", type=positive_int, default=128, help="3D side (a multiple of 32)")
    p.add_argument("--networks", nargs="+", choices=("vm_budget", "spac"), default=["vm_budget", "spac"])
    p.add_argument(
        "--precisions", nargs="+", choices=("no", "bf16"), default=None, help="default: no and bf16 on CUDA, no on CPU"
    )
    p.add_argument("--compile", action="store_true", help="also time torch.compile'd planner and actor")
    p.add_argument("--warmup", type=positive_int, default=3)
    p.add_argument("--repeats", type=positive_int, default=20)
    p.add_argument("--threads", type=positive_int, default=None, help="torch intra-op threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    for dims, size in ((2, args.size_2d), (3, args.size_3d)):
        if dims in args.dims and size % 32:
            p.error(f"--size-{dims}d must be a multiple of 32 (the networks' 2**5), got {size}")
    if args.precisions is None:
        args.precisions = ["no", "bf16"] if str(args.device).startswith("cuda") else ["no"]
    if "bf16" in args.precisions and not str(args.device).startswith("cuda"):
        p.error("--precisions bf16 needs a CUDA device (the agent's autocast is CUDA only)")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rows: list[Row] = []
    for dims in sorted(args.dims):
        size = args.size_2d if dims == 2 else args.size_3d
        for precision in args.precisions:
            rows += measure(args, device, dims, size, precision)
    text = table(rows, args, device, argv)
    print(text)
    if args.out is not None:
        from medi2i.io import atomic_path

        args.out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(args.out) as tmp:
            Path(tmp).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
