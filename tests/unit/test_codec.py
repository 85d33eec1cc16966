"""The codec: compress/decompress round trips for both kinds, refusals, determinism."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from latentwire import bitstream
from latentwire.codec import Compressor, Decompressor
from latentwire.errors import (
    BadCheckpointError,
    BadCodeError,
    BadImageError,
    ForeignModelError,
    RetiredModelError,
)
from latentwire.latent_codecs import FactorizedCodec, max_payload_bytes
from latentwire.preprocess import png_bytes

RNG = np.random.default_rng(0)
IMAGES = RNG.integers(0, 256, (6, 28, 28), dtype=np.uint8)


def test_v1_round_trip_shapes_and_sizes(tiny_checkpoint: Path) -> None:
    compressor, decompressor = (
        Compressor.from_checkpoint(tiny_checkpoint),
        Decompressor.from_checkpoint(tiny_checkpoint),
    )
    codes = compressor.compress(IMAGES)
    assert len(codes) == 6 and {len(c) for c in codes} == {15 + 8 * 7 * 7}
    assert compressor.format_version == 1 and bitstream.read_header(codes[0]).version == 1
    out = decompressor.decompress(codes)
    assert out.shape == (6, 28, 28) and out.dtype == np.uint8
    assert np.array_equal(decompressor.decompress(codes[2:3])[0], out[2])
    assert compressor.compress(IMAGES[0]) == codes[:1]  # a single (28, 28) image works too
    assert decompressor.decompress([]).shape == (0, 28, 28)


def test_ladder_round_trip(tmp_path: Path, checkpoint_factory: Callable[..., Path]) -> None:
    root = checkpoint_factory(tmp_path / "q2", preset="dense-tiny", level=2)
    compressor, decompressor = Compressor.from_checkpoint(root), Decompressor.from_checkpoint(root)
    codes = compressor.compress(IMAGES)
    assert compressor.format_version == bitstream.LADDER_FORMAT
    assert all(
        bitstream.read_header(c) == bitstream.CodeHeader(version=bitstream.LADDER_FORMAT, level=2)
        for c in codes
    )
    out = decompressor.decompress(codes)
    assert out.shape == (6, 28, 28) and out.dtype == np.uint8
    # the receiver sees exactly the integers the sender coded
    codec = compressor.latent_codec
    assert isinstance(codec, FactorizedCodec)
    symbols = codec.symbols(compressor.latents(IMAGES))
    expected = decompressor.decode_latents(codec.cdf_tables.values(symbols).astype(np.float64))
    assert np.array_equal(out, expected)
    container = compressor.compress_batch(IMAGES)
    assert len(container) == 7 + sum(len(c) - 2 + 1 for c in codes)
    assert all(len(c) - 2 <= decompressor.max_payload for c in codes)


def test_decoding_is_deterministic_across_batches_and_processes(
    tmp_path: Path, checkpoint_factory: Callable[..., Path]
) -> None:
    root = checkpoint_factory(tmp_path / "q2", preset="dense-tiny", level=2)
    codes = Compressor.from_checkpoint(root).compress(IMAGES)
    decompressor = Decompressor.from_checkpoint(root)
    together = decompressor.decompress(codes)
    alone = np.stack([decompressor.decompress([c])[0] for c in codes])
    halves = np.concatenate([decompressor.decompress(codes[:4]), decompressor.decompress(codes[4:])])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        one_thread = decompressor.decompress(codes)
    finally:
        torch.set_num_threads(threads)
    pngs = [png_bytes(image) for image in together]
    for other in (alone, halves, one_thread):
        assert [png_bytes(image) for image in other] == pngs  # byte-identical PNGs
    script = (
        "import sys, numpy as np; from latentwire.codec import Decompressor;"
        "codes = [bytes.fromhex(h) for h in sys.argv[2:]];"
        "sys.stdout.write(Decompressor.from_checkpoint(sys.argv[1]).decompress(codes).tobytes().hex())"
    )
    other_process = subprocess.run(
        [sys.executable, "-c", script, str(root), *(c.hex() for c in codes)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert bytes.fromhex(other_process.stdout) == together.tobytes()


def test_bad_images_are_refused(tiny_checkpoint: Path) -> None:
    compressor = Compressor.from_checkpoint(tiny_checkpoint)
    with pytest.raises(BadImageError):
        compressor.compress(np.zeros((2, 28, 28), np.float32))
    with pytest.raises(BadImageError):
        compressor.compress(np.zeros((2, 27, 28), np.uint8))


def test_foreign_and_corrupted_codes_are_refused(tiny_checkpoint: Path, other_checkpoint: Path) -> None:
    code = Compressor.from_checkpoint(other_checkpoint).compress(np.zeros((28, 28), np.uint8))[0]
    decompressor = Decompressor.from_checkpoint(tiny_checkpoint)
    with pytest.raises(ForeignModelError):
        decompressor.decompress([code])
    good = Compressor.from_checkpoint(tiny_checkpoint).compress(np.zeros((28, 28), np.uint8))[0]
    corrupted = bytearray(good)
    corrupted[20] ^= 0x10
    with pytest.raises(BadCodeError, match=r"code 1: .*checksum"):  # a batch names the culprit
        decompressor.decompress([good, bytes(corrupted)])


def test_v2_foreign_model_is_refused(tmp_path: Path, checkpoint_factory: Callable[..., Path]) -> None:
    mine = checkpoint_factory(tmp_path / "a", preset="dense-tiny", level=2, seed=1)
    theirs = checkpoint_factory(tmp_path / "b", preset="dense-tiny", level=2, seed=2)
    codes = Compressor.from_checkpoint(theirs).compress(IMAGES)
    with pytest.raises(BadCodeError, match="made by a model this receiver does not serve"):
        Decompressor.from_checkpoint(mine).decompress(codes[:1])


def _latents(count: int, seed: int) -> torch.Tensor:
    """Varied latents for dense-tiny (an untrained encoder maps every digit to about the same)."""
    return torch.from_numpy(np.random.default_rng(seed).normal(0, 4, (count, 8)).astype(np.float32))


def test_a_retrained_level_refuses_its_predecessors_codes_by_name(
    tmp_path: Path, checkpoint_factory: Callable[..., Path]
) -> None:
    old = Compressor.from_checkpoint(
        checkpoint_factory(tmp_path / "old", preset="dense-tiny", level=2, seed=1)
    )
    new = checkpoint_factory(
        tmp_path / "new", preset="dense-tiny", level=2, seed=2, retired_model_ids=[old.model_id]
    )
    receiver = Decompressor.from_checkpoint(new)
    old_codes = [old.frame(p) for p in old.code_latents(_latents(2000, 0))]
    assert len(set(old_codes)) > 1900
    # every one of them, not 511 in 512: a predecessor's code never decodes into a wrong digit
    for code in old_codes:
        with pytest.raises(RetiredModelError, match=f"model {old.model_id}, which quality level 2 served"):
            receiver.payload(code)
    sender = Compressor.from_checkpoint(new)
    new_codes = [sender.frame(p) for p in sender.code_latents(_latents(2000, 0))]
    assert all(receiver.payload(code) == code[2:] for code in new_codes)


def test_the_sender_never_makes_a_code_that_passes_a_retired_check(
    tmp_path: Path, checkpoint_factory: Callable[..., Path]
) -> None:
    retired = ["00000000000000a1", "00000000000000b2"]
    root = checkpoint_factory(
        tmp_path / "q2", preset="dense-tiny", level=2, seed=3, retired_model_ids=retired
    )
    compressor, decompressor = Compressor.from_checkpoint(root), Decompressor.from_checkpoint(root)
    latents = _latents(3000, 1)
    plain = compressor.latent_codec.compress(latents)  # what the codec alone would send

    def clashes(payload: bytes) -> bool:
        return bitstream.retired_check_clash(
            level=2, denoise=False, payload=payload, model_id=compressor.model_id, retired_model_ids=retired
        )

    clashing = [i for i, p in enumerate(plain) if clashes(p)]
    assert len(clashing) >= 3  # 2 in 512 of 3,000: about 12
    payloads = compressor.code_latents(latents)
    assert not any(clashes(p) for p in payloads)
    assert [i for i, (a, b) in enumerate(zip(plain, payloads, strict=True)) if a != b] == clashing
    with pytest.raises(RetiredModelError):
        decompressor.payload(compressor.frame(plain[clashing[0]]))
    # the replacement is the code of a neighbouring latent: one value rounded the other way
    for i in clashing:
        original = decompressor.latent_values(plain[i])
        nudged = decompressor.latent_values(payloads[i])
        assert np.abs(nudged - original).sum() == 1
        assert decompressor.payload(compressor.frame(payloads[i])) == payloads[i]


def test_retired_model_ids_are_checked_at_load(
    tmp_path: Path, checkpoint_factory: Callable[..., Path]
) -> None:
    from latentwire.checkpoint import load_decoder, save_checkpoint

    bad = checkpoint_factory(tmp_path / "bad", preset="dense-tiny", retired_model_ids=["not-an-id"])
    with pytest.raises(BadCheckpointError, match="retired model ids: a model id is 16 lower-case hex"):
        Decompressor.from_checkpoint(bad)
    v1 = load_decoder(checkpoint_factory(tmp_path / "v1", preset="tiny"))
    save_checkpoint(
        tmp_path / "v1-retiring",
        encoder=Compressor.from_checkpoint(tmp_path / "v1").encoder,
        decoder=v1.module,
        codec=v1.meta.codec,
        retired_model_ids=["00000000000000a1"],
    )
    with pytest.raises(BadCheckpointError, match="only a ladder-format checkpoint"):
        Decompressor.from_checkpoint(tmp_path / "v1-retiring")


def test_unknown_codec_kind_is_refused(tmp_path: Path, checkpoint_factory: Callable[..., Path]) -> None:
    from latentwire.checkpoint import load_decoder, save_checkpoint

    loaded = load_decoder(checkpoint_factory(tmp_path / "x"))
    enc_loaded = Compressor.from_checkpoint(tmp_path / "x").encoder.float()
    save_checkpoint(tmp_path / "y", encoder=enc_loaded, decoder=loaded.module, codec={"kind": "zstd"})
    message = "unknown codec {'kind': 'zstd'}; this build knows uniform8, factorized and conditional"
    with pytest.raises(BadCheckpointError, match=re.escape(message)):
        Decompressor.from_checkpoint(tmp_path / "y")


def test_shipped_bounds_are_below_the_coders(tmp_path: Path, checkpoint_factory: Callable[..., Path]) -> None:
    root = checkpoint_factory(tmp_path / "q2", preset="dense-tiny", level=2)
    decompressor = Decompressor.from_checkpoint(root)
    codec = decompressor.latent_codec
    assert isinstance(codec, FactorizedCodec)
    assert decompressor.max_payload == max_payload_bytes(codec.cdf_tables.rows())
    with pytest.raises(BadCodeError, match="longer than any code of this model"):
        decompressor.latent_values(bytes(decompressor.max_payload + 1))
    v1 = Decompressor.from_checkpoint(checkpoint_factory(tmp_path / "v1"))
    assert v1.max_payload == 8 * 7 * 7


def test_framing_bytes_is_what_frame_adds(
    tiny_checkpoint: Path, tmp_path: Path, checkpoint_factory: Callable[..., Path]
) -> None:
    v6 = Compressor.from_checkpoint(checkpoint_factory(tmp_path / "v6", preset="dense-tiny", level=2))
    for model in (Compressor.from_checkpoint(tiny_checkpoint), v6):
        for payload in model.payloads(IMAGES):
            assert len(model.frame(payload)) == len(payload) + model.framing_bytes
