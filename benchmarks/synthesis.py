"""Synthesis benchmark: Bi-DPM vs rectified flow, I-CFM and an L1 regression control on demo-cohort slices.

Protocol (bidpm.md section 10.2, CPU-sized): the same ``VelocityUNet``, optimiser (Adam), learning rate, batch
size, data and number of optimiser steps for every method; T1w (A) <-> T2w (B) axial slices cut from the 3D
demo cohort (train subjects for training, val + test subjects held out), MR percentile normalisation to
[-1, 1], average-pooled by ``--downsample``. Two pairing settings: 100 % and ``--pairing`` (default 10 %)
of the training subjects paired; below 100 % every batch is half paired rows (same subject and slice) and half
unpaired rows (A and B from two different unpaired-pool subjects). Bi-DPM then adds the MMD term
(``lambda_u``), rectified flow is run both on random couplings (``couple``) and on the pairs only (``drop``),
and the regression control uses the pairs only.

Reported per direction: SSIM, PSNR (data_range 2 on [-1, 1]) and MAE, inside the brain mask, averaged over the
held-out slices; training seconds per iteration (wall and process CPU), inference ms per slice (batched
held-out set, wall), and peak memory (CUDA: ``torch.cuda.max_memory_allocated``; CPU: growth of the resident
set size over 3 training steps in a fresh process, sampled every 5 ms from ``/proc/self/statm``).

Usage (CPU: ~7 minutes of CPU time with the defaults, 13 minutes wall on a shared 2-core machine; writes a
markdown table)::

    python benchmarks/synthesis.py --out benchmarks/results/synthesis_cpu.md

GPU (not measured yet; the script supports it): ``--device cuda --bf16`` (bf16 autocast) with flash attention
(on by default; ``--no-flash-attention`` to compare), e.g. the paper's network and size::

    python benchmarks/synthesis.py --device cuda --bf16 --network paper --downsample 1 --steps 2000 \\
        --batch 16 --out benchmarks/results/synthesis_cuda.md
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from medi2i.data.demo import generate_demo_cohort
from medi2i.data.manifest import read_manifest
from medi2i.data.slices import axial_axis, volume_to_slices
from medi2i.data.transforms import synthesis_preprocessing
from medi2i.metrics import mae, psnr, ssim
from medi2i.synthesis import SynthesisMethod, build_method
from medi2i.synthesis.networks import PAPER_UNET, TINY_UNET, VelocityUNet


@dataclass
class Slices:
    a: torch.Tensor  # (S, 1, H, W)
    b: torch.Tensor
    mask: torch.Tensor  # (S, 1, H, W) bool
    subject: torch.Tensor  # (S,) subject index


@dataclass
class Run:
    label: str
    config: dict
    nfes: list[int | None]
    pairing: float
    metrics: dict = field(default_factory=dict)


def load_slices(root: Path, splits: list[str], downsample: int, per_subject: int, min_fraction: float) -> Slices:
    """Axial slices whose brain mask covers >= ``min_fraction``, at most ``per_subject`` evenly spaced ones."""
    rows = read_manifest(root / "synthesis_t1w_t2w_3d.csv", root, kind="synthesis", split=splits)
    preprocess = synthesis_preprocessing("mr", "mr", spatial_dims=3, mask_key="mask")
    parts: dict[str, list[torch.Tensor]] = {"a": [], "b": [], "mask": [], "subject": []}
    for index, row in enumerate(rows):
        d = preprocess(row)
        axis = axial_axis(d["source"].affine)
        cut = {key: volume_to_slices(torch.as_tensor(d[key]).float(), axis) for key in ("source", "target", "mask")}
        keep = torch.nonzero(cut["mask"].flatten(1).mean(1) >= min_fraction).flatten()
        keep = keep[np.linspace(0, len(keep) - 1, min(per_subject, len(keep))).round().astype(int)]
        parts["a"].append(F.avg_pool2d(cut["source"][keep], downsample))
        parts["b"].append(F.avg_pool2d(cut["target"][keep], downsample))
        parts["mask"].append(F.max_pool2d(cut["mask"][keep], downsample) > 0)
        parts["subject"].append(torch.full((len(keep),), index))
    return Slices(*(torch.cat(parts[k]) for k in ("a", "b", "mask", "subject")))


class Batches:
    """Seeded batches; below 100 % pairing, half paired rows (paired pool) and half unpaired rows."""

    def __init__(self, data: Slices, batch: int, pairing: float, seed: int) -> None:
        self.data, self.batch, self.pairing = data, batch, pairing
        self.rng = np.random.default_rng(seed)
        subjects = np.unique(data.subject.numpy())
        order = np.random.default_rng(seed + 1).permutation(subjects)
        n_paired = len(subjects) if pairing >= 1 else max(1, math.ceil(pairing * len(subjects)))
        self.paired_pool = np.flatnonzero(np.isin(data.subject.numpy(), order[:n_paired]))
        self.unpaired_subjects = order[n_paired:]
        self.paired_subjects = order[:n_paired]
        if pairing < 1 and len(self.unpaired_subjects) < 2:
            raise SystemExit(f"pairing {pairing:g} leaves {len(self.unpaired_subjects)} unpaired training subject(s); "
                             "unpaired rows need 2: use more --subjects")  # fmt: skip

    def next(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        d = self.data
        if self.pairing >= 1:
            rows = self.rng.choice(len(d.a), self.batch, replace=False)
            return d.a[rows], d.b[rows], torch.ones(self.batch, dtype=torch.bool)
        half = self.batch // 2
        rows = self.rng.choice(self.paired_pool, half, replace=len(self.paired_pool) < half)
        subjects = d.subject.numpy()
        rows_a, rows_b = [], []
        for _ in range(self.batch - half):
            sa, sb = self.rng.choice(self.unpaired_subjects, 2, replace=False)
            rows_a.append(self.rng.choice(np.flatnonzero(subjects == sa)))
            rows_b.append(self.rng.choice(np.flatnonzero(subjects == sb)))
        a = torch.cat([d.a[rows], d.a[rows_a]])
        b = torch.cat([d.b[rows], d.b[rows_b]])
        paired = torch.cat([torch.ones(half, dtype=torch.bool), torch.zeros(self.batch - half, dtype=torch.bool)])
        return a, b, paired


class PeakMemory:
    """Peak memory of a block: CUDA allocator peak, or sampled RSS above the starting level (CPU)."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.peak_mb = device, 0.0

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats(self.device)
            return self
        self._base, self._peak, self._stop = self._rss(), self._rss(), threading.Event()

        def sample() -> None:
            while not self._stop.wait(0.005):
                self._peak = max(self._peak, self._rss())

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak_mb = torch.cuda.max_memory_allocated(self.device) / 2**20
            return
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self._peak, self._rss()) / 2**20 - self._base / 2**20


def _memory_probe(config: dict, network_kwargs: dict, shape: tuple, batch: int, pairing: float, queue) -> None:
    """Child process: peak RSS growth (MB) over 3 training steps on random data (a fresh allocator)."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    method = build_method(config, network=VelocityUNet(**network_kwargs))
    optimizer = torch.optim.Adam(method.network.parameters(), lr=1e-4)
    a, b = torch.rand(batch, 1, *shape) * 2 - 1, torch.rand(batch, 1, *shape) * 2 - 1
    paired = torch.ones(batch, dtype=torch.bool)
    if pairing < 1:
        paired[batch // 2 :] = False
    with PeakMemory(torch.device("cpu")) as memory:
        for _ in range(3):
            loss = method.training_loss(a, b, paired=paired)["loss"]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    queue.put(memory.peak_mb)


def cpu_peak_memory(config: dict, network_kwargs: dict, shape: tuple, batch: int, pairing: float) -> float:
    """Peak training memory on CPU, measured in a fresh process: RSS in a long-lived process only grows when the
    allocator needs more than any earlier run did, so in-process numbers would depend on the order of runs."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_memory_probe, args=(config, network_kwargs, shape, batch, pairing, queue))
    process.start()
    peak = queue.get(timeout=600)
    process.join()
    return float(peak)


def autocast(device: torch.device, bf16: bool):
    # bf16 autocast only on CUDA (ARCHITECTURE.md: AMP only where it is safe)
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16 and device.type == "cuda")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def evaluate(method: SynthesisMethod, data: Slices, nfe: int | None, args, device) -> dict[str, float]:
    out: dict[str, float] = {}
    elapsed = 0.0
    for direction, source, target in (("a2b", data.a, data.b), ("b2a", data.b, data.a)):
        preds = []
        for start in range(0, len(source), args.eval_batch):
            x = source[start : start + args.eval_batch].to(device)
            synchronize(device)
            t0 = time.perf_counter()
            with autocast(device, args.bf16):
                y = method.sample(x, direction, num_steps=nfe)
            synchronize(device)
            elapsed += time.perf_counter() - t0
            preds.append(y.float().cpu())
        pred = torch.cat(preds)
        scores = {"ssim": [], "psnr": [], "mae": []}
        for p, r, m in zip(pred, target, data.mask, strict=True):
            scores["ssim"].append(ssim(p[0], r[0], data_range=2.0, mask=m[0]))
            scores["psnr"].append(psnr(p[0], r[0], data_range=2.0, mask=m[0]))
            scores["mae"].append(mae(p[0], r[0], mask=m[0]))
        for key, values in scores.items():
            out[f"{direction}_{key}"] = float(np.mean(values))
    out["ms_per_slice"] = 1000.0 * elapsed / (2 * len(data.a))
    return out


def train(run: Run, train_data: Slices, held_out: Slices, args, device) -> list[dict]:
    torch.manual_seed(args.seed)
    network_kwargs = {**(PAPER_UNET if args.network == "paper" else TINY_UNET), "use_flash_attention": args.flash}
    if args.channels:
        network_kwargs["channels"] = args.channels
        network_kwargs["attention_levels"] = [False] * len(args.channels)
    method = build_method(run.config, network=VelocityUNet(**network_kwargs)).to(device)
    probe_mb = None
    if device.type == "cpu":
        shape = tuple(train_data.a.shape[2:])
        probe_mb = cpu_peak_memory(run.config, network_kwargs, shape, args.batch, run.pairing)
    optimizer = torch.optim.Adam(method.network.parameters(), lr=args.lr)
    batches = Batches(train_data, args.batch, run.pairing, args.seed)
    losses = []
    with PeakMemory(device) as memory:
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for _ in range(args.steps):
            a, b, paired = (t.to(device) for t in batches.next())
            with autocast(device, args.bf16):
                loss = method.training_loss(a, b, paired=paired)["loss"]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(method.network.parameters(), 1.0)
            optimizer.step()
            losses.append(float(loss.detach()))
        synchronize(device)
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    rows = []
    for nfe in run.nfes:
        metrics = evaluate(method, held_out, nfe, args, device)
        rows.append(
            {
                "pairing": run.pairing,
                "method": run.label,
                "nfe": nfe if nfe is not None else "-",
                "s_per_it": wall / args.steps,
                "cpu_s_per_it": cpu / args.steps,
                "peak_mb": memory.peak_mb if probe_mb is None else probe_mb,
                "final_loss": float(np.mean(losses[-10:])),
                **metrics,
            }
        )
        print(f"  {run.label:<28} NFE {rows[-1]['nfe']}: {_fmt_metrics(rows[-1])}", flush=True)
    return rows


def _fmt_metrics(row: dict) -> str:
    return (
        f"A->B SSIM {row['a2b_ssim']:.3f} PSNR {row['a2b_psnr']:.2f} | "
        f"B->A SSIM {row['b2a_ssim']:.3f} PSNR {row['b2a_psnr']:.2f}"
    )


def plan(args) -> list[Run]:
    nfes = args.nfe
    runs: list[Run] = []
    for pairing in (1.0, args.pairing):
        partial = pairing < 1
        lam = args.lambda_unpaired if partial else 0.0
        tag = "" if not partial else f", lambda_u {lam:g}"
        for n in args.bidpm_steps:
            cfg = {"method": "bidpm", "num_steps": n, "paired_metric": args.paired_metric, "lambda_unpaired": lam,
                   "mmd_pool": args.mmd_pool}  # fmt: skip
            runs.append(Run(f"Bi-DPM N={n} ({args.paired_metric}{tag})", cfg, [n], pairing))
        rows = ["couple", "drop"] if partial else ["drop"]
        for unpaired in rows:
            suffix = {"couple": ", random coupling", "drop": ", pairs only" if partial else ""}[unpaired]
            cfg = {"method": "rectified_flow", "unpaired_rows": unpaired}
            runs.append(Run(f"RF{suffix}", cfg, list(nfes), pairing))
        if not partial:
            runs.append(
                Run(f"I-CFM sigma={args.sigma:g}", {"method": "icfm", "sigma": args.sigma}, list(nfes), pairing)
            )
        runs.append(
            Run("L1 regression" + (", pairs only" if partial else ""), {"method": "regression"}, [None], pairing)
        )
    return runs


def machine(device: torch.device) -> str:
    import monai

    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    text = f"{cpu}, {os.cpu_count()} logical cores (torch threads {torch.get_num_threads()})"
    if device.type == "cuda":
        text += f", GPU {torch.cuda.get_device_name(device)}"
    return f"{text}; Python {platform.python_version()}, torch {torch.__version__}, monai {monai.__version__}"


def write_table(path: Path, rows: list[dict], identity: dict, args, device, info: dict) -> None:
    lines = [
        "# Synthesis benchmark: Bi-DPM vs rectified flow, I-CFM and an L1 regression control",
        "",
        f"Machine: {machine(device)}. Device: {device.type}"
        + (", bf16 autocast" if args.bf16 and device.type == "cuda" else ", fp32")
        + f", flash attention {'on' if args.flash else 'off'}.",
        "",
        f"Command: `{' '.join(['python'] + sys.argv)}`",
        "",
        f"Data: demo cohort ({args.subjects} subjects, 3D T1w/T2w, seed 0), axial slices with >= "
        f"{args.min_fraction:.0%} brain, at most {args.slices_per_subject} per subject, average-pooled "
        f"x{args.downsample} to {info['size']}: {info['train']} training slices ({info['train_subjects']} "
        f"subjects), {info['held_out']} held-out slices ({info['held_out_subjects']} val+test subjects). "
        f"Network: VelocityUNet {info['network']} ({info['params']:,} parameters). Every method: Adam lr {args.lr:g}, "
        f"batch {args.batch}, {args.steps} steps, gradient clipping 1.0, seed {args.seed}. Bi-DPM paired metric: "
        f"{args.paired_metric} (the paper's LPIPS-VGG needs local weights; a pixel metric keeps the comparison "
        f"offline), MMD on {args.mmd_pool}x{args.mmd_pool}-pooled images.",
        "",
        "Metrics inside the brain mask on [-1, 1] (data_range 2), mean over held-out slices; A = T1w, B = T2w. "
        "s/it: training wall seconds per iteration (CPU s/it: process CPU time, all threads); ms/slice: "
        "inference wall time per slice (batched); peak MB: "
        + (
            "CUDA max_memory_allocated"
            if device.type == "cuda"
            else "peak RSS growth during 3 training steps in a fresh process (model built, before the first step)"
        )
        + ". NFE: network evaluations per translated slice.",
        "",
        "| pairing | method | NFE | s/it | CPU s/it | ms/slice | peak MB | final loss "
        "| A→B SSIM | A→B PSNR | A→B MAE | B→A SSIM | B→A PSNR | B→A MAE |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| - | identity (output = input) | 0 | - | - | - | - | - | {identity['a2b_ssim']:.3f} | "
        f"{identity['a2b_psnr']:.2f} | {identity['a2b_mae']:.3f} | {identity['b2a_ssim']:.3f} | "
        f"{identity['b2a_psnr']:.2f} | {identity['b2a_mae']:.3f} |",
    ]
    for r in rows:
        lines.append(
            f"| {r['pairing']:.0%} | {r['method']} | {r['nfe']} | {r['s_per_it']:.3f} | {r['cpu_s_per_it']:.3f} | "
            f"{r['ms_per_slice']:.2f} | {r['peak_mb']:.0f} | {r['final_loss']:.4f} | {r['a2b_ssim']:.3f} | "
            f"{r['a2b_psnr']:.2f} | {r['a2b_mae']:.3f} | {r['b2a_ssim']:.3f} | {r['b2a_psnr']:.2f} | "
            f"{r['b2a_mae']:.3f} |"
        )
    lines.append("")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n" + args.notes_text)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--cohort", type=Path, default=None, help="demo cohort folder (default: a fresh temporary one)")
    p.add_argument("--subjects", type=int, default=16, help="demo cohort subjects (default 16: 12 train, 4 held out)")
    p.add_argument("--downsample", type=int, default=2, help="average-pooling factor of the 96x112 slices")
    p.add_argument("--slices-per-subject", type=int, default=16)
    p.add_argument("--min-fraction", type=float, default=0.15, help="minimum brain fraction of a slice")
    p.add_argument("--eval-slices-per-subject", type=int, default=8)
    p.add_argument("--steps", type=int, default=150, help="optimiser steps per method")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--eval-batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--network", choices=["tiny", "paper"], default="tiny")
    p.add_argument("--channels", type=int, nargs="+", default=None, help="override the network's channels")
    p.add_argument("--paired-metric", default="l1", choices=["l1", "ssim_l1", "lpips"])
    p.add_argument("--bidpm-steps", type=int, nargs="+", default=[1, 2])
    p.add_argument("--nfe", type=int, nargs="+", default=[1, 2, 4, 8], help="RF/I-CFM sampling NFEs")
    p.add_argument("--sigma", type=float, default=0.1, help="I-CFM sigma")
    p.add_argument("--pairing", type=float, default=0.1, help="partial pairing ratio (besides 100 %%)")
    p.add_argument("--lambda-unpaired", type=float, default=0.3)
    p.add_argument("--mmd-pool", type=int, default=2)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (CUDA only)")
    p.add_argument("--flash", dest="flash", action="store_true", default=True, help="flash attention (default)")
    p.add_argument("--no-flash-attention", dest="flash", action="store_false")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: steadier CPU timings)")
    p.add_argument("--notes", type=Path, default=None, help="markdown appended below the table")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/synthesis_cpu.md"))
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.notes_text = args.notes.read_text() if args.notes else ""
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.cohort or Path(tmp) / "cohort"
        root = generate_demo_cohort(root, subjects=args.subjects, dims=(3,), seed=0)
        train_data = load_slices(root, ["train"], args.downsample, args.slices_per_subject, args.min_fraction)
        held_out = load_slices(root, ["val", "test"], args.downsample, args.eval_slices_per_subject, args.min_fraction)
    identity = {}
    for direction, source, target in (("a2b", held_out.a, held_out.b), ("b2a", held_out.b, held_out.a)):
        pairs = list(zip(source, target, held_out.mask, strict=True))
        identity[f"{direction}_ssim"] = float(
            np.mean([ssim(s[0], t[0], data_range=2.0, mask=m[0]) for s, t, m in pairs])
        )
        identity[f"{direction}_psnr"] = float(
            np.mean([psnr(s[0], t[0], data_range=2.0, mask=m[0]) for s, t, m in pairs])
        )
        identity[f"{direction}_mae"] = float(np.mean([mae(s[0], t[0], mask=m[0]) for s, t, m in pairs]))
    kwargs = {**(PAPER_UNET if args.network == "paper" else TINY_UNET)}
    if args.channels:
        kwargs.update(channels=args.channels, attention_levels=[False] * len(args.channels))
    info = {
        "size": "x".join(str(s) for s in train_data.a.shape[2:]),
        "train": len(train_data.a),
        "held_out": len(held_out.a),
        "train_subjects": len(torch.unique(train_data.subject)),
        "held_out_subjects": len(torch.unique(held_out.subject)),
        "network": kwargs["channels"],
        "params": sum(p.numel() for p in VelocityUNet(**kwargs).parameters()),
    }
    print(f"data: {info}", flush=True)
    rows = []
    for run in plan(args):
        print(f"[{run.pairing:.0%}] {run.label}", flush=True)
        rows.extend(train(run, train_data, held_out, args, device))
    write_table(args.out, rows, identity, args, device, info)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
