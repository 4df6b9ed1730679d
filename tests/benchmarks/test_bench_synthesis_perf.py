"""Smoke test of ``benchmarks/synthesis_perf.py`` (issue 5, section 5): ``--quick`` on CPU writes every row.

Also checks the analytic attention-memory count against hand-computed values (a tiny network and the paper
network at the issue's 192 x 192) and that the autograd probe sees the layout the analytic count assumes.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "synthesis_perf.py"
#: two levels, attention only at the coarse one: at 16 x 16 that level is 8 x 8 (L = 64) with 16 / 8 = 2 heads
TINY = {
    "channels": [8, 16],
    "attention_levels": [False, True],
    "num_res_blocks": 1,
    "num_head_channels": 8,
    "norm_num_groups": 8,
}
ROWS = [
    "1a. volume translation",
    "1b. volume translation, N=1, network only (BiDPM.sample)",
    "1c. volume translation, N=1, network only, bf16 autocast",
    "2a. training iteration fp32",
    "2b. training iteration bf16",
    "3a. training iteration fp32, MONAI default attention",
    "3b. default / flash attention ratio",
    "3c. default attention: score matrices kept for backward",
    "4a. bf16 autocast vs fp32",
    "4b. torch.compile vs eager fp32",
]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("medi2i_bench_synthesis_perf", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def _table(text: str) -> dict[str, list[str]]:
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| measurement")]
    cells = [[c.strip() for c in line.strip().strip("|").split("|")] for line in rows]
    return {c[0]: c[1:] for c in cells}


def test_attention_bytes_tiny_config_by_hand(bench):
    # down: 1 block, middle: 1 block, up: num_res_blocks + 1 = 2 blocks, all at 8 x 8 with 2 heads
    assert bench.attention_blocks(TINY, 16) == [(2, 64)] * 4
    per_row = 4 * 2 * 64 * 64  # 32768 scores
    assert bench.attention_matrix_bytes(TINY, 16, rows=3, calls=2) == per_row * 3 * 2 * 4 == 786_432
    assert bench.attention_matrix_bytes(TINY, 16, rows=1, matrices_per_block=2, bytes_per_element=2) == per_row * 4
    with pytest.raises(ValueError, match="divisible"):
        bench.attention_blocks(TINY, 13)


def test_attention_bytes_paper_network_issue_case(bench):
    # PAPER_UNET at 192: down 2 + up 3 blocks at 48 x 48 (L = 2304), down 2 + middle 1 + up 3 at 24 x 24 (L = 576),
    # 256 / 32 = 8 heads everywhere; B = 16, N = 2: 2 calls on 2B = 32 rows, fp32
    per_row = 5 * 8 * 2304**2 + 6 * 8 * 576**2
    assert per_row == 228_261_888
    got = bench.attention_matrix_bytes(bench.PAPER_UNET, 192, rows=32, calls=2)
    assert got == per_row * 32 * 2 * 4
    assert math.isclose(got / 2**30, 54.42, abs_tol=0.01)


def test_probe_counts_one_kept_matrix_per_block(bench):
    probe = bench.probe_attention(TINY, 16)
    assert probe["blocks"] == [(2, 64)] * 4 and probe["matches_analytic"]
    # MONAI's SABlock keeps the softmax output (shared by softmax backward and the second einsum) and nothing else L x L
    assert probe["matrices_per_block"] == pytest.approx(1.0)


def test_quick_run_writes_every_row(bench, tmp_path):
    out = tmp_path / "perf.md"
    assert bench.main(["--quick", "--device", "cpu", "--threads", "1", "--in-process", "--out", str(out)]) == 0
    text = out.read_text()
    assert "Machine:" in text and "Device: cpu" in text and "PAPER_UNET" in text
    table = _table(text)
    for prefix in ROWS:
        assert sum(name.startswith(prefix) for name in table) == 1, prefix
    row = {prefix: next(cells for name, cells in table.items() if name.startswith(prefix)) for prefix in ROWS}
    for prefix in ROWS[:5]:  # GPU targets: not judged on CPU
        assert row[prefix][3] == "n/a on cpu", prefix
        assert row[prefix][2] != "-", prefix
    assert "extrapolated" in row[ROWS[0]][1] and "ms/slice" in row[ROWS[0]][1]
    assert "ms/it" in row[ROWS[3]][1] and "peak" in row[ROWS[3]][1]
    assert "time x" in row[ROWS[6]][1] and "peak memory x" in row[ROWS[6]][1]
    assert "54.4 GiB" in row[ROWS[7]][1] and "114" in row[ROWS[7]][2]
    value = float(row[ROWS[8]][1].split(" dB")[0])
    assert math.isfinite(value) and value > 20
    assert "not run" in row[ROWS[9]][1]
