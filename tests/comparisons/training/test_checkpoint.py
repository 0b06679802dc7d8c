"""Checkpoint files: round trip, atomic writes, verification on read (magic, header, length,
checksum, safe unpickling) and the settings comparison (whole file < 2 s)."""

from __future__ import annotations

import json

import pytest
import torch

from comparisons.training.checkpoint import (
    MAGIC,
    CheckpointError,
    CheckpointMismatch,
    check_settings,
    load_checkpoint,
    read_checkpoint_meta,
    save_checkpoint,
    settings_changes,
)
from vi_dropout.io import TEMP_PREFIX


def _state():
    g = torch.Generator().manual_seed(5)
    net = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(net.parameters())
    net(torch.ones(1, 3)).sum().backward()
    opt.step()
    return {"model": net.state_dict(), "optimizer": opt.state_dict(), "generator": g.get_state(),
            "perm": None, "pos": 7, "losses": torch.tensor([3.0, 2.5], dtype=torch.float64),
            "note": "text", "nested": {"a": [1, 2.5, (3, "x")]}}


def test_round_trip_keeps_every_value_and_the_meta(tmp_path):
    state = _state()
    path = save_checkpoint(tmp_path / "sub" / "a.ckpt", state, meta={"step": 2, "done": False})
    assert path == tmp_path / "sub" / "a.ckpt" and path.read_bytes().startswith(MAGIC)
    back = load_checkpoint(path)
    for key in ("weight", "bias"):
        assert torch.equal(back["model"][key], state["model"][key])
    assert torch.equal(back["generator"], state["generator"])
    assert torch.equal(back["optimizer"]["state"][0]["exp_avg"],
                       state["optimizer"]["state"][0]["exp_avg"])
    assert back["perm"] is None and back["pos"] == 7 and back["note"] == "text"
    assert back["nested"] == {"a": [1, 2.5, (3, "x")]}
    assert read_checkpoint_meta(path) == {"step": 2, "done": False}
    # the generator state restores the stream
    g = torch.Generator()
    g.set_state(back["generator"])
    assert torch.equal(torch.rand(3, generator=g),
                       torch.rand(3, generator=torch.Generator().manual_seed(5)))
    # replaced atomically, no temporary file left
    save_checkpoint(path, {"pos": 8})
    assert load_checkpoint(path) == {"pos": 8} and read_checkpoint_meta(path) == {}
    assert not list(path.parent.glob(TEMP_PREFIX + "*"))


def _damage(path, how):
    data = bytearray(path.read_bytes())
    if how == "flip":
        data[-10] ^= 0x01
    elif how == "truncate":
        data = data[:-5]
    elif how == "append":
        data += b"x"
    elif how == "magic":
        data[:4] = b"JUNK"
    elif how == "header":
        start = len(MAGIC)
        data[start:start + 1] = b"["
    elif how == "no-newline":
        data = data[: len(MAGIC) + 10]
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("how, problem", [
    ("flip", "does not match its SHA-256 checksum"),
    ("truncate", "the header says"),
    ("append", "the header says"),
    ("magic", "does not start with the checkpoint magic line"),
    ("header", "its header is not JSON"),
    ("no-newline", "its header line is truncated"),
])
def test_a_damaged_file_is_refused_naming_it(tmp_path, how, problem):
    path = save_checkpoint(tmp_path / "net.ckpt", _state(), meta={"step": 2})
    _damage(path, how)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    assert str(path) in str(err.value) and problem in str(err.value)
    assert err.value.path == path
    assert isinstance(err.value, ValueError)  # the CLI turns it into one "error:" line


def test_header_without_the_required_fields_and_empty_files(tmp_path):
    path = tmp_path / "x.ckpt"
    path.write_bytes(MAGIC + json.dumps({"sha256": "0"}).encode() + b"\n")
    with pytest.raises(CheckpointError, match="lacks sha256, bytes or meta"):
        read_checkpoint_meta(path)
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match="magic"):
        load_checkpoint(path)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.ckpt")


class _Custom:
    pass


def test_only_tensors_and_plain_containers_are_unpickled(tmp_path):
    path = save_checkpoint(tmp_path / "c.ckpt", {"obj": _Custom()})
    with pytest.raises(CheckpointError, match="torch.load failed"):
        load_checkpoint(path)
    with pytest.raises(TypeError):
        save_checkpoint(tmp_path / "d.ckpt", {}, meta={"x": object()})


def test_settings_changes_name_every_difference(tmp_path):
    saved = {"lr": 0.001, "hidden": (8, 8), "seed": 0, "gone": 1}
    now = {"lr": 0.01, "hidden": [8, 8], "seed": 0, "new": True}
    assert settings_changes(saved, now) == {"lr": (0.001, 0.01), "gone": (1, "<unset>"),
                                            "new": ("<unset>", True)}
    check_settings(tmp_path / "a.ckpt", saved, dict(saved))
    with pytest.raises(CheckpointMismatch) as err:
        check_settings(tmp_path / "a.ckpt", saved, now)
    text = str(err.value)
    assert "lr: 0.001 in the checkpoint, 0.01 now" in text and "gone" in text and "new" in text
    assert "seed" not in text and str(tmp_path / "a.ckpt") in text
    assert err.value.changes["lr"] == (0.001, 0.01)
