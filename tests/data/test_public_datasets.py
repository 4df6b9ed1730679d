"""Public-dataset scanners, the seeded split, the manifest CLI and the templates in data_manifests/.

Every dataset is faked as a tree of empty files with the real naming under ``tmp_path``; no
image data is created or needed.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import logging
from pathlib import Path

import pytest

from medi2i.cli import manifest as manifest_cli
from medi2i.data.manifest import PATH_COLUMNS, REQUIRED_COLUMNS, ManifestKind, detect_kind, read_manifest
from medi2i.data.public_datasets import (
    DATASETS,
    L2R_OASIS_VAL_PAIRS,
    PublicDataset,
    build_manifest,
    get_dataset,
    scan_dataset,
    seeded_split,
)
from medi2i.errors import Medi2iInputError

TEMPLATES = Path(__file__).resolve().parents[2] / "data_manifests"
SYNTHESIS_HEADER = ["subject_id", "split", "source", "target", "mask"]
REGISTRATION_HEADER = "pair_id,split,fixed,moving,fixed_label,moving_label,fixed_mask,moving_mask".split(",")


def touch(root: Path, *relative: str) -> None:
    for rel in relative:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


def split_of(rows: list[dict[str, str]], key: str) -> dict[str, str]:
    return {row[key]: row["split"] for row in rows}


# --------------------------------------------------------------------------- fake trees


def make_synthrad(root: Path, anatomy: str, ids: list[str], files=("mr", "ct", "mask")) -> Path:
    for case in ids:
        touch(root, *(f"Task1/{anatomy}/{case}/{f}.nii.gz" for f in files))
    return root


def synthrad_ids(letter: str, per_centre: int) -> list[str]:
    return [f"1{letter}{centre}{i:03d}" for centre in "ABC" for i in range(1, per_centre + 1)]


def make_brats(root: Path, numbers: list[int], modalities=("t1", "t2", "t1ce", "flair", "seg")) -> Path:
    for n in numbers:
        case = f"BraTS2021_{n:05d}"
        touch(root, *(f"{case}/{case}_{m}.nii.gz" for m in modalities))
    return root


IXI_STEMS = ["IXI002-Guys-0828", "IXI012-HH-1211", "IXI013-HH-1212", "IXI014-HH-1236", "IXI016-Guys-0697"]
IXI_STEMS += [f"IXI{300 + i:03d}-IOP-{900 + i:04d}" for i in range(5)]
IXI_STEMS += [f"IXI{400 + i:03d}-HH-{1300 + i}" for i in range(3)]
IXI_STEMS += [f"IXI{500 + i:03d}-Guys-{1000 + i}" for i in range(3)]


def make_ixi(root: Path, stems: list[str], t2_dir: str = "IXI-T2-coreg") -> Path:
    for stem in stems:
        touch(root, f"IXI-T1/{stem}-T1.nii.gz", f"{t2_dir}/{stem}-T2.nii.gz")
    return root


def make_lpba(root: Path, subjects=range(1, 41), suffix: str = ".nii.gz") -> Path:
    for i in subjects:
        s = f"S{i:02d}"
        for what in ("skullstripped", "structure.label"):
            touch(root, f"delineation_space/{s}/{s}.delineation.{what}{suffix}")
            if suffix == ".hdr":  # Analyze pairs: the header is what the manifest lists
                touch(root, f"delineation_space/{s}/{s}.delineation.{what}.img")
    return root


def make_oasis(root: Path, subjects=range(1, 415), folders=("imagesTr", "labelsTr", "masksTr")) -> Path:
    for i in subjects:
        touch(root, *(f"{folder}/OASIS_{i:04d}_0000.nii.gz" for folder in folders))
    return root


# --------------------------------------------------------------------------- seeded split


def test_seeded_split_recomputes_from_the_documented_rule():
    ids = [f"s{i}" for i in range(10)]
    split = seeded_split(ids, seed=0)
    # golden values: the rule must not drift between releases, or old manifests stop being reproducible
    assert {k: v for k, v in split.items() if v != "train"} == {"s9": "val", "s2": "test"}
    ranked = sorted(ids, key=lambda i: hashlib.sha256(f"0:{i}".encode()).hexdigest())
    assert [split[i] for i in ranked] == ["train"] * 8 + ["val", "test"]
    assert seeded_split(ids, seed=1) != split
    assert seeded_split(list(reversed(ids)), seed=0) == split


@pytest.mark.parametrize(
    ("n", "counts"),
    [(1, (1, 0, 0)), (2, (2, 0, 0)), (3, (1, 1, 1)), (10, (8, 1, 1)), (25, (19, 3, 3)), (180, (144, 18, 18))],
)
def test_seeded_split_counts(n, counts):
    values = list(seeded_split([f"id{i}" for i in range(n)], seed=3).values())
    assert tuple(values.count(s) for s in ("train", "val", "test")) == counts


def test_seeded_split_per_group_and_custom_ratios():
    groups = {f"{site}{i}": site for site in "ABC" for i in range(10)}
    split = seeded_split(groups, seed=0, groups=groups)
    for site in "ABC":
        values = [split[k] for k in groups if groups[k] == site]
        assert (values.count("train"), values.count("val"), values.count("test")) == (8, 1, 1)
    values = list(seeded_split([f"x{i}" for i in range(20)], ratios=(0.5, 0.25, 0.25)).values())
    assert (values.count("train"), values.count("val"), values.count("test")) == (10, 5, 5)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"ratios": (0.8, 0.1)}, "ratios"),
        ({"ratios": (0.8, 0.3, 0.1)}, "ratios"),
        ({"ratios": (1.1, -0.1, 0.0)}, "ratios"),
        ({"groups": {"a": "g"}}, "has no group"),
    ],
)
def test_seeded_split_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        seeded_split(["a", "b"], **kwargs)
    with pytest.raises(ValueError, match="unique"):
        seeded_split(["a", "a"])


# --------------------------------------------------------------------------- SynthRAD2023


@pytest.mark.parametrize(("anatomy", "letter"), [("brain", "B"), ("pelvis", "P")])
def test_synthrad_rows_sites_and_split(tmp_path, anatomy, letter):
    root = make_synthrad(tmp_path / "data", anatomy, synthrad_ids(letter, 10))
    other = "pelvis" if anatomy == "brain" else "brain"
    make_synthrad(root, other, [f"1{other[0].upper()}A001"])  # the other anatomy must not leak in
    touch(root, f"Task1/{anatomy}/overview/1_{anatomy}_train.xlsx")  # spreadsheets are ignored
    out = build_manifest(f"synthrad2023_task1_{anatomy}", root, tmp_path / "m.csv", seed=0)
    header, rows = read_csv(out)
    assert header == [*SYNTHESIS_HEADER, "site", "anatomy"]
    assert [r["subject_id"] for r in rows] == synthrad_ids(letter, 10)
    first = rows[0]
    assert first["source"] == f"Task1/{anatomy}/1{letter}A001/mr.nii.gz"
    assert first["target"] == f"Task1/{anatomy}/1{letter}A001/ct.nii.gz"
    assert first["mask"] == f"Task1/{anatomy}/1{letter}A001/mask.nii.gz"
    assert {r["anatomy"] for r in rows} == {anatomy}
    for centre in "ABC":
        splits = [r["split"] for r in rows if r["site"] == centre]
        assert len(splits) == 10 and (splits.count("train"), splits.count("val"), splits.count("test")) == (8, 1, 1)
    datalist = read_manifest(out, root)
    assert len(datalist) == 30 and Path(datalist[0]["target"]).is_file()


def test_synthrad_seed_changes_split_but_not_rows(tmp_path):
    root = make_synthrad(tmp_path, "brain", synthrad_ids("B", 10))
    a = scan_dataset("synthrad2023_task1_brain", root, seed=0)
    b = scan_dataset("synthrad2023_task1_brain", root, seed=7)
    assert [r["subject_id"] for r in a] == [r["subject_id"] for r in b]
    assert split_of(a, "subject_id") != split_of(b, "subject_id")
    assert a == scan_dataset("synthrad2023_task1_brain", root, seed=0)


def test_synthrad_missing_modality_is_listed_or_skipped(tmp_path, caplog):
    root = make_synthrad(tmp_path, "brain", synthrad_ids("B", 2))
    (root / "Task1/brain/1BB002/ct.nii.gz").unlink()
    (root / "Task1/brain/1BC001/mask.nii.gz").unlink()
    with pytest.raises(Medi2iInputError, match="2 subject.*lack a file") as err:
        scan_dataset("synthrad2023_task1_brain", root)
    assert "1BB002: ct.nii.gz" in str(err.value) and "1BC001: mask.nii.gz" in str(err.value)
    assert "--skip-incomplete" in str(err.value)
    with caplog.at_level(logging.WARNING, logger="medi2i.data.public_datasets"):
        rows = scan_dataset("synthrad2023_task1_brain", root, skip_incomplete=True)
    assert [r["subject_id"] for r in rows] == ["1BA001", "1BA002", "1BB001", "1BC002"]
    assert "skipping 2 incomplete" in caplog.text and "1BB002" in caplog.text


def test_synthrad_wrong_layout_says_what_was_expected(tmp_path):
    root = make_synthrad(tmp_path, "brain", synthrad_ids("B", 1))
    with pytest.raises(Medi2iInputError, match="layout not found") as err:
        scan_dataset("synthrad2023_task1_brain", root / "Task1" / "brain")  # one level too deep
    message = str(err.value)
    assert "Task1/brain/<ID>/{mr,ct,mask}.nii.gz" in message and "1BA001/" in message
    with pytest.raises(Medi2iInputError, match="layout not found"):
        scan_dataset("synthrad2023_task1_pelvis", root)


# --------------------------------------------------------------------------- BraTS 2021


def test_brats_rows_with_labels(tmp_path):
    numbers = [0, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17]
    root = make_brats(tmp_path / "data", numbers)
    touch(root, "BraTS2021_Training_Data.zip", "notes/readme.txt")  # other entries are ignored
    out = build_manifest("brats2021", root, tmp_path / "brats.csv")
    header, rows = read_csv(out)
    assert header == [*SYNTHESIS_HEADER, "label"]
    assert [r["subject_id"] for r in rows] == [f"BraTS2021_{n:05d}" for n in numbers]
    assert rows[1] == {
        "subject_id": "BraTS2021_00002",
        "split": rows[1]["split"],
        "source": "BraTS2021_00002/BraTS2021_00002_t1.nii.gz",
        "target": "BraTS2021_00002/BraTS2021_00002_t2.nii.gz",
        "mask": "",
        "label": "BraTS2021_00002/BraTS2021_00002_seg.nii.gz",
    }
    assert sorted(r["split"] for r in rows).count("train") == 10
    assert all("mask" not in entry and entry["label"].endswith("_seg.nii.gz") for entry in read_manifest(out, root))


def test_brats_partial_segmentations_leave_label_empty(tmp_path, caplog):
    root = make_brats(tmp_path, [0, 2], modalities=("t1", "t2", "seg"))
    make_brats(root, [3], modalities=("t1", "t2"))
    with caplog.at_level(logging.WARNING, logger="medi2i.data.public_datasets"):
        rows = scan_dataset("brats2021", root)
    assert [r["label"] for r in rows] == ["", "", ""]
    assert "BraTS2021_00003" in caplog.text
    read_manifest(build_manifest("brats2021", root, tmp_path / "m.csv"), root)


def test_brats_missing_t2_and_wrong_layout(tmp_path):
    root = make_brats(tmp_path / "cases", [0, 2])
    (root / "BraTS2021_00002/BraTS2021_00002_t2.nii.gz").unlink()
    with pytest.raises(Medi2iInputError, match="1 subject") as err:
        scan_dataset("brats2021", root)
    assert "BraTS2021_00002: BraTS2021_00002_t2.nii.gz" in str(err.value)
    with pytest.raises(Medi2iInputError, match="layout not found") as err:
        scan_dataset("brats2021", tmp_path)  # the parent of the case folders
    assert "directly holds the BraTS2021_xxxxx folders" in str(err.value) and "cases/" in str(err.value)


# --------------------------------------------------------------------------- IXI


def test_ixi_uses_coregistered_t2_and_keeps_sites(tmp_path):
    root = make_ixi(tmp_path / "data", IXI_STEMS)
    touch(root, *(f"IXI-T2/{s}-T2.nii.gz" for s in IXI_STEMS))  # the raw copies stay, unused
    touch(root, "IXI-T1/IXI-readme.txt")
    out = build_manifest("ixi", root, tmp_path / "ixi.csv")
    header, rows = read_csv(out)
    assert header == [*SYNTHESIS_HEADER, "site"]
    assert [r["subject_id"] for r in rows] == sorted(IXI_STEMS)
    row = next(r for r in rows if r["subject_id"] == "IXI002-Guys-0828")
    assert row["source"] == "IXI-T1/IXI002-Guys-0828-T1.nii.gz"
    assert row["target"] == "IXI-T2-coreg/IXI002-Guys-0828-T2.nii.gz"
    assert row["mask"] == "" and row["site"] == "Guys"
    for site in ("Guys", "HH", "IOP"):
        assert {r["split"] for r in rows if r["site"] == site} == {"train", "val", "test"}
    assert len(read_manifest(out, root)) == len(IXI_STEMS)


def test_ixi_raw_t2_fallback_warns_and_missing_t2_is_skipped_by_default(tmp_path, caplog):
    root = make_ixi(tmp_path, IXI_STEMS[:4], t2_dir="IXI-T2")
    touch(root, "IXI-T1/IXI099-IOP-0999-T1.nii.gz")  # a T1 without T2, as in the real distribution
    with caplog.at_level(logging.WARNING, logger="medi2i.data.public_datasets"):
        rows = scan_dataset("ixi", root)
    assert [r["subject_id"] for r in rows] == sorted(IXI_STEMS[:4])
    assert all(r["target"].startswith("IXI-T2/") for r in rows)
    assert "not co-registered" in caplog.text and "IXI099-IOP-0999" in caplog.text
    with pytest.raises(Medi2iInputError, match="IXI099-IOP-0999: IXI-T2/IXI099-IOP-0999-T2.nii.gz"):
        scan_dataset("ixi", root, skip_incomplete=False)


def test_ixi_wrong_layout(tmp_path):
    touch(tmp_path, *(f"T1/{s}-T1.nii.gz" for s in IXI_STEMS[:2]))  # TorchIO's folder names, not the tarballs'
    with pytest.raises(Medi2iInputError, match="ixi: layout not found") as err:
        scan_dataset("ixi", tmp_path)
    assert "IXI-T1/IXI<nnn>-<Guys|HH|IOP>-<nnnn>-T1.nii.gz" in str(err.value)


# --------------------------------------------------------------------------- LPBA40


def expected_lpba_split(subject_number: int) -> str:
    # SPAC, code/datasets/LPBA.json: S02-S30 "combine-train", S31-S40 "lpba-val"
    return "train" if 2 <= subject_number <= 30 else "val"


@pytest.mark.parametrize("suffix", [".nii.gz", ".hdr"])
def test_lpba_atlas_pairs_and_spac_split(tmp_path, suffix):
    root = make_lpba(tmp_path / "data", suffix=suffix)
    out = build_manifest("lpba40", root, tmp_path / "lpba.csv", seed=123)  # the seed must not matter
    header, rows = read_csv(out)
    assert header == REGISTRATION_HEADER
    assert [r["pair_id"] for r in rows] == [f"S01_S{i:02d}" for i in range(2, 41)]
    assert {r["fixed"] for r in rows} == {f"delineation_space/S01/S01.delineation.skullstripped{suffix}"}
    assert {r["fixed_label"] for r in rows} == {f"delineation_space/S01/S01.delineation.structure.label{suffix}"}
    assert rows[-1]["moving"] == f"delineation_space/S40/S40.delineation.skullstripped{suffix}"
    assert rows[-1]["moving_label"] == f"delineation_space/S40/S40.delineation.structure.label{suffix}"
    assert [r["split"] for r in rows] == [expected_lpba_split(i) for i in range(2, 41)]
    assert all(r["fixed_mask"] == r["moving_mask"] == "" for r in rows)
    assert len(read_manifest(out, root, split="val")) == 10


def test_lpba_missing_subject_and_missing_atlas(tmp_path):
    root = make_lpba(tmp_path, subjects=[i for i in range(1, 41) if i != 17])
    (root / "delineation_space/S33/S33.delineation.structure.label.nii.gz").unlink()
    with pytest.raises(Medi2iInputError, match="2 subject") as err:
        scan_dataset("lpba40", root)
    assert "S17: S17.delineation.skullstripped, S17.delineation.structure.label" in str(err.value)
    assert "S33: S33.delineation.structure.label" in str(err.value)
    rows = scan_dataset("lpba40", root, skip_incomplete=True)
    assert len(rows) == 37 and "S01_S17" not in {r["pair_id"] for r in rows}
    for path in (root / "delineation_space/S01").iterdir():
        path.unlink()
    with pytest.raises(Medi2iInputError, match="atlas S01"):
        scan_dataset("lpba40", root, skip_incomplete=True)


# --------------------------------------------------------------------------- Learn2Reg OASIS


OFFICIAL_VAL = [("0395", "0396"), ("0396", "0397"), ("0397", "0398"), ("0398", "0399"), ("0399", "0400")]
OFFICIAL_VAL += [(f"{i:04d}", f"{i + 1:04d}") for i in range(400, 414)]


def test_oasis_val_pairs_and_training_pairs(tmp_path):
    root = make_oasis(tmp_path / "data")
    out = build_manifest("learn2reg_oasis", root, tmp_path / "oasis.csv")
    header, rows = read_csv(out)
    assert header == REGISTRATION_HEADER
    val = [r for r in rows if r["split"] == "val"]
    train = [r for r in rows if r["split"] == "train"]
    assert len(OFFICIAL_VAL) == 19 and OFFICIAL_VAL[-1] == ("0413", "0414")
    assert [(r["fixed"], r["moving"]) for r in val] == [
        (f"imagesTr/OASIS_{f}_0000.nii.gz", f"imagesTr/OASIS_{m}_0000.nii.gz") for f, m in OFFICIAL_VAL
    ]
    assert val[0]["pair_id"] == "OASIS_0395_0396" and val[0]["fixed_mask"] == "masksTr/OASIS_0395_0000.nii.gz"
    assert val[0]["moving_label"] == "labelsTr/OASIS_0396_0000.nii.gz"
    assert len(train) == 393 and train[0]["pair_id"] == "OASIS_0001_0002" and train[-1]["pair_id"] == "OASIS_0393_0394"
    train_ids = {Path(r[c]).name[6:10] for r in train for c in ("fixed", "moving")}
    assert train_ids.isdisjoint({s for pair in OFFICIAL_VAL for s in pair})
    assert len(read_manifest(out, root)) == 412


def test_oasis_dataset_json_is_authoritative(tmp_path):
    root = make_oasis(tmp_path, subjects=range(1, 9))
    touch(root, "imagesTr/OASIS_0500_0000.nii.gz")  # an image the JSON does not list as training data
    (root / "OASIS_dataset.json").write_text(
        '{"training": ['
        + ", ".join(f'{{"image": "./imagesTr/OASIS_{i:04d}_0000.nii.gz"}}' for i in range(1, 9))
        + '], "registration_val": [{"fixed": "./imagesTr/OASIS_0007_0000.nii.gz", '
        '"moving": "./imagesTr/OASIS_0008_0000.nii.gz"}]}'
    )
    rows = scan_dataset("learn2reg_oasis", root)
    assert [(r["pair_id"], r["split"]) for r in rows] == [
        *((f"OASIS_{i:04d}_{i + 1:04d}", "train") for i in range(1, 6)),
        ("OASIS_0007_0008", "val"),
    ]
    (root / "OASIS_dataset.json").write_text('{"registration_val": [{"fixed": "a.nii.gz"}]}')
    with pytest.raises(Medi2iInputError, match="registration_val"):
        scan_dataset("learn2reg_oasis", root)


def test_oasis_without_masks_and_with_missing_labels(tmp_path, caplog):
    root = make_oasis(tmp_path, subjects=range(390, 415), folders=("imagesTr", "labelsTr"))
    with caplog.at_level(logging.WARNING, logger="medi2i.data.public_datasets"):
        rows = scan_dataset("learn2reg_oasis", root)
    assert "no masksTr/" in caplog.text
    assert all(r["fixed_mask"] == r["moving_mask"] == "" for r in rows)
    assert [r["pair_id"] for r in rows if r["split"] == "train"] == [
        f"OASIS_{i:04d}_{i + 1:04d}" for i in range(390, 394)
    ]
    (root / "labelsTr/OASIS_0400_0000.nii.gz").unlink()
    with pytest.raises(Medi2iInputError, match="0400: labelsTr/OASIS_0400_0000.nii.gz"):
        scan_dataset("learn2reg_oasis", root)
    kept = scan_dataset("learn2reg_oasis", root, skip_incomplete=True)
    assert {"OASIS_0399_0400", "OASIS_0400_0401"}.isdisjoint(r["pair_id"] for r in kept)
    assert len([r for r in kept if r["split"] == "val"]) == 17
    with pytest.raises(Medi2iInputError, match="imagesTr/OASIS_<nnnn>_0000.nii.gz"):
        scan_dataset("learn2reg_oasis", tmp_path / "imagesTr")


# --------------------------------------------------------------------------- entry points


def test_unknown_dataset_and_bad_data_root(tmp_path):
    with pytest.raises(Medi2iInputError, match="did you mean 'lpba40'") as err:
        get_dataset("lpba4")
    assert "\n" not in str(err.value)
    with pytest.raises(Medi2iInputError, match="data_root is not a folder"):
        scan_dataset("ixi", tmp_path / "nowhere")


def test_build_manifest_leaves_out_csv_untouched_when_validation_fails(tmp_path, monkeypatch):
    touch(tmp_path, "a.nii.gz")

    def bad_scan(root: Path, seed: int, skip: bool) -> list[dict[str, str]]:
        return [{"subject_id": "a", "split": "train", "source": "a.nii.gz", "target": "missing.nii.gz"}]

    spec = PublicDataset(ManifestKind.SYNTHESIS, "broken", "a.nii.gz", "none", bad_scan)
    monkeypatch.setitem(DATASETS, "broken", spec)
    out = tmp_path / "out" / "m.csv"
    with pytest.raises(Medi2iInputError, match="failed validation: file does not exist") as err:
        build_manifest("broken", tmp_path, out)
    assert str(out) in str(err.value)
    assert not out.exists() and list(out.parent.iterdir()) == []


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="medi2i")
    manifest_cli.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["manifest", *argv])
    return args.run(args)


def test_cli_writes_lists_and_dry_runs(tmp_path, capsys):
    root = make_lpba(tmp_path / "lpba")
    out = tmp_path / "lpba40.csv"
    assert run_cli("lpba40", "--data-root", str(root), "--out", str(out)) == 0
    assert "lpba40: 39 pairs (train 29, val 10); written to" in capsys.readouterr().out
    assert len(read_manifest(out, root)) == 39
    assert run_cli("lpba40", "--data-root", str(root), "--dry-run") == 0
    assert "not written (--dry-run)" in capsys.readouterr().out
    assert run_cli("--list") == 0
    listing = capsys.readouterr().out
    assert all(f"{name} (" in listing for name in DATASETS)


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        ([], "no dataset given"),
        (["lpba41", "--data-root", "x", "--out", "y"], "did you mean 'lpba40'"),
        (["lpba40", "--out", "y"], "--data-root is required"),
        (["lpba40", "--data-root", "."], "--out is required"),
    ],
)
def test_cli_input_errors(argv, match):
    with pytest.raises(Medi2iInputError, match=match):
        run_cli(*argv)


def test_cli_main_prints_one_line_and_exits_2(tmp_path, capsys, monkeypatch):
    from medi2i import cli

    monkeypatch.setattr(cli, "SUBCOMMANDS", {"manifest": "medi2i.cli.manifest"})
    code = cli.main(["manifest", "brats2021", "--data-root", str(tmp_path), "--out", str(tmp_path / "m.csv")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("medi2i manifest: error:") and "layout not found" in err


# --------------------------------------------------------------------------- templates in data_manifests/


def test_one_template_per_dataset():
    assert sorted(p.stem for p in TEMPLATES.glob("*.csv")) == sorted(DATASETS)
    assert (TEMPLATES / "README.md").is_file()


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_template_columns_and_paths(name):
    header, rows = read_csv(TEMPLATES / f"{name}.csv")
    kind = detect_kind(header)
    assert kind is DATASETS[name].kind
    assert header[: len(REQUIRED_COLUMNS[kind])] == list(REQUIRED_COLUMNS[kind])
    if kind is ManifestKind.SYNTHESIS:
        assert header[:5] == SYNTHESIS_HEADER and set(header) <= {*SYNTHESIS_HEADER, "label", "site", "anatomy"}
    else:
        assert header == REGISTRATION_HEADER
    assert rows and {r["split"] for r in rows} <= {"train", "val", "test"}
    for row in rows:
        for column in PATH_COLUMNS[kind]:
            value = row.get(column, "")
            assert not value.startswith("/") and "\\" not in value and ".." not in Path(value).parts, (name, value)


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_template_is_what_the_scanner_writes_for_its_subjects(tmp_path, name):
    template = TEMPLATES / f"{name}.csv"
    header, rows = read_csv(template)
    root = tmp_path / "data"
    root.mkdir()
    touch(root, *(row[c] for row in rows for c in PATH_COLUMNS[detect_kind(header)] if row.get(c)))
    assert len(read_manifest(template, root)) == len(rows)  # relative, inside data_root, no duplicates
    out = build_manifest(name, root, tmp_path / "regenerated.csv", seed=0)
    assert out.read_text(encoding="utf-8") == template.read_text(encoding="utf-8")


def test_oasis_template_holds_the_19_official_validation_pairs():
    _, rows = read_csv(TEMPLATES / "learn2reg_oasis.csv")
    assert [(r["fixed"], r["moving"], r["split"]) for r in rows] == [
        (f"imagesTr/OASIS_{f}_0000.nii.gz", f"imagesTr/OASIS_{m}_0000.nii.gz", "val") for f, m in OFFICIAL_VAL
    ]
    assert list(L2R_OASIS_VAL_PAIRS) == OFFICIAL_VAL
    assert all(r["fixed_label"].startswith("labelsTr/") and r["fixed_mask"].startswith("masksTr/") for r in rows)


def test_lpba_template_holds_s02_to_s40_against_atlas_s01():
    _, rows = read_csv(TEMPLATES / "lpba40.csv")
    assert [r["pair_id"] for r in rows] == [f"S01_S{i:02d}" for i in range(2, 41)]
    assert {r["fixed"] for r in rows} == {"delineation_space/S01/S01.delineation.skullstripped.nii.gz"}
    assert [r["moving"] for r in rows] == [
        f"delineation_space/S{i:02d}/S{i:02d}.delineation.skullstripped.nii.gz" for i in range(2, 41)
    ]
    assert [r["split"] for r in rows] == [expected_lpba_split(i) for i in range(2, 41)]
    assert [r["split"] for r in rows].count("train") == 29
