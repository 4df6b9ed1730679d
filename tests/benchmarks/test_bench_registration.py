"""Smoke test of ``benchmarks/registration.py``: its ``main()`` at the tiniest settings writes the results table."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "registration.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("medi2i_bench_registration", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def _cells(text: str, method: str) -> list[str]:
    rows = [line for line in text.splitlines() if line.startswith(f"| {method} |")]
    assert len(rows) == 1, f"expected one table row for {method}, got {rows}"
    return [cell.strip() for cell in rows[0].strip("|").split("|")]


def test_main_writes_every_row_with_ratio_and_memory(bench, tmp_path):
    from medi2i.data.demo import ensure_demo_cohort

    demo = ensure_demo_cohort(tmp_path / "demo", dims=(2,), progress=False)
    out = tmp_path / "registration.md"
    argv = ["--dims", "2", "--episodes", "2", "--vm-iterations", "2", "--train-steps", "2", "--threads", "1"]
    argv += ["--demo-dir", str(demo), "--rl-options", '{"kmeans_clusters": 3, "ncc_windows": [9]}', "--out", str(out)]
    assert bench.main([*argv, "--eval-all-pairs"]) == 0
    text = out.read_text()
    assert "6 training / 12 evaluation pairs" in text  # the 4 val + test subjects, every ordered pair
    assert "evaluation pairs all ordered pairs of the val + test subjects" in text
    assert "Command: `python benchmarks/registration.py --dims 2" in text and '"ncc_windows": [9]' in text
    identity = _cells(text, "identity")
    assert float(identity[1]) > 0.3 and identity[7] == "-"  # Dice of the unregistered pairs, no ratio
    vm = _cells(text, "VoxelMorph")
    assert vm[7] == "1.0" and float(vm[6]) > 0
    for steps in (1, 10, 20):
        row = _cells(text, f"RL-I2IT t={steps}")
        assert 0.0 <= float(row[1]) <= 1.0 and float(row[7]) > 0 and row[8].lstrip("-").isdigit()
    curve = next(line for line in text.splitlines() if line.startswith("RL-I2IT Dice over steps"))
    assert len(curve.split(":")[1].split(",")) == 21  # t = 0..20
    assert float(curve.split(":")[1].split(",")[0]) == pytest.approx(float(identity[1]), abs=1e-3)


def test_rl_options_must_be_a_json_object(bench):
    assert bench.rl_options('{"ncc_windows": [9, 5]}') == {"ncc_windows": (9, 5)}
    assert bench.rl_options(None) == {}
    with pytest.raises(SystemExit, match="not valid JSON"):
        bench.rl_options("{kmeans")
    with pytest.raises(SystemExit, match="JSON object"):
        bench.rl_options("[1, 2]")


def test_downsample_pairs_pools_images_subsamples_labels_and_pads_to_the_network_multiple(bench):
    from medi2i.registration.trainer import PairSet

    g = torch.Generator().manual_seed(0)
    image = torch.rand(2, 1, 96, 128, 96, generator=g)
    label = torch.randint(0, 6, (2, 1, 96, 128, 96), generator=g)
    pairs = PairSet(image, image.flip(2), label, label.flip(2), ["a", "b"])
    assert bench.downsample_pairs(pairs, 1) is pairs
    small = bench.downsample_pairs(pairs, 2)
    assert small.fixed.shape == small.moving_label.shape == (2, 1, 64, 64, 64)  # 48x64x48 padded to 32s
    assert small.ids == ["a", "b"] and small.fixed_label.dtype == label.dtype
    inner = (slice(None), slice(None), slice(8, 56), slice(None), slice(8, 56))  # the 48x64x48 data block
    block = image[0, 0, :2, :2, :2].mean()
    assert float(small.fixed[inner][0, 0, 0, 0, 0]) == pytest.approx(float(block))
    assert torch.equal(small.fixed_label[inner], label[:, :, ::2, ::2, ::2])  # labels: no new values
    assert float(small.fixed.sum() - small.fixed[inner].sum()) == 0.0  # zero padding outside


def test_methods_pick_the_rows_and_ants_without_antspyx_stops_before_any_work(bench, tmp_path):
    from medi2i.data.demo import ensure_demo_cohort
    from medi2i.registration.ants_syn import ants_unavailable

    demo = ensure_demo_cohort(tmp_path / "demo", dims=(2,), progress=False)
    out = tmp_path / "registration.md"
    argv = ["--dims", "2", "--vm-iterations", "2", "--threads", "1", "--demo-dir", str(demo), "--out", str(out)]
    assert bench.main([*argv, "--methods", "identity", "voxelmorph"]) == 0
    text = out.read_text()
    assert _cells(text, "VoxelMorph")[7] == "1.0" and "| RL-I2IT" not in text and "| ANTs" not in text
    if ants_unavailable() is not None:
        with pytest.raises(SystemExit, match="pip install antspyx"):
            bench.main([*argv, "--methods", "ants"])
    else:  # antspyx present: the row is there, with its ratio to the VoxelMorph forward
        assert bench.main([*argv, "--methods", "voxelmorph", "ants", "--ants-transform", "SyNOnly"]) == 0
        row = _cells(out.read_text(), "ANTs SyNOnly")
        assert 0.0 <= float(row[1]) <= 1.0 and float(row[7]) > 0
