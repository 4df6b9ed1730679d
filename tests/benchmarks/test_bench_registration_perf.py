"""``benchmarks/registration_perf.py``: the table it writes, its argument checks, and (CUDA) no host syncs."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "registration_perf.py"


@pytest.fixture(scope="module")
def perf():
    spec = importlib.util.spec_from_file_location("medi2i_bench_registration_perf", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def _rows(text: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip("|").split("|")] for line in text.splitlines() if line.startswith("| ")][1:]


def test_smooth_pair_is_seeded_and_in_unit_range(perf):
    a = perf.smooth_pair(3, 32, torch.Generator().manual_seed(1))
    b = perf.smooth_pair(3, 32, torch.Generator().manual_seed(1))
    assert a.shape == (2, 1, 32, 32, 32) and torch.equal(a, b)
    assert float(a.min()) == 0.0 and float(a.max()) == 1.0
    assert not torch.equal(a[0], a[1])  # fixed and moving differ


def test_main_writes_baseline_and_rl_rows_with_consistent_ratios(perf, tmp_path):
    out = tmp_path / "perf.md"
    argv = ["--device", "cpu", "--threads", "1", "--size-2d", "32", "--dims", "2", "--networks", "vm_budget"]
    assert perf.main([*argv, "--repeats", "1", "--warmup", "1", "--out", str(out)]) == 0
    rows = _rows(out.read_text())
    assert [r[4] for r in rows] == ["VoxelMorph forward", "RL-I2IT 1 step", "RL-I2IT 20 steps"]
    vm_ms = float(rows[0][5])
    for row in rows[1:]:
        assert row[:4] == ["2D", "32", "vm_budget", "no"]
        assert float(row[6]) == pytest.approx(float(row[5]) / vm_ms, rel=0.05, abs=0.06)  # ratio rounded to 0.1
        assert row[7] == "n/a"  # host syncs are only counted on CUDA
    assert rows[2][9] == "n/a here" and rows[1][9] == ""  # the target applies to 20 steps, on CUDA only
    assert "registration_perf.py --device cpu" in out.read_text()


@pytest.mark.parametrize(
    ("argv", "message"),
    [(["--size-3d", "48"], "multiple of 32"), (["--device", "cpu", "--precisions", "bf16"], "needs a CUDA")],
)
def test_bad_arguments_are_refused_before_anything_runs(perf, argv, message, capsys):
    with pytest.raises(SystemExit):
        perf.parse_args(argv)
    assert message in capsys.readouterr().err


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dims", [2, 3])
def test_cuda_registration_makes_no_host_sync(perf, dims):
    from medi2i.registration.config import RLI2ITConfig
    from medi2i.registration.inference import register
    from medi2i.registration.sac import RLI2ITAgent

    device = torch.device("cuda")
    agent = RLI2ITAgent(RLI2ITConfig(spatial_dims=dims, network="vm_budget"), (32,) * dims).to(device)
    fixed, moving = perf.smooth_pair(dims, 32, torch.Generator().manual_seed(0)).to(device).chunk(2)
    run = lambda: register(agent, fixed, moving, steps=5, track_ssim=False, stop="none")  # noqa: E731
    run()  # warm-up: lazy initialisation may synchronise once
    assert perf.host_syncs(run, device) == 0
