"""Split checkpoints: safetensors + JSON metadata, strict and pickle-free loading."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from latentwire.checkpoint import (
    load_decoder,
    load_encoder,
    resolve_checkpoint,
)
from latentwire.errors import BadCheckpointError


def test_reload_gives_identical_outputs(tiny_checkpoint: Path) -> None:
    enc, dec = load_encoder(tiny_checkpoint), load_decoder(tiny_checkpoint)
    again_enc, again_dec = (
        load_encoder(tiny_checkpoint / "encoder.safetensors"),
        load_decoder(tiny_checkpoint),
    )
    images = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(enc.module(images), again_enc.module(images))
        latents = enc.module(images)
        assert torch.equal(dec.module(latents), again_dec.module(latents))
    assert enc.meta.model_id == dec.meta.model_id
    assert len(enc.meta.model_id) == 16


def test_halves_hold_only_their_own_weights(tiny_checkpoint: Path) -> None:
    with safe_open(str(tiny_checkpoint / "encoder.safetensors"), framework="pt") as f:
        enc_keys = set(f.keys())
        meta = json.loads(f.metadata()["latentwire"])
    with safe_open(str(tiny_checkpoint / "decoder.safetensors"), framework="pt") as f:
        dec_keys = set(f.keys())
    assert enc_keys and dec_keys and not enc_keys & dec_keys
    assert meta["half"] == "encoder" and meta["preset"]["name"] == "tiny"
    assert {"model_id", "codec", "training", "metrics", "versions", "command", "data_checksum"} <= set(meta)


def test_model_id_depends_on_content(tiny_checkpoint: Path, other_checkpoint: Path) -> None:
    assert load_encoder(tiny_checkpoint).meta.model_id != load_encoder(other_checkpoint).meta.model_id


def test_wrong_half_is_refused(tiny_checkpoint: Path) -> None:
    with pytest.raises(BadCheckpointError, match="decoder half; the encoder half was asked for"):
        load_encoder(tiny_checkpoint / "decoder.safetensors")
    with pytest.raises(BadCheckpointError, match="encoder half"):
        load_decoder(tiny_checkpoint / "encoder.safetensors")


def test_tampered_weights_are_refused(tiny_checkpoint: Path, tmp_path: Path) -> None:
    path = tiny_checkpoint / "encoder.safetensors"
    with safe_open(str(path), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
        header = f.metadata()
    first = sorted(tensors)[0]
    tensors[first] = tensors[first] + 1.0
    save_file(tensors, str(tmp_path / "evil.safetensors"), metadata=header)
    with pytest.raises(BadCheckpointError, match="digest"):
        load_encoder(tmp_path / "evil.safetensors")


@pytest.mark.parametrize("content", [b"", b"not a checkpoint", b"\x80\x04\x95pickle"])
def test_garbage_files_are_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "encoder.safetensors"
    path.write_bytes(content)
    with pytest.raises(BadCheckpointError):
        load_encoder(path)


def test_plain_safetensors_without_metadata_is_refused(tmp_path: Path) -> None:
    save_file({"w": torch.zeros(2)}, str(tmp_path / "x.safetensors"))
    with pytest.raises(BadCheckpointError, match="not a latentwire checkpoint"):
        load_decoder(tmp_path / "x.safetensors")


def test_missing_and_directory_resolution(tiny_checkpoint: Path, tmp_path: Path) -> None:
    assert resolve_checkpoint(tiny_checkpoint, "decoder") == tiny_checkpoint / "decoder.safetensors"
    with pytest.raises(BadCheckpointError, match="no encoder checkpoint"):
        resolve_checkpoint(tmp_path / "nowhere", "encoder")
    # a directory with only the decoder: the encoder half is simply not there
    lone = tmp_path / "lone"
    lone.mkdir()
    shutil.copy(tiny_checkpoint / "decoder.safetensors", lone)
    assert load_decoder(lone).meta.half == "decoder"
    with pytest.raises(BadCheckpointError):
        load_encoder(lone)


def test_tables_are_stored_in_both_halves(tmp_path: Path, checkpoint_factory: Callable[..., Path]) -> None:
    root = checkpoint_factory(tmp_path / "q", preset="dense-tiny", level=4, denoise=True)
    enc, dec = load_encoder(root), load_decoder(root)
    assert set(enc.tables) == set(dec.tables) == {"offsets", "cdfs", "lengths"}
    for name in enc.tables:
        assert torch.equal(enc.tables[name], dec.tables[name]) and enc.tables[name].dtype == torch.int32
    assert (enc.meta.level, enc.meta.denoise) == (4, True)
