"""Smoke test of ``benchmarks/synthesis.py``: ``main()`` at the tiniest settings writes the results table.

Checks the parts of the benchmark protocol (issue 5, section 5) the table must carry: both budgets (equal steps
and equal time, with the steps reached), several seeds aggregated as mean ± std, the MR -> CT task scored in HU
with the SynthRAD2023 definitions, VP-CFM rows, and LPIPS rows skipped with the reason when the weights are
missing (never run with random LPIPS weights).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "synthesis.py"
TINY = [
    "--subjects", "7", "--downsample", "4", "--slices-per-subject", "2", "--eval-slices-per-subject", "1",
    "--channels", "16", "16", "--bidpm-steps", "1", "--steps", "1", "--in-process",
]  # fmt: skip


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("medi2i_bench_synthesis", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses need the module registered
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    return tmp_path_factory.mktemp("synthesis_cohort")  # generated once by the first main() call, then reused


def _rows(text: str, method: str) -> list[list[str]]:
    lines = [line for line in text.splitlines() if line.startswith("| ") and f"| {method} |" in line]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]


def test_mr_ct_two_budgets_two_seeds_hu_metrics_and_skipped_lpips(bench, cohort, tmp_path, monkeypatch):
    monkeypatch.setenv("MEDI2I_WEIGHTS", str(tmp_path / "no_weights"))  # LPIPS weights cannot be found
    out = tmp_path / "synthesis.md"
    argv = [*TINY, "--task", "mr_ct", "--cohort", str(cohort), "--seeds", "0", "1", "--budget-seconds", "0.05",
            "--budget-clock", "process", "--methods", "bidpm", "rf", "vpcfm", "regression", "--nfe", "1",
            "--out", str(out)]  # fmt: skip
    assert bench.main(argv) == 0
    text = out.read_text()
    assert "Machine:" in text and "torch" in text and "Device: cpu" in text
    assert "A→B MAE (HU)" in text and "SynthRAD2023" in text
    header = _rows(text, "method")[0]
    col = {name: i for i, name in enumerate(header)}
    identity = _rows(text, "identity (output = input)")[0]
    assert float(identity[col["A→B MAE (HU)"]]) > 50  # MR intensities read as HU: hundreds of HU off, in HU units
    assert float(identity[col["B→A MAE"]]) < 2  # the MR direction stays on [-1, 1]
    # LPIPS rows are skipped and the reason names the missing weights file; none of them is in the table
    assert "Rows not run:" in text and "L1+LPIPS" in text and "vgg16" in text
    assert not any("LPIPS" in row[col["method"]] for row in _rows(text, "Bi-DPM N=1 (L1+LPIPS)"))
    for method, nfes in (("Bi-DPM N=1 (L1)", ["1"]), ("RF", ["1"]), ("VP-CFM sigma=0", ["1"])):
        rows = _rows(text, method)
        assert sorted(r[col["budget"]] for r in rows) == sorted(["1 steps", "0.05 s"] * len(nfes)), method
        for row in rows:
            assert row[col["n"]] == "2"  # two seeds per cell
            assert "±" in row[col["A→B SSIM"]] and "±" in row[col["A→B MAE (HU)"]]
            steps = row[col["steps"]]
            assert steps == "1" if row[col["budget"]] == "1 steps" else float(steps.split(" ± ")[0]) >= 1
            assert float(row[col["s/it"]]) > 0 and float(row[col["ms/slice"]]) > 0
    assert _rows(text, "RF, random coupling") and _rows(text, "L1 regression, pairs only")  # 10 % pairing rows


def test_t1w_t2w_single_seed_and_method_filter(bench, cohort, tmp_path):
    out = tmp_path / "synthesis.md"
    argv = [*TINY, "--task", "t1w_t2w", "--cohort", str(cohort), "--methods", "rf", "--paired-metrics", "l1",
            "--nfe", "1", "2", "--out", str(out)]  # fmt: skip
    assert bench.main(argv) == 0
    text = out.read_text()
    assert "A→B MAE (HU)" not in text and "A = T1w, B = T2w" in text
    assert "| 1 steps | 100% | RF | 2 | 1 | 1 |" in text
    assert "±" not in text.split("| identity")[1]  # one seed: no spread
    assert "Bi-DPM" not in text.split("| identity")[1] and "Rows not run" not in text


def test_ct_scores_are_hu_after_inverting_the_window(bench):
    target = torch.full((1, 1, 16, 16), -0.5)
    target[..., 4:12, 4:12] = 0.2
    mask = torch.zeros(1, 1, 16, 16, dtype=torch.bool)
    mask[..., 2:14, 2:14] = True
    exact = bench.score(target, target, mask, "ct")
    assert exact["mae"] == 0.0 and exact["ssim"] == pytest.approx(1.0)
    shifted = bench.score(target + 0.1, target, mask, "ct")
    assert shifted["mae"] == pytest.approx(0.1 * 4024 / 2, rel=1e-4)  # 0.1 on [-1, 1] = 201.2 HU
    mr = bench.score(target + 0.1, target, mask, "mr")
    assert mr["mae"] == pytest.approx(0.1, rel=1e-4)


def test_aggregate_mean_and_sample_std(bench):
    base = {"budget": "steps", "pairing": 1.0, "method": "RF", "nfe": 1}
    rows = [{**base, "seed": 0, "a2b_ssim": 0.5}, {**base, "seed": 1, "a2b_ssim": 0.7}]
    (agg,) = bench.aggregate(rows)
    assert agg["n"] == 2
    assert agg["a2b_ssim"][0] == pytest.approx(0.6) and agg["a2b_ssim"][1] == pytest.approx(0.1414214, rel=1e-6)
    assert bench._cell(agg["a2b_ssim"], 3) == "0.600 ± 0.141"
    (single,) = bench.aggregate(rows[:1])
    assert bench._cell(single["a2b_ssim"], 3) == "0.500"


@pytest.mark.parametrize(
    "argv",
    [
        ["--budgets", "time"],  # no --budget-seconds
        ["--budget-seconds", "0"],
        ["--pairing", "1"],
        ["--seeds", "0", "0"],
        ["--task", "ct_mr"],
        ["--methods", "cyclegan"],
        ["--steps", "0"],
    ],
)
def test_bad_arguments_exit(bench, argv):
    with pytest.raises(SystemExit):
        bench.parse_args(argv)
