"""Smoke test of ``benchmarks/natural.py``: its ``main()`` at the tiniest settings writes the results table."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "natural.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("medi2i_bench_natural", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses need the module registered
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def _row(text: str, method: str) -> list[str]:
    rows = [line for line in text.splitlines() if line.startswith(f"| {method} |")]
    assert len(rows) == 1, f"expected one table row for {method}, got {rows}"
    return [cell.strip() for cell in rows[0].strip("|").split("|")]


def test_main_writes_table_with_method_baseline_and_official_figures(bench, tmp_path):
    out = tmp_path / "natural.md"
    argv = [
        "--methods",
        "cut",
        "nst",
        "--size",
        "32",
        "--width",
        "0.125",
        "--iterations",
        "1",
        "--warmup",
        "0",
        "--style-iterations",
        "2",
        "--threads",
        "1",
        "--in-process",
        "--out",
        str(out),
    ]
    assert bench.main(argv) == 0
    text = out.read_text()
    assert "Machine:" in text and "torch" in text and "Device: cpu" in text
    cut = _row(text, "cut")
    assert "FAILED" not in cut[1]
    s_per_it, cpu_s_per_it, baseline, ratio = float(cut[5]), float(cut[6]), float(cut[8]), float(cut[10])
    assert s_per_it > 0 and baseline > 0
    assert ratio == pytest.approx(cpu_s_per_it / baseline, rel=0.05, abs=0.06)  # cells are rounded to 2-3 digits
    assert cut[12] == "0.24" and cut[13] == "3.33 GB"  # CUT Table 3.6, beside ours
    assert cut[11] == "-"  # no GPU column on a CPU run
    nst = _row(text, "nst")
    assert "FAILED" not in nst[1]
    assert float(nst[2]) > 0 and float(nst[4]) == pytest.approx(float(nst[3]) * 500, rel=0.02)  # CPU s/it x 500
    assert "no GPU was available" in text
    assert "| cyclegan |" not in text  # only the requested methods


def test_failure_is_recorded_not_raised(bench, tmp_path):
    out = tmp_path / "natural.md"
    # 16 px is too small for RABIT's encoder (instance norm on 1x1 maps): the row says FAILED, the run goes on
    assert (
        bench.main(
            [
                "--methods",
                "rabit",
                "--size",
                "16",
                "--width",
                "0.125",
                "--num-classes",
                "4",
                "--iterations",
                "1",
                "--warmup",
                "0",
                "--no-baseline",
                "--in-process",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert "FAILED" in _row(out.read_text(), "rabit")[1]


@pytest.mark.parametrize(
    "argv",
    [
        ["--size", "40"],
        ["--width", "0"],
        ["--iterations", "0"],
        ["--methods", "sae", "--batch", "1"],
        ["--methods", "x"],
    ],
)
def test_bad_arguments_exit(bench, argv):
    with pytest.raises(SystemExit):
        bench.parse_args(argv)
