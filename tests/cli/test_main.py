"""The ``medi2i`` entry point: help everywhere, one-line errors with exit code 2, nothing written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from medi2i.cli import SUBCOMMANDS, build_parser, main
from tests.conftest import oblique_affine, write_nifti


def test_every_subcommand_has_help(capsys):
    for name in SUBCOMMANDS:
        with pytest.raises(SystemExit) as info:
            main([name, "--help"])
        assert info.value.code == 0
        out = capsys.readouterr().out
        assert out.startswith(f"usage: medi2i {name}") and len(out.splitlines()) > 3


def test_top_level_help_lists_subcommands():
    text = build_parser().format_help()
    for name in SUBCOMMANDS:
        assert name in text


def test_console_script_runs_as_module():
    result = subprocess.run([sys.executable, "-m", "medi2i", "--version"], capture_output=True, text=True, check=False)
    assert result.returncode == 0 and result.stdout.startswith("medi2i ")


def test_check_prints_a_header_summary(tmp_path, capsys):
    path = write_nifti(tmp_path / "ct.nii.gz", np.full((4, 5, 6), -1000, np.int16), oblique_affine())
    assert main(["check", str(path)]) == 0
    line = capsys.readouterr().out.strip()
    assert str(path) in line and "4x5x6" in line and "0.9x1.1x2.5 mm" in line and "int16" in line
    assert "[-1000, -1000]" in line


def test_bad_input_is_one_line_on_stderr_with_exit_code_2(tmp_path, capsys):
    bad = write_nifti(tmp_path / "nan.nii.gz", np.full((4, 5, 6), np.nan, np.float32), oblique_affine())
    assert main(["check", str(bad)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("medi2i check: error:") and str(bad) in lines[0]
    assert "NaN" in lines[0]


def test_nothing_to_check_is_an_input_error(capsys):
    assert main(["check"]) == 2
    assert "nothing to check" in capsys.readouterr().err


def test_check_manifest_reports_mismatched_pair(tmp_path, capsys):
    root = tmp_path / "root"
    root.mkdir()
    write_nifti(root / "a_mr.nii.gz", np.ones((4, 5, 6), np.float32), oblique_affine())
    write_nifti(root / "a_ct.nii.gz", np.ones((4, 5, 7), np.float32), oblique_affine())
    write_nifti(root / "b_mr.nii.gz", np.ones((4, 5, 6), np.float32), oblique_affine())
    write_nifti(root / "b_ct.nii.gz", np.ones((4, 5, 6), np.float32), oblique_affine())
    good = tmp_path / "good.csv"
    good.write_text("subject_id,split,source,target\nb,train,b_mr.nii.gz,b_ct.nii.gz\n")
    assert main(["check", "--manifest", str(good), "--data-root", str(root)]) == 0
    assert "1 rows OK" in capsys.readouterr().out
    bad = tmp_path / "bad.csv"
    bad.write_text("subject_id,split,source,target\na,train,a_mr.nii.gz,a_ct.nii.gz\n")
    assert main(["check", "--manifest", str(bad), "--data-root", str(root)]) == 2
    err = capsys.readouterr().err
    assert "a_mr.nii.gz" in err and "a_ct.nii.gz" in err
    assert main(["check", "--manifest", str(bad)]) == 2
    assert "--data-root" in capsys.readouterr().err
    assert main(["check", "--manifest", str(good), "--data-root", str(root), "--split", "test"]) == 2
    assert "no rows in the selected split" in capsys.readouterr().err


def test_check_label_kind_rejects_fractional_labels(tmp_path, capsys):
    path = write_nifti(tmp_path / "seg.nii.gz", np.full((3, 3, 3), 1.5, np.float32), oblique_affine())
    assert main(["check", "--kind", "label", str(path)]) == 2
    assert str(path) in capsys.readouterr().err


def test_cli_module_paths_exist():
    root = Path(__file__).resolve().parents[2] / "medi2i" / "cli"
    for module in SUBCOMMANDS.values():
        assert (root / f"{module.rsplit('.', 1)[1]}.py").is_file()


def test_check_registration_manifest_requires_fixed_and_moving_on_one_grid(tmp_path, capsys):
    root = tmp_path / "root"
    root.mkdir()
    write_nifti(root / "f.nii.gz", np.ones((4, 5, 6), np.float32), oblique_affine())
    write_nifti(root / "m.nii.gz", np.ones((4, 5, 6), np.float32), oblique_affine(angle_deg=20.0))
    manifest = tmp_path / "pairs.csv"
    manifest.write_text("pair_id,split,fixed,moving\np,test,f.nii.gz,m.nii.gz\n")
    assert main(["check", "--manifest", str(manifest), "--data-root", str(root)]) == 2
    err = capsys.readouterr().err
    assert "f.nii.gz" in err and "m.nii.gz" in err


def test_output_into_a_closed_pipe_ends_quietly(tmp_path):
    path = write_nifti(tmp_path / "ct.nii.gz", np.zeros((4, 5, 6), np.int16), oblique_affine())
    script = (
        "import sys; from medi2i.cli import main; "
        f"rc = [main(['check', {str(path)!r}]) for _ in range(2000)]; sys.exit(max(rc))"
    )
    reader = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    reader.stdout.readline()  # take one line, then close the pipe like `| head -1`
    reader.stdout.close()
    _, err = reader.communicate(timeout=120)
    assert reader.returncode == 141
    assert b"Traceback" not in err
