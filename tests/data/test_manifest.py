"""Manifest validation: columns, splits, duplicates, path safety, datalist shape."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from medi2i.data.manifest import ManifestKind, detect_kind, read_manifest, write_manifest
from medi2i.errors import Medi2iInputError

SYN_HEADER = "subject_id,split,source,target,mask\n"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    for subject in ("s1", "s2", "s3"):
        (data / subject).mkdir(parents=True)
        for name in ("mr.nii.gz", "ct.nii.gz", "mask.nii.gz"):
            (data / subject / name).write_bytes(b"x")
    return data


def _syn_row(subject: str, split: str = "train", mask: bool = True) -> str:
    return f"{subject},{split},{subject}/mr.nii.gz,{subject}/ct.nii.gz,{subject + '/mask.nii.gz' if mask else ''}\n"


def _write(tmp_path: Path, text: str, name: str = "m.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_synthesis_datalist_has_absolute_paths_and_metadata(tmp_path, root):
    manifest = _write(tmp_path, "subject_id,split,source,target,mask,site\n" + _syn_row("s1").strip() + ",A\n")
    rows = read_manifest(manifest, root)
    assert rows == [
        {
            "subject_id": "s1",
            "split": "train",
            "source": str((root / "s1/mr.nii.gz").resolve()),
            "target": str((root / "s1/ct.nii.gz").resolve()),
            "mask": str((root / "s1/mask.nii.gz").resolve()),
            "site": "A",
        }
    ]


def test_split_filter_and_kind_detection(tmp_path, root):
    manifest = _write(tmp_path, SYN_HEADER + _syn_row("s1") + _syn_row("s2", "val") + _syn_row("s3", "test"))
    assert [r["subject_id"] for r in read_manifest(manifest, root, split="val")] == ["s2"]
    assert [r["subject_id"] for r in read_manifest(manifest, root, split=["train", "test"])] == ["s1", "s3"]
    assert detect_kind(["subject_id", "split"]) is ManifestKind.SYNTHESIS
    with pytest.raises(Medi2iInputError, match="unknown split requested"):
        read_manifest(manifest, root, split="validation")


def test_registration_manifest(tmp_path, root):
    manifest = _write(
        tmp_path,
        "pair_id,split,fixed,moving,fixed_label\np1,test,s1/mr.nii.gz,s2/mr.nii.gz,s1/mask.nii.gz\n",
    )
    (row,) = read_manifest(manifest, root)
    assert row["pair_id"] == "p1" and row["fixed_label"].endswith("s1/mask.nii.gz")


def test_missing_column_is_named(tmp_path, root):
    manifest = _write(tmp_path, "subject_id,split,source\ns1,train,s1/mr.nii.gz\n")
    with pytest.raises(Medi2iInputError, match="missing required column 'target'") as info:
        read_manifest(manifest, root)
    assert str(manifest) in str(info.value)


def test_unknown_kind_columns(tmp_path, root):
    manifest = _write(tmp_path, "id,split\nx,train\n")
    with pytest.raises(Medi2iInputError, match="cannot tell the manifest kind"):
        read_manifest(manifest, root)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("s1,train,../outside.nii.gz,s1/ct.nii.gz,\n", "escapes data_root"),
        ("s1,train,s1/../../outside.nii.gz,s1/ct.nii.gz,\n", "escapes data_root"),
        ("s1,train,/etc/passwd,s1/ct.nii.gz,\n", "absolute paths are not allowed"),
        ("s1,train,s1/missing.nii.gz,s1/ct.nii.gz,\n", "file does not exist"),
        ("s1,training,s1/mr.nii.gz,s1/ct.nii.gz,\n", "unknown split"),
        ("s1,train,,s1/ct.nii.gz,\n", "empty required cell"),
        ("s1,train,s1,s1/ct.nii.gz,\n", "not a regular file"),
    ],
)
def test_bad_rows_are_rejected_with_line_and_column(tmp_path, root, row, message):
    (root.parent / "outside.nii.gz").write_bytes(b"x")
    manifest = _write(tmp_path, SYN_HEADER + row)
    with pytest.raises(Medi2iInputError, match=message) as info:
        read_manifest(manifest, root)
    assert "line 2" in str(info.value)


def test_absolute_paths_allowed_when_asked(tmp_path, root):
    source = (root / "s1/mr.nii.gz").resolve()
    manifest = _write(tmp_path, SYN_HEADER + f"s1,train,{source},s1/ct.nii.gz,\n")
    (row,) = read_manifest(manifest, root, allow_outside_root=True)
    assert row["source"] == str(source)


def test_symlink_out_of_root_and_symlink_loop(tmp_path, root):
    outside = tmp_path / "elsewhere.nii.gz"
    outside.write_bytes(b"x")
    os.symlink(outside, root / "s1" / "link.nii.gz")
    manifest = _write(tmp_path, SYN_HEADER + "s1,train,s1/link.nii.gz,s1/ct.nii.gz,\n")
    with pytest.raises(Medi2iInputError, match="outside data_root"):
        read_manifest(manifest, root)
    assert read_manifest(manifest, root, allow_outside_root=True)[0]["source"] == str(outside.resolve())
    os.symlink(root / "s2" / "loop_b", root / "s2" / "loop_a")
    os.symlink(root / "s2" / "loop_a", root / "s2" / "loop_b")
    manifest = _write(tmp_path, SYN_HEADER + "s2,train,s2/loop_a,s2/ct.nii.gz,\n", "loop.csv")
    with pytest.raises(Medi2iInputError, match="symlink loop"):
        read_manifest(manifest, root)


def test_duplicates_are_flagged(tmp_path, root):
    manifest = _write(tmp_path, SYN_HEADER + _syn_row("s1") + _syn_row("s1", "test"))
    with pytest.raises(Medi2iInputError, match="duplicate subject_id") as info:
        read_manifest(manifest, root)
    assert "line 2" in str(info.value) and "line 3" in str(info.value)
    manifest = _write(tmp_path, SYN_HEADER + _syn_row("s1") + "s9,test,s1/mr.nii.gz,s2/ct.nii.gz,\n", "dup.csv")
    with pytest.raises(Medi2iInputError, match="duplicate source file"):
        read_manifest(manifest, root)
    pairs = "pair_id,split,fixed,moving\na,train,s1/mr.nii.gz,s2/mr.nii.gz\nb,val,s1/mr.nii.gz,s2/mr.nii.gz\n"
    with pytest.raises(Medi2iInputError, match=r"duplicate \(fixed, moving\) pair"):
        read_manifest(_write(tmp_path, pairs, "pairs.csv"), root)


def test_partially_filled_optional_column(tmp_path, root):
    manifest = _write(tmp_path, SYN_HEADER + _syn_row("s1") + _syn_row("s2", mask=False))
    with pytest.raises(Medi2iInputError, match="filled for some rows"):
        read_manifest(manifest, root)
    with pytest.raises(Medi2iInputError, match="filled for some rows"):  # both rows are train: still mixed
        read_manifest(manifest, root, split="train")
    # selecting only rows that agree is fine
    manifest = _write(tmp_path, SYN_HEADER + _syn_row("s1") + _syn_row("s2", "test", mask=False), "m2.csv")
    assert [r["subject_id"] for r in read_manifest(manifest, root, split="train")] == ["s1"]


def test_malformed_csv(tmp_path, root):
    with pytest.raises(Medi2iInputError, match="more cells than the header"):
        read_manifest(_write(tmp_path, SYN_HEADER + "s1,train,a,b,c,d,e\n"), root)
    with pytest.raises(Medi2iInputError, match="manifest is empty"):
        read_manifest(_write(tmp_path, "", "empty.csv"), root)
    with pytest.raises(Medi2iInputError, match="no rows"):
        read_manifest(_write(tmp_path, SYN_HEADER, "header_only.csv"), root)
    with pytest.raises(Medi2iInputError, match="manifest not found"):
        read_manifest(tmp_path / "nope.csv", root)
    (tmp_path / "bin.csv").write_bytes(b"\xff\xfe\x00\x81bad")
    with pytest.raises(Medi2iInputError, match="not a readable CSV"):
        read_manifest(tmp_path / "bin.csv", root)


def test_write_then_read_round_trip(tmp_path, root):
    rows = [
        {"subject_id": "s1", "split": "train", "source": "s1/mr.nii.gz", "target": "s1/ct.nii.gz", "site": "A"},
        {"subject_id": "s2", "split": "val", "source": "s2/mr.nii.gz", "target": "s2/ct.nii.gz", "site": "B"},
    ]
    out = write_manifest(tmp_path / "out.csv", rows, kind="synthesis")
    back = read_manifest(out, root)
    assert [(r["subject_id"], r["site"]) for r in back] == [("s1", "A"), ("s2", "B")]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".out.csv")) == []
    with pytest.raises(Medi2iInputError, match="lacks required columns"):
        write_manifest(tmp_path / "bad.csv", [{"subject_id": "s1"}], kind="synthesis")
    assert not (tmp_path / "bad.csv").exists()
