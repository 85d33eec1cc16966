"""The quality ladder: selection by level, routing of codes to the model that made them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from latentwire import bitstream
from latentwire.errors import (
    BadCheckpointError,
    BadCodeError,
    BadRequestError,
    ForeignModelError,
    RetiredModelError,
    UnsupportedVersionError,
)
from latentwire.ladder import DecoderLadder, EncoderLadder, checkpoint_files

IMAGES = np.random.default_rng(1).integers(0, 256, (4, 28, 28), dtype=np.uint8)


def test_select_by_quality_and_denoise(ladder_dir: Path) -> None:
    ladder = EncoderLadder.load(ladder_dir)
    assert ladder.default_quality == 1  # the middle of levels 1 and 2 (0, the v1 model, is not counted)
    assert ladder.select(quality=2).level == 2 and not ladder.select(quality=2).denoise
    assert ladder.select(denoise=True).denoise and ladder.select(denoise=True).level == 2
    assert ladder.select(quality=0).format_version == 1  # the seed model
    with pytest.raises(BadRequestError, match="no model at quality 7"):
        ladder.select(quality=7)
    with pytest.raises(BadRequestError, match="no denoising model at quality 1"):
        ladder.select(quality=1, denoise=True)
    assert EncoderLadder.load(ladder_dir, default_quality=2).select().level == 2
    with pytest.raises(BadCheckpointError, match="default quality 9"):
        EncoderLadder.load(ladder_dir, default_quality=9)


def test_receiver_routes_every_code_to_its_model(ladder_dir: Path) -> None:
    sender, receiver = EncoderLadder.load(ladder_dir), DecoderLadder.load(ladder_dir)
    codes, expected = [], []
    for quality, denoise in [(1, False), (2, False), (2, True), (0, False)]:
        compressor = sender.select(quality=quality, denoise=denoise)
        made = compressor.compress(IMAGES[:2])
        codes += made
        expected += [receiver.by_id[compressor.model_id].decompress(made)]
    pixels, models = receiver.decompress(codes)
    assert np.array_equal(pixels, np.concatenate(expected))
    assert [m.level for m in models] == [1, 1, 2, 2, 2, 2, 0, 0]
    assert [m.denoise for m in models] == [False] * 4 + [True] * 2 + [False] * 2


def test_batch_containers_through_the_ladder(ladder_dir: Path) -> None:
    sender, receiver = EncoderLadder.load(ladder_dir), DecoderLadder.load(ladder_dir)
    for quality in (0, 2):
        compressor = sender.select(quality=quality)
        codes = receiver.unpack_batch(compressor.compress_batch(IMAGES), max_codes=10)
        assert codes == compressor.compress(IMAGES)


def test_unknown_levels_and_models(ladder_dir: Path) -> None:
    receiver = DecoderLadder.load(ladder_dir)
    with pytest.raises(ForeignModelError, match="level 7"):
        receiver.route(bitstream.pack_ladder(level=7, denoise=False, model_id="0" * 16, payload=b""))
    with pytest.raises(ForeignModelError, match="lacks"):
        receiver.route(bitstream.pack_v1(model_id="0" * 16, payload=b"x"))


def test_v2_codes_and_containers_are_refused_with_a_reason(ladder_dir: Path) -> None:
    sender, receiver = EncoderLadder.load(ladder_dir), DecoderLadder.load(ladder_dir)
    code = sender.select(quality=2).compress(IMAGES[:1])[0]
    v2 = bytes([code[0] & 0x1F | bitstream.FORMAT_V2 << 5]) + code[1:]  # the same code, labelled v2
    with pytest.raises(UnsupportedVersionError, match=r"v2 is no longer read.*re-encode") as caught:
        receiver.decompress([v2])
    assert "versions 1 and 7" in caught.value.hint
    with pytest.raises(UnsupportedVersionError, match="container v2"):
        receiver.unpack_batch(b"LB\x02" + bytes([v2[0]]) + bytes(4) + b"\x01\x01", max_codes=5)


@pytest.mark.parametrize("version", [3, 4, 5, 6])
def test_retired_codes_and_containers_are_refused_with_a_reason(ladder_dir: Path, version: int) -> None:
    sender, receiver = EncoderLadder.load(ladder_dir), DecoderLadder.load(ladder_dir)
    code = sender.select(quality=2).compress(IMAGES[:1])[0]
    assert code[0] >> 5 == bitstream.LADDER_FORMAT
    retired = bytes([code[0] & 0x1F | version << 5]) + code[1:]  # the same code, labelled v3 … v6
    with pytest.raises(UnsupportedVersionError, match=rf"v{version} is no longer read.*re-encode") as caught:
        receiver.decompress([retired])
    assert "versions 1 and 7" in caught.value.hint
    container = sender.select(quality=2).compress_batch(IMAGES[:2])
    assert receiver.unpack_batch(container, max_codes=5) == sender.select(quality=2).compress(IMAGES[:2])
    relabelled = container[:2] + bytes([container[2] & 0x1F | version << 5]) + container[3:]
    with pytest.raises(UnsupportedVersionError, match=f"container v{version}"):
        receiver.unpack_batch(relabelled, max_codes=5)


def test_relabelled_code_is_refused(ladder_dir: Path) -> None:
    """q2 ↔ q2-denoise: the check covers byte 0, so a relabelled code fails it (or the decoder)."""
    sender, receiver = EncoderLadder.load(ladder_dir), DecoderLadder.load(ladder_dir)
    codes = sender.select(quality=2).compress(
        np.random.default_rng(2).integers(0, 256, (64, 28, 28), np.uint8)
    )
    passed = 0
    for code in codes:
        try:
            receiver.decompress([bytes([code[0] ^ 0x10]) + code[1:]])
            passed += 1
        except BadCodeError:
            pass
    assert passed <= 2  # 1/512 expected (the 9-bit check)


def test_a_payload_longer_than_any_code_is_refused_before_decoding(ladder_dir: Path) -> None:
    receiver = DecoderLadder.load(ladder_dir)
    model = receiver.by_level[(2, False)]
    longest = model.max_payload
    assert 0 < longest <= 2 * len(model.latent_shape) * model.latent_shape[0]
    overlong = bitstream.pack_ladder(
        level=2, denoise=False, model_id=model.model_id, payload=bytes(longest + 1)
    )
    with pytest.raises(BadCodeError, match=f"longer than any code of its model \\(at most {longest}\\)"):
        receiver.open(overlong)
    with pytest.raises(BadCodeError, match="longer than any"):  # also when the check is wrong
        receiver.open(overlong[:1] + bytes([overlong[1] ^ 1]) + overlong[2:])
    with pytest.raises(BadCodeError, match="longer than any"):  # a payload handed over directly
        model.latent_values(bytes(longest + 1))


def test_foreign_ladder_same_level_is_refused(
    ladder_dir: Path, tmp_path: Path, checkpoint_factory: Callable[..., Path]
) -> None:
    theirs = EncoderLadder.load(
        checkpoint_factory(tmp_path / "theirs", preset="dense-tiny", level=2, seed=99)
    )
    code = theirs.select(quality=2).compress(IMAGES[:1])[0]
    with pytest.raises(BadCodeError, match="made by a model this receiver does not serve"):
        DecoderLadder.load(ladder_dir).decompress([code])


def test_a_retrained_levels_old_codes_and_containers_are_refused_by_name(
    ladder_dir: Path, checkpoint_factory: Callable[..., Path]
) -> None:
    before = EncoderLadder.load(ladder_dir).select(quality=2)
    checkpoint_factory(
        ladder_dir / "q2", preset="dense-tiny", level=2, seed=21, retired_model_ids=[before.model_id]
    )
    sender, receiver = EncoderLadder.load(ladder_dir), DecoderLadder.load(ladder_dir)
    assert receiver.by_level[2, False].retired_model_ids == (before.model_id,)
    with pytest.raises(RetiredModelError, match=f"code 1: the code was made by model {before.model_id}"):
        receiver.decompress(sender.select(quality=1).compress(IMAGES[:1]) + before.compress(IMAGES[:1]))
    with pytest.raises(RetiredModelError, match=before.model_id):
        receiver.unpack_batch(before.compress_batch(IMAGES), max_codes=10)
    today = receiver.unpack_batch(sender.select(quality=2).compress_batch(IMAGES), max_codes=10)
    assert receiver.decompress(today)[0].shape == (4, 28, 28)


def test_corrupted_v1_model_id_is_a_bad_code_not_a_foreign_model(ladder_dir: Path) -> None:
    code = bytearray(EncoderLadder.load(ladder_dir).select(quality=0).compress(IMAGES[:1])[0])
    code[3] ^= 0x01  # inside the model id: the CRC says corrupted before the id says foreign
    with pytest.raises(BadCodeError, match="checksum"):
        DecoderLadder.load(ladder_dir).route(bytes(code))


def test_checkpoint_files_and_duplicates(
    ladder_dir: Path, tmp_path: Path, checkpoint_factory: Callable[..., Path]
) -> None:
    assert [p.parent.name for p in checkpoint_files(ladder_dir, "encoder")] == [
        "q1",
        "q2",
        "q2-denoise",
        "seed",
    ]
    assert checkpoint_files(ladder_dir / "q1", "decoder") == [ladder_dir / "q1" / "decoder.safetensors"]
    with pytest.raises(BadCheckpointError, match="no encoder checkpoint"):
        checkpoint_files(tmp_path / "empty", "encoder")
    twin = tmp_path / "twins"
    checkpoint_factory(twin / "a", preset="dense-tiny", level=2, seed=1)
    checkpoint_factory(twin / "b", preset="dense-tiny", level=2, seed=2)
    with pytest.raises(BadCheckpointError, match="two checkpoints claim level 2"):
        DecoderLadder.load(twin)
