"""Synthesis benchmark: Bi-DPM vs rectified flow, I-CFM, VP-CFM and regression controls on demo-cohort slices.

Protocol (bidpm.md section 10.2, CPU-sized): the same ``VelocityUNet``, optimiser (Adam), learning rate, batch
size and data for every method, under two budgets: the same number of optimiser steps (``--steps``) and the
same training time (``--budget-seconds``; each method trains until its clock passes the budget and the table
reports the steps it reached). Two tasks (``--task``), both on axial slices cut from the 3D demo cohort (train
subjects for training, val + test subjects held out), average-pooled by ``--downsample``:

* ``t1w_t2w``: A = T1w, B = T2w, both MR percentile-normalised to [-1, 1];
* ``mr_ct``: A = T1w MR, B = CT (HU window [-1024, 3000] -> [-1, 1], ``medi2i.data.intensity.CTWindow``).

Two pairing settings: 100 % and ``--pairing`` (default 10 %) of the training subjects paired; below 100 % every
batch is half paired rows (same subject and slice) and half unpaired rows (A and B from two different
unpaired-pool subjects). Bi-DPM then adds the MMD term (``lambda_u``), rectified flow is run both on random
couplings (``couple``) and on the pairs only (``drop``), and the regression controls use the pairs only.
Bi-DPM and the regression control are run with each ``--paired-metrics`` entry (``l1``; ``l1_lpips`` =
L1 + ``--lpips-weight`` x LPIPS-VGG, which needs the local LPIPS weights: without them those rows are skipped
and the table says why; random LPIPS weights are never used). Each configuration is trained once per
``--seeds`` entry (network initialisation, batches, flow noise and the paired subset change with the seed;
the data do not) and each cell is the mean ± sample std over the seeds.

Reported per direction, on the held-out slices inside the head mask: SSIM, PSNR and MAE on [-1, 1]
(``medi2i.metrics`` with data_range 2) for MR targets; for CT targets the SynthRAD2023 definitions in HU
(``medi2i.metrics.synthrad_metrics``: MAE in HU, PSNR and SSIM on [-1024, 3000] HU, the network output mapped
back to HU with the inverse of the CT window). Also: training seconds per iteration (wall and process CPU),
inference ms per slice (batched held-out set, wall), and peak memory (CUDA: ``torch.cuda.max_memory_allocated``;
CPU: growth of the resident set size over 3 training steps in a fresh process, sampled every 5 ms from
``/proc/self/statm``; ``--in-process`` measures in this process instead, order dependent, for smoke tests).

Usage (CPU: the defaults are 150 steps per method and one seed; the committed tables were made on a shared
2-core machine with fewer steps and a time limit so that both tasks x 3 seeds fit in 40 minutes)::

    python benchmarks/synthesis.py --task t1w_t2w --seeds 0 1 2 --steps 60 --budget-seconds 6 \\
        --budget-clock process --time-limit-minutes 40 --out benchmarks/results/synthesis_cpu.md
    python benchmarks/synthesis.py --task mr_ct --seeds 0 1 2 --steps 60 --budget-seconds 6 \\
        --budget-clock process --time-limit-minutes 40 --out benchmarks/results/synthesis_mr_ct_cpu.md

GPU (not measured yet; the script supports it): ``--device cuda --bf16`` (bf16 autocast) with flash attention
(on by default; ``--no-flash-attention`` to compare), e.g. the paper's network and size::

    python benchmarks/synthesis.py --device cuda --bf16 --network paper --downsample 1 --steps 2000 \\
        --batch 16 --budget-seconds 600 --seeds 0 1 2 --out benchmarks/results/synthesis_cuda.md
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from medi2i.data.demo import generate_demo_cohort
from medi2i.data.intensity import LinearIntensityMap
from medi2i.data.manifest import read_manifest
from medi2i.data.slices import axial_axis, volume_to_slices
from medi2i.data.transforms import synthesis_preprocessing
from medi2i.metrics import CT_RANGE, mae, psnr, ssim, synthrad_metrics
from medi2i.synthesis import SynthesisMethod, build_method
from medi2i.synthesis.bidpm import BiDPM
from medi2i.synthesis.losses import PairedL1, paired_metric
from medi2i.synthesis.networks import PAPER_UNET, TINY_UNET, VelocityUNet

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/ is a folder of scripts, not a package
from _bench_common import PeakMemory, lpips_unavailable, machine, positive_int, synchronize  # noqa: E402


@dataclass(frozen=True)
class Task:
    manifest: str  # demo-cohort manifest (3D volumes, sliced here)
    modalities: tuple[str, str]  # intensity presets of A (source) and B (target): "mr" or "ct"
    names: tuple[str, str]


TASKS: dict[str, Task] = {
    "t1w_t2w": Task("synthesis_t1w_t2w_3d.csv", ("mr", "mr"), ("T1w", "T2w")),
    "mr_ct": Task("synthesis_mr_ct_3d.csv", ("mr", "ct"), ("T1w MR", "CT")),
}
#: the CT preset's window (medi2i.data.intensity.CTWindow defaults): its inverse maps [-1, 1] back to HU
CT_WINDOW = LinearIntensityMap(CT_RANGE[0], CT_RANGE[1], -1.0, 1.0)
PAIRED_METRIC_NAMES = ("l1", "ssim_l1", "lpips", "l1_lpips")
METHOD_CHOICES = ("bidpm", "rf", "icfm", "vpcfm", "regression")


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
    budget: str  # "steps" or "time"
    metrics: dict = field(default_factory=dict)

    @property
    def key(self) -> tuple:
        return (self.budget, self.pairing, self.label)


def load_slices(
    root: Path, task: Task, splits: list[str], downsample: int, per_subject: int, min_fraction: float
) -> Slices:
    """Axial slices whose head mask covers >= ``min_fraction``, at most ``per_subject`` evenly spaced ones."""
    rows = read_manifest(root / task.manifest, root, kind="synthesis", split=splits)
    preprocess = synthesis_preprocessing(*task.modalities, spatial_dims=3, mask_key="mask")
    parts: dict[str, list[torch.Tensor]] = {"a": [], "b": [], "mask": [], "subject": []}
    for index, row in enumerate(rows):
        d = preprocess(row)
        axis = axial_axis(d["source"].affine)
        # plain tensors: MONAI MetaTensor's per-operation bookkeeping would be timed as part of every method
        cut = {
            key: volume_to_slices(torch.as_tensor(d[key]).as_subclass(torch.Tensor).float(), axis)
            for key in ("source", "target", "mask")
        }
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


class PairedL1LPIPS(nn.Module):
    """``d(x, y) = L1(x, y) + weight * LPIPS-VGG(x, y)`` per image, ``(B, C, H, W)`` x2 -> ``(B,)``.

    The paired metric of the Bi-DPM "L1 + LPIPS" rows (bidpm.md section 10.2 lists L1 + LPIPS as the regression
    control's loss; here the same sum is Bi-DPM's ``d``). LPIPS comes from the local weights only
    (:func:`medi2i.synthesis.losses.paired_metric` raises when they are missing).
    """

    metric_name = "l1_lpips"

    def __init__(self, weight: float = 1.0) -> None:
        super().__init__()
        self.l1 = PairedL1()
        self.lpips = paired_metric("lpips", lpips_pretrained=True)
        self.weight = float(weight)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.l1(x, y) + self.weight * self.lpips(x, y)


def make_method(config: dict, network: nn.Module) -> SynthesisMethod:
    """``build_method``, plus Bi-DPM with the benchmark's ``l1_lpips`` paired metric (not a library metric)."""
    config = dict(config)
    if config.get("method") == "bidpm" and config.get("paired_metric") == "l1_lpips":
        weight = config.pop("lpips_weight", 1.0)
        config.pop("method")
        config.pop("paired_metric")
        return BiDPM(network, paired_metric=PairedL1LPIPS(weight).requires_grad_(False), **config)
    return build_method(config, network=network)


def _memory_probe(config: dict, network_kwargs: dict, shape: tuple, batch: int, pairing: float, queue=None) -> float:
    """Peak RSS growth (MB) over 3 training steps on random data (in a child process: a fresh allocator)."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    method = make_method(config, VelocityUNet(**network_kwargs))
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
    if queue is not None:
        queue.put(memory.peak_mb)
    return memory.peak_mb


def cpu_peak_memory(config: dict, network_kwargs: dict, shape: tuple, batch: int, pairing: float, fresh: bool) -> float:
    """Peak training memory on CPU, by default measured in a fresh process: RSS in a long-lived process only
    grows when the allocator needs more than any earlier run did, so in-process numbers depend on run order."""
    if not fresh:
        return float(_memory_probe(config, network_kwargs, shape, batch, pairing))
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


def score(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, modality: str) -> dict[str, float]:
    """Per-slice metrics inside ``mask``, averaged: SynthRAD2023 in HU for CT targets, [-1, 1] for MR targets."""
    scores: dict[str, list[float]] = {"ssim": [], "psnr": [], "mae": []}
    for p, r, m in zip(pred, target, mask, strict=True):
        if modality == "ct":
            values = synthrad_metrics(CT_WINDOW.inverse(p[0]).numpy(), CT_WINDOW.inverse(r[0]).numpy(), m[0].numpy())
            for key in scores:
                scores[key].append(values[key])
        else:
            scores["ssim"].append(ssim(p[0], r[0], data_range=2.0, mask=m[0]))
            scores["psnr"].append(psnr(p[0], r[0], data_range=2.0, mask=m[0]))
            scores["mae"].append(mae(p[0], r[0], mask=m[0]))
    return {key: float(np.mean(values)) for key, values in scores.items()}


def evaluate(method: SynthesisMethod, data: Slices, nfe: int | None, task: Task, args, device) -> dict[str, float]:
    out: dict[str, float] = {}
    elapsed = 0.0
    for direction, source, target, modality in (
        ("a2b", data.a, data.b, task.modalities[1]),
        ("b2a", data.b, data.a, task.modalities[0]),
    ):
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
        for key, value in score(torch.cat(preds), target, data.mask, modality).items():
            out[f"{direction}_{key}"] = value
    out["ms_per_slice"] = 1000.0 * elapsed / (2 * len(data.a))
    return out


def network_kwargs(args) -> dict:
    kwargs = {**(PAPER_UNET if args.network == "paper" else TINY_UNET), "use_flash_attention": args.flash}
    if args.channels:
        kwargs["channels"] = args.channels
        kwargs["attention_levels"] = [False] * len(args.channels)
    return kwargs


def train(run: Run, seed: int, train_data: Slices, held_out: Slices, task: Task, args, device, memory_cache) -> list:
    """Train one configuration with one seed under its budget; one result row per sampling NFE."""
    torch.manual_seed(seed)
    kwargs = network_kwargs(args)
    method = make_method(run.config, VelocityUNet(**kwargs)).to(device)
    memory_key = (repr(sorted(run.config.items())), run.pairing)
    if device.type == "cpu" and memory_key not in memory_cache:  # memory does not depend on the seed or budget
        shape = tuple(train_data.a.shape[2:])
        memory_cache[memory_key] = cpu_peak_memory(
            run.config, kwargs, shape, args.batch, run.pairing, fresh=not args.in_process
        )
    optimizer = torch.optim.Adam(method.network.parameters(), lr=args.lr)
    batches = Batches(train_data, args.batch, run.pairing, seed)
    clock = time.process_time if args.budget_clock == "process" else time.perf_counter
    losses, steps = [], 0
    cuda_memory = PeakMemory(device) if device.type == "cuda" else None
    if cuda_memory is not None:
        cuda_memory.__enter__()
    cpu0, wall0, budget0 = time.process_time(), time.perf_counter(), clock()
    while (steps < args.steps) if run.budget == "steps" else (clock() - budget0 < args.budget_seconds):
        a, b, paired = (t.to(device) for t in batches.next())
        with autocast(device, args.bf16):
            loss = method.training_loss(a, b, paired=paired)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(method.network.parameters(), 1.0)
        optimizer.step()
        steps += 1
        if run.budget == "time":
            synchronize(device)  # the clock must see the GPU work
        losses.append(float(loss.detach()))
    synchronize(device)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    if cuda_memory is not None:
        cuda_memory.__exit__()
    peak_mb = memory_cache[memory_key] if cuda_memory is None else cuda_memory.peak_mb
    rows = []
    for nfe in run.nfes:
        metrics = evaluate(method, held_out, nfe, task, args, device)
        rows.append(
            {
                "budget": run.budget,
                "pairing": run.pairing,
                "method": run.label,
                "nfe": nfe if nfe is not None else "-",
                "seed": seed,
                "steps": steps,
                "s_per_it": wall / max(steps, 1),
                "cpu_s_per_it": cpu / max(steps, 1),
                "peak_mb": peak_mb,
                "final_loss": float(np.mean(losses[-10:])) if losses else float("nan"),
                **metrics,
            }
        )
        print(f"  seed {seed} {run.label:<32} NFE {rows[-1]['nfe']} ({steps} steps): {_fmt_metrics(rows[-1])}",
              flush=True)  # fmt: skip
    return rows


def _fmt_metrics(row: dict) -> str:
    return (
        f"A->B SSIM {row['a2b_ssim']:.3f} PSNR {row['a2b_psnr']:.2f} MAE {row['a2b_mae']:.3f} | "
        f"B->A SSIM {row['b2a_ssim']:.3f} PSNR {row['b2a_psnr']:.2f}"
    )


def plan(args, lpips_reason: str | None) -> tuple[list[Run], list[str]]:
    """The runs, and the labels of the rows skipped (with the reason) because LPIPS weights are missing."""
    runs: list[Run] = []
    skipped: list[str] = []
    metric_label = {"l1": "L1", "ssim_l1": "SSIM+L1", "lpips": "LPIPS", "l1_lpips": "L1+LPIPS"}
    for budget in args.budgets:
        for pairing in (1.0, args.pairing):
            partial = pairing < 1
            lam = args.lambda_unpaired if partial else 0.0
            tag = "" if not partial else f", lambda_u {lam:g}"
            for metric in args.paired_metrics if "bidpm" in args.methods else ():
                needs_lpips = "lpips" in metric
                for n in args.bidpm_steps:
                    label = f"Bi-DPM N={n} ({metric_label[metric]}{tag})"
                    cfg = {"method": "bidpm", "num_steps": n, "paired_metric": metric, "lambda_unpaired": lam,
                           "mmd_pool": args.mmd_pool}  # fmt: skip
                    if metric == "l1_lpips":
                        cfg["lpips_weight"] = args.lpips_weight
                    if needs_lpips and lpips_reason:
                        skipped.append(label)
                        continue
                    runs.append(Run(label, cfg, [n], pairing, budget))
            for unpaired in (["couple", "drop"] if partial else ["drop"]) if "rf" in args.methods else ():
                suffix = {"couple": ", random coupling", "drop": ", pairs only" if partial else ""}[unpaired]
                cfg = {"method": "rectified_flow", "unpaired_rows": unpaired}
                runs.append(Run(f"RF{suffix}", cfg, list(args.nfe), pairing, budget))
            if not partial and "icfm" in args.methods:
                cfg = {"method": "icfm", "sigma": args.sigma}
                runs.append(Run(f"I-CFM sigma={args.sigma:g}", cfg, list(args.nfe), pairing, budget))
            if not partial and "vpcfm" in args.methods:
                cfg = {"method": "vpcfm", "sigma": args.vp_sigma}
                runs.append(Run(f"VP-CFM sigma={args.vp_sigma:g}", cfg, list(args.nfe), pairing, budget))
            for metric in args.paired_metrics if "regression" in args.methods else ():
                if metric not in ("l1", "l1_lpips"):
                    continue  # the regression control's losses (RegressionLoss)
                label = f"{metric_label[metric]} regression" + (", pairs only" if partial else "")
                if "lpips" in metric and lpips_reason:
                    skipped.append(label)
                    continue
                cfg = {"method": "regression", "loss": metric, "lpips_weight": args.lpips_weight}
                runs.append(Run(label, cfg, [None], pairing, budget))
    return runs, sorted(set(skipped), key=skipped.index)


def aggregate(rows: list[dict]) -> list[dict]:
    """Group the per-seed rows by (budget, pairing, method, NFE), keeping the plan order; mean and std per field."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["budget"], row["pairing"], row["method"], row["nfe"]), []).append(row)
    out = []
    for (budget, pairing, method, nfe), members in groups.items():
        agg = {"budget": budget, "pairing": pairing, "method": method, "nfe": nfe, "n": len(members)}
        for key in members[0]:
            if key in agg or key == "seed":
                continue
            values = np.array([m[key] for m in members], dtype=float)
            agg[key] = (float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else None)
        out.append(agg)
    return out


def _cell(value: tuple[float, float | None], digits: int) -> str:
    mean, std = value
    return f"{mean:.{digits}f}" if std is None else f"{mean:.{digits}f} ± {std:.{digits}f}"


def write_table(path: Path, rows: list[dict], identity: dict, args, device, info: dict, task: Task) -> None:
    name_a, name_b = task.names
    ct_target = task.modalities[1] == "ct"
    mae_a2b = "A→B MAE (HU)" if ct_target else "A→B MAE"
    budget_text = {
        "steps": f"equal steps ({args.steps} optimiser steps per method)",
        "time": f"equal time ({args.budget_seconds or 0:g} s of {args.budget_clock} time per method, "
        "the steps column says how many steps each reached)",
    }
    done = getattr(args, "completed_seeds", args.seeds)
    seeds = ", ".join(str(s) for s in done) if done else "none completed yet"
    if done and len(done) < len(args.seeds):
        seeds += f" (of {', '.join(str(s) for s in args.seeds)} requested; the time limit stopped the rest)"
    lines = [
        f"# Synthesis benchmark ({name_a} ↔ {name_b}): Bi-DPM vs rectified flow, I-CFM, VP-CFM and regression",
        "",
        f"Machine: {machine(device)}. Device: {device.type}"
        + (", bf16 autocast" if args.bf16 and device.type == "cuda" else ", fp32")
        + f", flash attention {'on' if args.flash else 'off'}.",
        "",
        f"Command: `{' '.join(['python'] + sys.argv)}`",
        "",
        f"Data: demo cohort ({args.subjects} subjects, 3D {name_a}/{name_b} from `{task.manifest}`, seed 0), axial "
        f"slices with >= {args.min_fraction:.0%} head mask, at most {args.slices_per_subject} per subject, "
        f"average-pooled x{args.downsample} to {info['size']}: {info['train']} training slices "
        f"({info['train_subjects']} subjects), {info['held_out']} held-out slices ({info['held_out_subjects']} "
        f"val+test subjects). Network: VelocityUNet {info['network']} ({info['params']:,} parameters). Every "
        f"method: Adam lr {args.lr:g}, batch {args.batch}, gradient clipping 1.0. Budgets: "
        + "; ".join(budget_text[b] for b in args.budgets)
        + f". Seeds: {seeds} (cells: mean ± sample std over the seeds; column n = seeds in the cell). Bi-DPM MMD on "
        f"{args.mmd_pool}x{args.mmd_pool}-pooled images; L1+LPIPS = L1 + {args.lpips_weight:g} x LPIPS-VGG.",
        "",
    ]
    if ct_target:
        lines.append(
            f"Metrics inside the head mask, mean over held-out slices; A = {name_a}, B = {name_b}. A→B (synthetic "
            "CT): SynthRAD2023 definitions in HU (`medi2i.metrics.synthrad_metrics`: MAE in HU; PSNR and SSIM "
            "on [-1024, 3000] HU, data range 4024, SSIM 7-pixel window), the [-1, 1] output mapped back to HU with "
            "the inverse of the CT window. B→A (synthetic MR): on [-1, 1], data_range 2 (`medi2i.metrics`)."
        )
    else:
        lines.append(
            f"Metrics inside the head mask on [-1, 1] (data_range 2), mean over held-out slices; A = {name_a}, "
            f"B = {name_b}."
        )
    lines += [
        " s/it: training wall seconds per iteration (CPU s/it: process CPU time, all threads); ms/slice: "
        "inference wall time per slice (batched); peak MB: "
        + (
            "CUDA max_memory_allocated"
            if device.type == "cuda"
            else "peak RSS growth during 3 training steps in "
            + ("a fresh process" if not args.in_process else "this process (order dependent)")
            + " (model built, before the first step)"
        )
        + ". NFE: network evaluations per translated slice.",
        "",
    ]
    if args.skipped:
        lines += [
            "Rows not run: " + ", ".join(args.skipped) + f". Reason: the LPIPS-VGG weights are not available "
            f"locally ({args.lpips_reason}). Random LPIPS weights are not a substitute, so these rows are left out.",
            "",
        ]
    lines += [
        f"| budget | pairing | method | NFE | n | steps | s/it | CPU s/it | ms/slice | peak MB | final loss "
        f"| A→B SSIM | A→B PSNR | {mae_a2b} | B→A SSIM | B→A PSNR | B→A MAE |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| - | - | identity (output = input) | 0 | - | - | - | - | - | - | - | {identity['a2b_ssim']:.3f} | "
        f"{identity['a2b_psnr']:.2f} | {identity['a2b_mae']:.{1 if ct_target else 3}f} | "
        f"{identity['b2a_ssim']:.3f} | {identity['b2a_psnr']:.2f} | {identity['b2a_mae']:.3f} |",
    ]
    for r in aggregate(rows):
        budget = f"{args.steps} steps" if r["budget"] == "steps" else f"{args.budget_seconds:g} s"
        spread = r["steps"][1]
        steps = f"{r['steps'][0]:.0f}" + ("" if r["budget"] == "steps" or spread is None else f" ± {spread:.0f}")
        lines.append(
            f"| {budget} | {r['pairing']:.0%} | {r['method']} | {r['nfe']} | {r['n']} | {steps} | "
            f"{r['s_per_it'][0]:.3f} | {r['cpu_s_per_it'][0]:.3f} | {r['ms_per_slice'][0]:.2f} | "
            f"{r['peak_mb'][0]:.0f} | {r['final_loss'][0]:.4f} | {_cell(r['a2b_ssim'], 3)} | "
            f"{_cell(r['a2b_psnr'], 2)} | {_cell(r['a2b_mae'], 1 if ct_target else 3)} | {_cell(r['b2a_ssim'], 3)} | "
            f"{_cell(r['b2a_psnr'], 2)} | {_cell(r['b2a_mae'], 3)} |"
        )
    lines.append("")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n" + args.notes_text)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--task", choices=sorted(TASKS), default="t1w_t2w", help="t1w_t2w (MR<->MR) or mr_ct (MR<->CT)")
    p.add_argument("--cohort", type=Path, default=None, help="demo cohort folder (default: a fresh temporary one)")
    p.add_argument("--subjects", type=positive_int, default=16, help="demo cohort subjects (16: 12 train, 4 held out)")
    p.add_argument("--downsample", type=positive_int, default=2, help="average-pooling factor of the 96x112 slices")
    p.add_argument("--slices-per-subject", type=positive_int, default=16)
    p.add_argument("--min-fraction", type=float, default=0.15, help="minimum head-mask fraction of a slice")
    p.add_argument("--eval-slices-per-subject", type=positive_int, default=8)
    p.add_argument("--steps", type=positive_int, default=150, help="optimiser steps per method (equal-steps budget)")
    p.add_argument("--budget-seconds", type=float, default=None,
                   help="training time per method (equal-time budget); adds the time-budget rows")  # fmt: skip
    p.add_argument("--budget-clock", choices=["wall", "process"], default="wall",
                   help="clock of --budget-seconds: wall time (default) or this process's CPU time (steadier on a "
                        "shared machine)")  # fmt: skip
    p.add_argument("--budgets", nargs="+", choices=["steps", "time"], default=None,
                   help="which budgets to run (default: steps, plus time when --budget-seconds is given)")  # fmt: skip
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds (cells: mean ± std)")
    p.add_argument("--time-limit-minutes", type=float, default=None,
                   help="start another seed only if the last seed's duration still fits in this many minutes "
                        "(the table then holds the completed seeds only)")  # fmt: skip
    p.add_argument("--methods", nargs="+", choices=METHOD_CHOICES, default=list(METHOD_CHOICES),
                   help="method families to run (default: all)")  # fmt: skip
    p.add_argument("--batch", type=positive_int, default=4)
    p.add_argument("--eval-batch", type=positive_int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--network", choices=["tiny", "paper"], default="tiny")
    p.add_argument("--channels", type=int, nargs="+", default=None, help="override the network's channels")
    p.add_argument("--paired-metrics", nargs="+", choices=PAIRED_METRIC_NAMES, default=["l1", "l1_lpips"],
                   help="Bi-DPM paired metrics (and regression losses for l1 / l1_lpips); LPIPS needs local "
                        "weights, rows needing them are skipped otherwise")  # fmt: skip
    p.add_argument("--lpips-weight", type=float, default=1.0, help="LPIPS weight in l1_lpips")
    p.add_argument("--bidpm-steps", type=positive_int, nargs="+", default=[1, 2])
    p.add_argument("--nfe", type=positive_int, nargs="+", default=[1, 2, 4, 8], help="RF/I-CFM/VP-CFM sampling NFEs")
    p.add_argument("--sigma", type=float, default=0.1, help="I-CFM sigma")
    p.add_argument("--vp-sigma", type=float, default=0.0, help="VP-CFM sigma")
    p.add_argument("--pairing", type=float, default=0.1, help="partial pairing ratio (besides 100 %%)")
    p.add_argument("--lambda-unpaired", type=float, default=0.3)
    p.add_argument("--mmd-pool", type=positive_int, default=2)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (CUDA only)")
    p.add_argument("--flash", dest="flash", action="store_true", default=True, help="flash attention (default)")
    p.add_argument("--no-flash-attention", dest="flash", action="store_false")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: steadier CPU timings)")
    p.add_argument("--in-process", action="store_true",
                   help="measure CPU peak memory in this process instead of a fresh one (smoke tests)")  # fmt: skip
    p.add_argument("--notes", type=Path, default=None, help="markdown appended below the table")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/synthesis_cpu.md"))
    args = p.parse_args(argv)
    if args.budgets is None:
        args.budgets = ["steps"] + (["time"] if args.budget_seconds is not None else [])
    if "time" in args.budgets and (args.budget_seconds is None or not args.budget_seconds > 0):
        p.error("the time budget needs --budget-seconds > 0")
    if not 0 < args.pairing < 1:
        p.error(f"--pairing must be in (0, 1) (100 %% is always run), got {args.pairing}")
    if len(set(args.seeds)) != len(args.seeds):
        p.error(f"--seeds must be distinct, got {args.seeds}")
    if not args.lpips_weight > 0:
        p.error(f"--lpips-weight must be > 0, got {args.lpips_weight}")
    if args.notes is not None and not args.notes.is_file():
        p.error(f"--notes file not found: {args.notes}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.notes_text = args.notes.read_text() if args.notes else ""
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    task = TASKS[args.task]
    args.lpips_reason = lpips_unavailable() if any("lpips" in m for m in args.paired_metrics) else None
    runs, args.skipped = plan(args, args.lpips_reason)
    if args.skipped:
        print(f"skipping {', '.join(args.skipped)}: LPIPS weights unavailable ({args.lpips_reason})", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.cohort or Path(tmp) / "cohort"
        root = generate_demo_cohort(root, subjects=args.subjects, dims=(3,), seed=0)
        slicing = (args.downsample, args.min_fraction)
        train_data = load_slices(root, task, ["train"], slicing[0], args.slices_per_subject, slicing[1])
        held_out = load_slices(root, task, ["val", "test"], slicing[0], args.eval_slices_per_subject, slicing[1])
    identity = {}
    for direction, source, target, modality in (
        ("a2b", held_out.a, held_out.b, task.modalities[1]),
        ("b2a", held_out.b, held_out.a, task.modalities[0]),
    ):
        for key, value in score(source, target, held_out.mask, modality).items():
            identity[f"{direction}_{key}"] = value
    kwargs = network_kwargs(args)
    kwargs.pop("use_flash_attention")
    info = {
        "size": "x".join(str(s) for s in train_data.a.shape[2:]),
        "train": len(train_data.a),
        "held_out": len(held_out.a),
        "train_subjects": len(torch.unique(train_data.subject)),
        "held_out_subjects": len(torch.unique(held_out.subject)),
        "network": kwargs["channels"],
        "params": sum(p.numel() for p in VelocityUNet(**kwargs).parameters()),
    }
    print(f"task {args.task}, data: {info}, {len(runs)} runs x {len(args.seeds)} seeds", flush=True)
    rows: list[dict] = []
    memory_cache: dict = {}
    start, last = time.perf_counter(), 0.0
    args.completed_seeds = []
    for seed in args.seeds:  # seeds outermost: the table written after each run always holds whole seeds first
        limit = None if args.time_limit_minutes is None else 60 * args.time_limit_minutes
        if limit is not None and args.completed_seeds and time.perf_counter() - start + last > limit:
            print(f"time limit: seed {seed} would end after {args.time_limit_minutes:g} minutes; stopping", flush=True)
            break
        seed_start = time.perf_counter()
        for run in runs:
            print(f"[seed {seed}] [{run.budget}] [{run.pairing:.0%}] {run.label}", flush=True)
            rows.extend(train(run, seed, train_data, held_out, task, args, device, memory_cache))
            write_table(args.out, rows, identity, args, device, info, task)
        args.completed_seeds.append(seed)
        last = time.perf_counter() - seed_start
        print(f"seed {seed} done in {last / 60:.1f} minutes", flush=True)
        write_table(args.out, rows, identity, args, device, info, task)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
