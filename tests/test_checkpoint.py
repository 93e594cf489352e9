from __future__ import annotations

import io
import pickle
from pathlib import Path

import pytest
import torch

from aerobust.errors import CheckpointError
from aerobust.models import build_model, load_model, read_checkpoint, save_checkpoint


def _save(path: Path, arch: str = "lenet5", **kwargs) -> torch.nn.Module:
    model = build_model(arch, **kwargs)
    save_checkpoint(path, model, arch, kwargs, note="hello")
    return model


def test_round_trip_gives_identical_outputs_in_eval_mode(tmp_path: Path) -> None:
    model = _save(tmp_path / "m.pt", "vgg16", in_channels=3, image_size=32).eval()
    loaded = load_model(tmp_path / "m.pt")
    assert not loaded.training
    x = torch.rand(2, 3, 32, 32)
    assert torch.equal(model(x), loaded(x))
    assert read_checkpoint(tmp_path / "m.pt")["note"] == "hello"


def test_wrong_kind_or_architecture_is_refused(tmp_path: Path) -> None:
    _save(tmp_path / "ae.pt", "conv-ae")
    with pytest.raises(CheckpointError, match=r"autoencoder.*not a classifier"):
        load_model(tmp_path / "ae.pt", kind="classifier")
    _save(tmp_path / "lenet.pt")
    with pytest.raises(CheckpointError, match="lenet5, not vgg16"):
        load_model(tmp_path / "lenet.pt", arch="vgg16")


def test_weights_for_another_architecture_are_refused(tmp_path: Path) -> None:
    # a checkpoint that claims lenet5 but carries the substitute's weights
    model = build_model("lenet-substitute")
    save_checkpoint(tmp_path / "x.pt", model, "lenet-substitute", {})
    raw = torch.load(tmp_path / "x.pt", weights_only=True)
    raw["arch"] = "lenet5"
    torch.save(raw, tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match="do not fit architecture lenet5"):
        load_model(tmp_path / "x.pt")


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_checkpoint_carrying_a_pickled_object_is_refused(tmp_path: Path, capsys) -> None:
    model = build_model("lenet5")
    payload = {"format": "aerobust-checkpoint", "format_version": 1, "arch": "lenet5",
               "kind": "classifier", "arch_kwargs": {}, "state_dict": model.state_dict(),
               "extra": _Evil()}
    torch.save(payload, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="refused"):
        load_model(tmp_path / "evil.pt")
    assert "pwned" not in capsys.readouterr().out


def test_missing_truncated_and_foreign_files(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_model(tmp_path / "nope.pt")
    _save(tmp_path / "m.pt")
    data = (tmp_path / "m.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_model(tmp_path / "cut.pt")
    buf = io.BytesIO()
    torch.save({"weights": torch.zeros(3)}, buf)
    (tmp_path / "other.pt").write_bytes(buf.getvalue())
    with pytest.raises(CheckpointError, match="not an aerobust checkpoint"):
        load_model(tmp_path / "other.pt")
    (tmp_path / "text.pt").write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(CheckpointError):
        load_model(tmp_path / "text.pt")
