"""The ``bundles/bidpm`` MONAI bundle, MONAI-zoo test pattern: properties, metadata, train -> infer -> evaluate.

The bundle builds the real method (``medi2i.synthesis.build_method``); CLI-style overrides make it tiny
(16x16 slices, 8-channel UNet, 4 iterations) and point it at a 4-subject demo cohort in a temporary folder.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "bidpm"
META = str(BUNDLE / "metadata.json")
LOGGING = str(BUNDLE / "logging.conf")
SCHEMA = str(BUNDLE.parent / "schemas" / "meta_schema.json")


def _tiny(root: Path, demo: Path) -> dict:
    return {
        "bundle_root": str(root),
        "dataset_dir": str(demo),
        "max_epochs": 2,
        "iterations_per_epoch": 2,
        "val_interval": 2,
        "val_slices_per_subject": 2,
        "batch_size": 2,
        "model_size": [16, 16],
        "network_def::channels": [8, 8],
        "network_def::attention_levels": [False, False],
        "network_def::num_head_channels": 8,
        "demo_cases": 1,
    }


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    from medi2i.data.demo import ensure_demo_cohort

    return ensure_demo_cohort(tmp_path_factory.mktemp("demo"), subjects=4, dims=(3,))


@pytest.fixture(scope="module")
def trained(tmp_path_factory, demo):
    from monai.bundle import ConfigWorkflow

    root = tmp_path_factory.mktemp("bidpm")
    wf = ConfigWorkflow(
        workflow_type="train",
        config_file=[str(BUNDLE / "train.json"), str(BUNDLE / "demo_cpu.json")],
        meta_file=META,
        logging_file=LOGGING,
        **_tiny(root, demo),
    )
    wf.initialize()
    missing = wf.check_properties()
    wf.run()
    trainer = wf.parser.get_parsed_content("train::trainer")
    wf.finalize()
    return root, trainer, missing


def test_metadata_verifies_offline() -> None:
    from monai.bundle import verify_metadata

    verify_metadata(meta_file=META, filepath=SCHEMA)  # raises on a schema violation


def test_train_demo_run_end_to_end(trained, demo, capsys) -> None:
    root, trainer, missing = trained
    assert missing == []
    assert trainer.state.iteration == 4
    assert math.isfinite(trainer.state.output["loss"])
    for key in ("val_a2b_ssim", "val_b2a_ssim", "val_a2b_psnr", "val_b2a_mae", "val_score"):
        assert math.isfinite(trainer.state.metrics[key])
    for name in ("model.pt", "checkpoint_last.pt", "checkpoint_final.pt", "checkpoint_best.pt"):
        assert (root / "models" / name).is_file()
    assert any((root / "runs").glob("events.out.tfevents.*"))
    # the held-out volume was translated on its own grid and scored
    test_row = pd.read_csv(demo / "synthesis_mr_ct_3d.csv").query("split == 'test'").iloc[0]
    pred = nib.load(root / "eval" / "predictions" / f"{test_row.subject_id}.nii.gz")
    source = nib.load(demo / test_row.source)
    assert pred.shape == source.shape and np.allclose(pred.affine, source.affine, atol=1e-5)
    values = np.asarray(pred.dataobj)
    assert values.min() >= -1024.0 and values.max() <= 3000.0
    cases = pd.read_csv(root / "eval" / "synthesis_cases.csv")
    assert list(cases.case_id) == [test_row.subject_id] and np.isfinite(cases.mae).all()


def test_inference_and_evaluate_configs(trained, demo) -> None:
    from monai.bundle import ConfigWorkflow

    root, _, _ = trained
    override = {"bundle_root": str(root), "dataset_dir": str(demo), "max_cases": 1, "direction": "b2a"}
    wf = ConfigWorkflow(
        workflow_type="infer",
        config_file=[str(BUNDLE / "inference.json"), str(BUNDLE / "evaluate.json")],
        meta_file=META,
        logging_file=LOGGING,
        output_dir=str(root / "infer"),
        eval_dir=str(root / "infer_eval"),
        preset="mr",
        **override,
    )
    wf.initialize()
    assert wf.check_properties() == []
    wf.run()
    test_row = pd.read_csv(demo / "synthesis_mr_ct_3d.csv").query("split == 'test'").iloc[0]
    pred = nib.load(root / "infer" / f"{test_row.subject_id}.nii.gz")
    assert np.allclose(pred.affine, nib.load(demo / test_row.target).affine, atol=1e-5)
    summary = pd.read_csv(root / "infer_eval" / "synthesis_summary.csv")
    assert len(summary) > 0


def test_paper_config_refuses_to_switch_metric_without_lpips_weights(tmp_path, demo, monkeypatch) -> None:
    from monai.bundle import ConfigWorkflow

    from medi2i.errors import Medi2iInputError

    monkeypatch.setenv("MEDI2I_WEIGHTS", str(tmp_path / "no_weights"))
    wf = ConfigWorkflow(
        workflow_type="train",
        config_file=str(BUNDLE / "train.json"),
        meta_file=META,
        logging_file=LOGGING,
        bundle_root=str(tmp_path),
        dataset_dir=str(demo),
        **{"network_def::channels": [8, 8], "network_def::attention_levels": [False, False],
           "network_def::num_head_channels": 8, "network_def::norm_num_groups": 8},
    )  # fmt: skip
    wf.initialize()
    with pytest.raises(Exception) as info:
        wf.parser.get_parsed_content("method")
    chain, err = [], info.value
    while err is not None:
        chain.append(err)
        err = err.__cause__ or err.__context__
    assert any(isinstance(e, Medi2iInputError) and "weights" in str(e) for e in chain)


@pytest.mark.slow
def test_multi_gpu_overlay_runs_on_cpu_with_gloo(tmp_path, demo) -> None:
    configs = [str(BUNDLE / f) for f in ("train.json", "demo_cpu.json", "multi_gpu_train.json")]
    args = [f"--{key} {value!r}" if isinstance(value, str) else f"--{key} '{value}'" for key, value in
            {**_tiny(tmp_path, demo), "iterations_per_epoch": 4}.items()]  # fmt: skip
    cmd = (
        f"{sys.executable} -m torch.distributed.run --standalone --nproc_per_node=2 -m monai.bundle run "
        f'--config_file "{configs}" --meta_file {META} --logging_file {LOGGING} --dist_backend gloo ' + " ".join(args)
    )
    result = subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=900, env=dict(os.environ))
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "models" / "model.pt").is_file() and (tmp_path / "models" / "checkpoint_final.pt").is_file()


@pytest.mark.slow
def test_full_cpu_demo_command(tmp_path) -> None:
    """The README's main command, unchanged except for the output and demo folders (< 10 min on 2 cores)."""
    configs = str([str(BUNDLE / "train.json"), str(BUNDLE / "demo_cpu.json")])
    env = {**os.environ, "MEDI2I_DEMO_DIR": str(tmp_path / "demo")}
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", configs, "--bundle_root", str(tmp_path)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "outputs -- eval" in result.stdout
    cases = pd.read_csv(tmp_path / "eval" / "synthesis_cases.csv")
    assert np.isfinite(cases.mae).all()


@pytest.mark.parametrize("preset", sorted(p.name for p in (BUNDLE / "presets").glob("*.json")))
def test_presets_compose_with_train_and_inference(preset: str) -> None:
    from monai.bundle import ConfigParser

    bases = ("train.json",) if preset.startswith("partial_pairing") else ("train.json", "inference.json")
    for base in bases:
        parser = ConfigParser()
        parser.read_config([str(BUNDLE / base), str(BUNDLE / "presets" / preset)])
        parser.parse()
        config = parser.get()
        if "manifest" in ConfigParser.load_config_file(BUNDLE / "presets" / preset):
            assert parser.get_parsed_content("manifest").startswith("manifests/")
            assert parser.get_parsed_content("preset") in ("ct", "mr")
        if base == "train.json":
            assert {config["source_modality"], config["target_modality"]} <= {"mr", "ct"}
            assert 0 < config["pairing_ratio"] <= 1


@pytest.mark.parametrize(
    "method_config",
    [{"method": "rectified_flow", "num_steps": 4}, {"method": "icfm", "num_steps": 2}, {"method": "regression"}],
)
def test_baselines_build_through_the_bundle(method_config: dict) -> None:
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config([str(BUNDLE / "train.json"), str(BUNDLE / "demo_cpu.json")])
    parser.update({"method_config": method_config, "device": "$torch.device('cpu')"})
    method = parser.get_parsed_content("method")
    assert method.config()["method"] == method_config["method"]
    assert method.config()["network"]["channels"] == [16, 32, 32]


@pytest.mark.slow
def test_bundle_resume_matches_uninterrupted_run(tmp_path, demo) -> None:
    import torch
    from monai.bundle import ConfigWorkflow

    def train(root: Path, epochs: int, resume: str = ""):
        override = {**_tiny(root, demo), "max_epochs": epochs, "run": ["$@train::trainer.run()"], "resume_from": resume}
        wf = ConfigWorkflow(
            workflow_type="train",
            config_file=[str(BUNDLE / "train.json"), str(BUNDLE / "demo_cpu.json")],
            meta_file=META,
            logging_file=LOGGING,
            **override,
        )
        wf.initialize()
        wf.run()
        return wf.parser.get_parsed_content("network"), wf.parser.get_parsed_content("ema")

    net_full, ema_full = train(tmp_path / "full", 2)
    train(tmp_path / "part", 1)
    net_res, ema_res = train(tmp_path / "resumed", 2, str(tmp_path / "part" / "models" / "checkpoint_last.pt"))
    for a, b in zip(net_full.state_dict().values(), net_res.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    for a, b in zip(ema_full.module.state_dict().values(), ema_res.module.state_dict().values(), strict=True):
        assert torch.equal(a, b)
