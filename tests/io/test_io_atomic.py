"""Writes are atomic: a killed or failing write never leaves a partial file at the final path."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medi2i.io import atomic_path, load_volume, save_volume
from tests.conftest import oblique_affine
from tests.io.io_helpers import REPO_ROOT

# Runs save_volume with nibabel's writer slowed down: it writes part of the file, reports, then stalls.
_SLOW_WRITER = r"""
import sys, time
import nibabel as nib
import numpy as np
from medi2i.io import save_volume

def stalled_save(image, filename):
    with open(filename, "wb") as stream:
        stream.write(b"\x00" * 65536)
        stream.flush()
    print("half written", flush=True)
    time.sleep(120)

nib.save = stalled_save
save_volume(sys.argv[1], np.zeros((64, 64, 64), np.float32), np.eye(4))
print("finished", flush=True)
"""


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")
def test_kill_during_write_leaves_no_file_at_the_final_path(tmp_path):
    final = tmp_path / "out" / "ct.nii.gz"
    child = subprocess.Popen(
        [sys.executable, "-c", _SLOW_WRITER, str(final)], cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        line = child.stdout.readline()  # blocks until the child is mid-write (or dies)
        assert line == b"half written\n", child.stderr.read().decode()
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL
    assert not final.exists()
    leftovers = list(final.parent.iterdir())  # the interrupted temporary file, under a hidden .part name
    assert len(leftovers) == 1 and leftovers[0].name.startswith(".ct.nii.gz.") and ".part" in leftovers[0].name


def test_exception_during_write_leaves_neither_final_nor_temporary_file(tmp_path, monkeypatch):
    def failing_save(image, filename):
        Path(filename).write_bytes(b"\x00" * 1000)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(nib, "save", failing_save)
    with pytest.raises(OSError, match="No space left"):
        save_volume(tmp_path / "ct.nii.gz", np.zeros((4, 5, 6), np.float32), oblique_affine())
    assert list(tmp_path.iterdir()) == []


def test_failed_overwrite_keeps_the_previous_file(tmp_path, monkeypatch):
    final = save_volume(tmp_path / "ct.nii.gz", np.full((4, 5, 6), 7.0, np.float32), oblique_affine())
    before = final.read_bytes()

    def failing_save(image, filename):
        Path(filename).write_bytes(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(nib, "save", failing_save)
    with pytest.raises(KeyboardInterrupt):
        save_volume(final, np.zeros((4, 5, 6), np.float32), oblique_affine())
    assert final.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["ct.nii.gz"]
    assert float(load_volume(final).array.mean()) == 7.0


def test_overwrite_replaces_the_file(tmp_path):
    final = save_volume(tmp_path / "ct.nii.gz", np.full((4, 5, 6), 7.0, np.float32), oblique_affine())
    save_volume(final, np.full((4, 5, 6), 3.0, np.float32), oblique_affine())
    assert float(load_volume(final).array.mean()) == 3.0 and [p.name for p in tmp_path.iterdir()] == ["ct.nii.gz"]


def test_atomic_path_keeps_suffix_and_gives_normal_permissions(tmp_path):
    old = os.umask(0o027)
    try:
        with atomic_path(tmp_path / "deep" / "x.nii.gz") as tmp:
            assert tmp.parent == tmp_path / "deep" and tmp.name.endswith(".nii.gz") and tmp != tmp_path / "x.nii.gz"
            tmp.write_bytes(b"data")
    finally:
        os.umask(old)
    final = tmp_path / "deep" / "x.nii.gz"
    assert final.read_bytes() == b"data"
    assert stat.S_IMODE(final.stat().st_mode) == 0o640  # 0o666 & ~umask, not mkstemp's private 0o600


def test_atomic_path_cleans_up_after_an_error(tmp_path):
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "x.txt") as tmp:
        tmp.write_text("half")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
