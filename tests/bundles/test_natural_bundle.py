"""The ``bundles/natural`` MONAI bundle: metadata, every config parses, tiny runs of every method, translate/resume.

Every ``<method>.json`` pulls the shared keys of ``common.json`` with ``%bundles/natural/common.json#key`` macros,
which MONAI resolves relative to the working directory, so the tests run from the repository root (as the README
commands do). CLI-style overrides make each run tiny (32-64 px, widths 4-16, 2 iterations, a temporary
``bundle_root``); the stylisation configs get a random, width-reduced VGG and a few steps.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image

import medi2i.cli
from tests.conftest import write_nifti

REPO = Path(__file__).resolve().parents[2]
BUNDLE = REPO / "bundles" / "natural"
META = str(BUNDLE / "metadata.json")
LOGGING = str(BUNDLE / "logging.conf")
SCHEMA = str(BUNDLE.parent / "schemas" / "meta_schema.json")
MACRO = "%bundles/natural/common.json#"

TRAINABLE = ("cyclegan", "cut", "fastcut", "sincut", "spade", "sae", "rabit")
STYLISE = ("nst", "dtp")

_COMMON = {"device": "cpu", "save_every": 0, "log_every": 1, "image_every": 0, "max_iterations": 2}
_RESNET = {"network_def#ngf": 4, "network_def#ndf": 4, "network_def#n_blocks": 1, "network_def#n_layers_d": 1}
_CUT = {**_RESNET, "network_def#num_patches": 8, "network_def#mlp_channels": 8}
TINY: dict[str, dict[str, Any]] = {
    "cyclegan": {"crop_size": 32, "load_size": 36, **_RESNET},
    "cut": {"crop_size": 32, "load_size": 36, **_CUT},
    "fastcut": {"crop_size": 32, "load_size": 36, **_CUT},
    "sincut": {"crop_size": 32, "batch_size": 4, "crops_per_epoch": 4, **_CUT},
    "spade": {
        "crop_size": 32,
        "load_size": 36,
        "semantic_classes": 4,
        "network_def#nf": 4,
        "network_def#channel_mults": [4, 2, 1, 1],
        "network_def#hidden_channels": 8,
        "network_def#ndf": 4,
        "network_def#n_layers_d": 2,
    },
    "sae": {
        "crop_size": 32,
        "load_size": 36,
        "batch_size": 2,
        "epoch_length": 2,
        "max_epochs": 1,
        "network_def#encoder_channels": [8, 16, 16],
        "network_def#structure_channels": 4,
        "network_def#texture_channels": [16, 16],
        "network_def#texture_dim": 16,
        "network_def#generator_base_channels": [16],
        "network_def#generator_up_channels": [16, 8],
        "network_def#discriminator_channels": [8, 16, 16, 16],
        "network_def#patch_size": 16,
        "network_def#patch_channels": [8, 16, 16],
        "network_def#patch_hidden": [32, 32],
        "network_def#patch_min_scale": 0.25,
        "network_def#patch_max_scale": 0.5,
        "network_def#patch_num_crops": 2,
        "network_def#r1_every": 4,
    },
    "rabit": {
        "crop_size": 32,
        "load_size": 36,
        "semantic_classes": 4,
        "batch_size": 2,
        "network_def#ndf": 8,
        "network_def#corr_channels": 16,
        "network_def#ngf": 8,
        "network_def#n_up": 2,
        "network_def#max_mult": 2,
        "network_def#spade_hidden": 16,
        "network_def#ndf_d": 8,
        "network_def#n_layers_d": 2,
        "network_def#num_d": 1,
    },
    "nst": {"size": 32, "vgg_width": 0.125, "steps": 2, "stylizer#optimizer": "adam"},
    "dtp": {"size": 32, "vgg_width": 0.125, "steps": 2, "stylizer#num_patches": 16},
}


@pytest.fixture(autouse=True)
def _repo_root(monkeypatch) -> None:
    monkeypatch.chdir(REPO)  # the common.json macros are relative to the repository root
    monkeypatch.setenv("MEDI2I_WEIGHTS", str(REPO / "no-weights-here"))  # the no-weights path, deterministically


def run_bundle(method: str, root: Path, **overrides: Any):
    """Initialise, check and run ``<method>.json`` tiny under ``root``; returns ``(workflow, missing properties)``."""
    from monai.bundle import ConfigWorkflow

    trainable = method in TRAINABLE
    settings = {**(_COMMON if trainable else {"device": "cpu"}), **TINY[method], **overrides}
    wf = ConfigWorkflow(
        workflow_type="train" if trainable else None,
        config_file=str(BUNDLE / f"{method}.json"),
        meta_file=META,
        logging_file=LOGGING,
        bundle_root=str(root),
        **settings,
    )
    wf.initialize()
    missing = wf.check_properties() if trainable else []
    wf.run()
    wf.finalize()
    return wf, missing


def _macro_keys(config: Any) -> set[str]:
    if isinstance(config, dict):
        return set().union(*(_macro_keys(v) for v in config.values())) if config else set()
    if isinstance(config, list):
        return set().union(*(_macro_keys(v) for v in config)) if config else set()
    return {config[len(MACRO) :]} if isinstance(config, str) and config.startswith(MACRO) else set()


def test_metadata_verifies_offline() -> None:
    from monai.bundle import verify_metadata

    verify_metadata(meta_file=META, filepath=SCHEMA)  # raises on a schema violation


@pytest.mark.parametrize("method", TRAINABLE + STYLISE)
def test_config_parses_with_official_defaults(method: str) -> None:
    from monai.bundle import ConfigParser
    from monai.utils import optional_import

    raw = json.loads((BUNDLE / f"{method}.json").read_text())
    common = json.loads((BUNDLE / "common.json").read_text())
    assert _macro_keys(raw) <= set(common), "every macro names a key of common.json"
    parser = ConfigParser()
    parser.read_config(str(BUNDLE / f"{method}.json"))
    parser.resolve_macro_and_relative_ids()
    parser.parse()  # builds every config item (expressions are not evaluated)
    assert parser["bundle_root"] == "bundles/natural" and parser["method_name"] == method
    if method in STYLISE:
        assert parser["size"] == 256 and parser["content"] == "chelsea"
        assert parser["stylizer"]["method"] == "@method_name"
        assert parser.get_parsed_content("steps") == (1000 if method == "dtp" else None)
        return
    target = parser["network_def"]["_target_"]
    module, _, name = target.rpartition(".")
    assert optional_import(module, name=name)[1], target
    assert parser.get_parsed_content("data_source") == "photos"
    assert parser.get_parsed_content("model_file") == f"bundles/natural/models/{method}/model.pt"
    epochs = {"cyclegan": 200, "cut": 400, "fastcut": 200, "sincut": 16, "spade": 200, "sae": 20, "rabit": 200}
    assert parser.get_parsed_content("max_epochs") == epochs[method]
    assert parser["crop_size"] == (64 if method == "sincut" else 256)
    for key in ("train#trainer", "train#dataset", "train#inferer", "train#trainer#max_epochs", "dataset_dir"):
        assert key in parser, key  # the MONAI train workflow properties


def _png(path: Path, shape: tuple[int, ...], high: int = 256, seed: int = 0) -> Path:
    array = np.random.default_rng(seed).integers(0, high, shape, dtype=np.uint8)
    Image.fromarray(array).save(path)
    return path


def _translate(argv: list[str]) -> None:
    assert medi2i.cli.main(["translate", *argv, "--device", "cpu"]) == 0


@pytest.mark.parametrize("method", TRAINABLE)
def test_tiny_training_writes_a_model_that_translate_applies(method: str, tmp_path: Path) -> None:
    from medi2i.natural.model_files import load_model

    wf, missing = run_bundle(method, tmp_path)
    assert missing == []  # MONAI train workflow properties all present
    trainer = wf.parser.get_parsed_content("train#trainer")
    assert trainer.iteration == 2
    folder = tmp_path / "models" / method
    assert (folder / "checkpoint_last.pt").is_file()
    model = load_model(folder / "model.pt", device="cpu")
    assert model.name == method and not model.training
    record = torch.load(folder / "model.pt", map_location="cpu", weights_only=True)["data"]
    out = tmp_path / "out.png"
    if method in ("spade", "rabit"):
        assert record["A"] == {"kind": "label", "size": [32, 32]} and record["B"]["kind"] == "photo"
        argv = ["--input", str(_png(tmp_path / "label.png", (20, 24), high=4))]
        if method == "rabit":
            argv += ["--exemplar", str(_png(tmp_path / "ex.png", (20, 24, 3), seed=1))]
            argv += ["--exemplar-label", str(_png(tmp_path / "exl.png", (20, 24), high=4, seed=2))]
    else:
        assert record["A"]["kind"] == record["B"]["kind"] == "photo"
        argv = ["--input", str(_png(tmp_path / "in.png", (20, 24, 3)))]
    _translate(["--model", str(folder / "model.pt"), *argv, "--output", str(out)])
    assert np.asarray(Image.open(out)).shape == (20, 24, 3)


def _tiny_manifest(root: Path) -> Path:
    """Two subjects of small T1w/T2w volumes (16 x 20 x 4 voxels, 2 mm, a bright disc on a dark background)."""
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    yy, xx = np.mgrid[:16, :20]
    rows = ["subject_id,split,source,target"]
    for k in range(2):
        disc = ((yy - 8) ** 2 + (xx - 10) ** 2 < 36 + 8 * k).astype(np.float32)
        base = np.repeat(disc[:, :, None], 4, axis=2)
        write_nifti(root / f"s{k}_t1w.nii.gz", 100 + 800 * base, affine)
        write_nifti(root / f"s{k}_t2w.nii.gz", 900 - 700 * base, affine)
        rows.append(f"s{k},train,s{k}_t1w.nii.gz,s{k}_t2w.nii.gz")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    return root / "manifest.csv"


def test_cyclegan_on_medical_slices_resumes_and_translates_nifti(tmp_path: Path) -> None:
    manifest = _tiny_manifest(tmp_path)
    medical = {"data_source": "manifest", "manifest": str(manifest), "slice_size": [16, 20], "batch_size": 2}
    wf, missing = run_bundle("cyclegan", tmp_path / "run", **medical)
    assert missing == []
    model = tmp_path / "run" / "models" / "cyclegan" / "model.pt"
    record = torch.load(model, map_location="cpu", weights_only=True)["data"]
    assert record == {"A": {"kind": "mr", "channels": 1}, "B": {"kind": "mr", "channels": 1}}
    # --resume latest continues the stopped run from its checkpoint (2 -> 3 iterations), not from scratch
    wf, _ = run_bundle("cyclegan", tmp_path / "run", resume="latest", max_iterations=3, **medical)
    assert wf.parser.get_parsed_content("train#trainer").iteration == 3
    out = tmp_path / "t2_synth.nii.gz"
    _translate(["--model", str(model), "--input", str(tmp_path / "s0_t1w.nii.gz"), "--output", str(out)])
    ref, res = nib.load(tmp_path / "s0_t1w.nii.gz"), nib.load(out)
    assert res.shape == ref.shape and np.allclose(res.affine, ref.affine)
    assert np.isfinite(np.asarray(res.dataobj)).all()


@pytest.mark.parametrize("method", STYLISE)
def test_stylise_config_writes_image_and_report(method: str, tmp_path: Path) -> None:
    run_bundle(method, tmp_path)
    out = tmp_path / "eval" / method
    image = np.asarray(Image.open(out / "chelsea_ihc_random-vgg.png"))
    assert image.shape == (32, 32, 3)
    report = json.loads((out / "chelsea_ihc_random-vgg.json").read_text())
    assert report["method"] == method and report["vgg"] == "random" and "ssim_to_content" in report


def test_stylise_config_without_fallback_fails_on_missing_weights(tmp_path: Path) -> None:
    from medi2i.errors import Medi2iInputError

    with pytest.raises((Medi2iInputError, RuntimeError), match="(?i)weights"):
        run_bundle("nst", tmp_path, random_vgg_if_missing=False)
    assert not (tmp_path / "eval").exists()  # nothing written


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    from medi2i.data.demo import ensure_demo_cohort

    return ensure_demo_cohort(tmp_path_factory.mktemp("demo"), subjects=4, dims=(3,), progress=False)


DEMO_VARIANTS = [("cyclegan", "demo_mr_ct"), ("sae", "demo_t1w_t2w"), ("spade", "demo_t1w"), ("rabit", "demo_t2w")]


@pytest.mark.slow
@pytest.mark.parametrize(("method", "source"), DEMO_VARIANTS)
def test_demo_cohort_variants(method: str, source: str, demo: Path, tmp_path: Path) -> None:
    from medi2i.natural.model_files import load_model

    root = tmp_path / method
    run_bundle(method, root, data_source=source, dataset_dir=str(demo), slice_size=[32, 32], slice_fit="resize")
    model = root / "models" / method / "model.pt"
    record = torch.load(model, map_location="cpu", weights_only=True)["data"]
    assert record["B"]["kind"] == ("ct" if source.endswith("ct") else "mr") and record["B"]["channels"] == 1
    if method != "cyclegan":  # fixed-size generators were trained on whole slices resized to slice_size
        assert record["A"]["size"] == [32, 32]
    assert load_model(model, device="cpu").name == method
