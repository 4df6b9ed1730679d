"""Tests for medi2i.weights: lookup order, error text for missing and corrupt files, safe loading."""

from __future__ import annotations

import pytest
import torch

from medi2i.errors import Medi2iInputError
from medi2i.weights import WEIGHTS_ENV, load_state_dict_file, resolve_weights, weights_dir


def test_weights_dir_env_and_default(monkeypatch, tmp_path):
    monkeypatch.setenv(WEIGHTS_ENV, str(tmp_path))
    assert weights_dir() == tmp_path
    monkeypatch.delenv(WEIGHTS_ENV)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert weights_dir() == tmp_path / "home" / ".cache" / "medi2i" / "weights"


def test_resolve_lookup_order(monkeypatch, tmp_path):
    env_dir = tmp_path / "env"
    env_dir.mkdir()
    (env_dir / "vgg16-397923af.pth").write_bytes(b"x")
    monkeypatch.setenv(WEIGHTS_ENV, str(env_dir))
    assert resolve_weights("vgg16-397923af.pth", purpose="t") == env_dir / "vgg16-397923af.pth"
    explicit = tmp_path / "mine.pth"
    explicit.write_bytes(b"x")
    assert resolve_weights("vgg16-397923af.pth", path=explicit, purpose="t") == explicit  # config wins
    other = tmp_path / "other"
    other.mkdir()
    (other / "vgg16-397923af.pth").write_bytes(b"x")
    assert resolve_weights("vgg16-397923af.pth", path=other, purpose="t") == other / "vgg16-397923af.pth"


def test_missing_file_message_names_file_dir_env_and_source(monkeypatch, tmp_path):
    monkeypatch.setenv(WEIGHTS_ENV, str(tmp_path))
    with pytest.raises(Medi2iInputError) as info:
        resolve_weights("vgg19-dcbb9e9d.pth", purpose="NST loss network")
    text = str(info.value)
    assert "NST loss network" in text
    assert "'vgg19-dcbb9e9d.pth'" in text
    assert str(tmp_path) in text
    assert WEIGHTS_ENV in text
    assert "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth" in text
    assert "copy it here" in text and "never downloads" in text


def test_missing_explicit_path_message(tmp_path):
    with pytest.raises(Medi2iInputError) as info:
        resolve_weights("vgg16-397923af.pth", path=tmp_path / "nope.pth", purpose="LPIPS")
    text = str(info.value)
    assert "nope.pth" in text and "weights_path" in text and WEIGHTS_ENV in text
    assert "vgg16-397923af.pth" in text


def test_unknown_file_and_empty_purpose(monkeypatch, tmp_path):
    monkeypatch.setenv(WEIGHTS_ENV, str(tmp_path))
    with pytest.raises(Medi2iInputError, match="obtain 'custom.pth' from the provider"):
        resolve_weights("custom.pth", purpose="x")
    with pytest.raises(ValueError, match="purpose"):
        resolve_weights("custom.pth", purpose="")


def test_load_state_dict_round_trip(tmp_path):
    state = {"a.weight": torch.randn(3, 2), "a.bias": torch.zeros(3)}
    torch.save(state, tmp_path / "w.pth")
    loaded = load_state_dict_file(tmp_path / "w.pth")
    assert set(loaded) == set(state)
    for key in state:
        assert torch.equal(loaded[key], state[key])


def test_load_corrupt_and_truncated(tmp_path):
    (tmp_path / "junk.pth").write_bytes(b"this is not a torch file")
    with pytest.raises(Medi2iInputError, match=r"junk.pth: cannot read the weights file .*corrupt"):
        load_state_dict_file(tmp_path / "junk.pth")
    torch.save({"w": torch.randn(64, 64)}, tmp_path / "full.pth")
    data = (tmp_path / "full.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(Medi2iInputError, match="cut.pth: cannot read the weights file"):
        load_state_dict_file(tmp_path / "cut.pth")


def test_load_refuses_non_state_dicts(tmp_path):
    torch.save([torch.zeros(1)], tmp_path / "list.pth")
    with pytest.raises(Medi2iInputError, match="list.pth: weights file does not hold a state dict"):
        load_state_dict_file(tmp_path / "list.pth")
    torch.save({"epoch": 3, "w": torch.zeros(1)}, tmp_path / "mixed.pth")
    with pytest.raises(Medi2iInputError, match="mixed.pth: epoch: weights file holds an entry"):
        load_state_dict_file(tmp_path / "mixed.pth")
    with pytest.raises(Medi2iInputError, match="weights file not found"):
        load_state_dict_file(tmp_path / "absent.pth")


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_load_refuses_arbitrary_pickles(tmp_path):
    torch.save({"w": _Evil()}, tmp_path / "evil.pth")
    with pytest.raises(Medi2iInputError, match="evil.pth: cannot read the weights file"):
        load_state_dict_file(tmp_path / "evil.pth")
