"""What stays exact with float32, batch-invariant inference (latentwire.inference).

* on this machine an image encodes to the same latent, and a code decodes to the same pixels,
  alone or in any batch, in any order, with 1 or 2 torch threads;
* the code for a given (integer) latent is fixed bytes on every machine (golden bytes);
* v1 codes made by the float64 codec of v0.1 still decode, to the digits it gave (±1 grey level),
  and today's seed model makes the same bytes; its v2 codes are refused (format v2 is no longer
  read);
* v3 codes of the ladder before issue 10, v4, v5 and v6 codes of the ladders before its second,
  third and fourth rounds are refused (formats v3 … v6 are no longer read);
* the shipped ladder's v7 codes of fixed digits and their pixels do not move (golden_codes_v7.json).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from latentwire import bitstream
from latentwire.data import MnistSplit
from latentwire.errors import RetiredModelError, UnsupportedVersionError
from latentwire.inference import BLOCK, InvariantRunner
from latentwire.ladder import DecoderLadder, EncoderLadder

GOLDEN = Path(__file__).with_name("golden_codes_v0.1.json")
GOLDEN_V3 = Path(__file__).with_name("golden_codes_v3.json")
GOLDEN_V4 = Path(__file__).with_name("golden_codes_v4.json")
GOLDEN_V5 = Path(__file__).with_name("golden_codes_v5.json")
GOLDEN_V6 = Path(__file__).with_name("golden_codes_v6.json")
GOLDEN_V7 = Path(__file__).with_name("golden_codes_v7.json")
# Level 2 was retrained within format v7 (issue 10's fifth, sixth and eighth rounds): the golden
# codes of each of its models, oldest first, and the model that made them. The last is served;
# every model before it is retired, its codes refused by name.
LEVEL_2_MODELS = (
    (GOLDEN_V7, "4c32fce8ca165702"),
    (Path(__file__).with_name("golden_codes_v7_q2.json"), "dadfd1e87452b8ff"),
    (Path(__file__).with_name("golden_codes_v7_q2_round6.json"), "044e45d65f51a609"),
    (Path(__file__).with_name("golden_codes_v7_q2_round8.json"), "a74ab325bd7af82d"),
)
GOLDEN_V7_Q2, _ = LEVEL_2_MODELS[-1]
# Level 6 was added within format v7 (issue 10's tenth round) and retrained in its eleventh.
LEVEL_6_MODELS = (
    (Path(__file__).with_name("golden_codes_v7_q6.json"), "15b62012b5540c10"),
    (Path(__file__).with_name("golden_codes_v7_q6_round11.json"), "9d99d9f9fc45c96c"),
)
GOLDEN_V7_Q6, _ = LEVEL_6_MODELS[-1]
# (golden codes, retired model, its level): every model a level served before its last
RETIRED = [(golden, model, 2) for golden, model in LEVEL_2_MODELS[:-1]] + [
    (golden, model, 6) for golden, model in LEVEL_6_MODELS[:-1]
]
# The code of the latent (k·7 mod 5) − 2, k = 0 … K − 1 (K: 32 latent values, 98 at q6), at each
# level of the ladder of issue 10's fourth round (format v7; level 2 as retrained in its eighth,
# level 6 as added in its tenth and retrained in its eleventh).
GOLDEN_FIXED_LATENT_CODES = {
    "q1": "e32a41f3c2a63b23c68509bf85212133adb13761e1b04ae1272f38defc79fad67767fc762e7a0d42732498",
    "q2": "e4af5cba996ab3b122222b1a379cc4f734686a8088",
    "q3": "e64e612929858db7691bb1078121500bdf8894f65167",
    "q4": "e81c75242cc98b03f449907156d5e495025abcb683",
    "q5": "ebde671ebf363c519548a7a40fd29dd099cf68c558",
    "q3-denoise": "f6ec3709274c5a978cc69e5e59db569994",
    "q6": (
        "ecdd007efe360734c7f4d6d82d74e7a65a34510586b53f5058372cf60b0d445323c43eb34fe4476a9541d9cf"
        "6465a10f39eb9b166df3a4f829e0b60842d4bbd29b28"
    ),
}
SPLITS = [1, 2, 3, 5, 7, BLOCK - 1, BLOCK, BLOCK + 1, 37, 64]


@pytest.fixture(scope="module")
def ladders() -> tuple[EncoderLadder, DecoderLadder]:
    return EncoderLadder.load(), DecoderLadder.load()


@pytest.fixture(params=[1, 2], ids=["1-thread", "2-threads"])
def torch_threads(request: pytest.FixtureRequest) -> Iterator[int]:
    before = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(before)


def random_splits(n: int, rng: np.random.Generator) -> list[slice]:
    """Cut range(n) into consecutive batches of mixed sizes."""
    cuts, start = [], 0
    while start < n:
        size = int(rng.choice(SPLITS))
        cuts.append(slice(start, min(n, start + size)))
        start += size
    return cuts


@pytest.mark.parametrize("quality", [0, 1, 3, 5, 6])
def test_an_image_encodes_to_the_same_latent_in_any_batch(
    quality: int, torch_threads: int, ladders: tuple[EncoderLadder, DecoderLadder], mnist_test: MnistSplit
) -> None:
    compressor = ladders[0].select(quality=quality)
    images = mnist_test.images[:200]
    whole = compressor.latents(images)
    rng = np.random.default_rng(quality)
    order = rng.permutation(len(images))  # other neighbours, other positions in the batch
    shuffled = torch.cat([compressor.latents(images[order][cut]) for cut in random_splits(200, rng)])
    assert torch.equal(shuffled[np.argsort(order)], whole)
    alone = torch.cat([compressor.latents(images[i : i + 1]) for i in range(0, 200, 9)])
    assert torch.equal(alone, whole[::9])


@pytest.mark.parametrize("quality", [0, 1, 3, 5, 6])
def test_a_code_decodes_to_the_same_pixels_in_any_batch(
    quality: int, torch_threads: int, ladders: tuple[EncoderLadder, DecoderLadder], mnist_test: MnistSplit
) -> None:
    sender, receiver = ladders
    codes = sender.select(quality=quality).compress(mnist_test.images[:200])
    whole, _ = receiver.decompress(codes)
    rng = np.random.default_rng(quality + 10)
    order = rng.permutation(len(codes))
    mixed = [codes[i] for i in order]
    pieces = [receiver.decompress(mixed[cut])[0] for cut in random_splits(len(codes), rng)]
    assert np.array_equal(np.concatenate(pieces)[np.argsort(order)], whole)
    alone = np.concatenate([receiver.decompress([codes[i]])[0] for i in range(0, 200, 9)])
    assert np.array_equal(alone, whole[::9])


def test_codes_of_several_levels_in_one_batch_decode_as_alone(
    ladders: tuple[EncoderLadder, DecoderLadder], mnist_test: MnistSplit
) -> None:
    sender, receiver = ladders
    images = mnist_test.images[:30]
    codes = [sender.select(quality=1 + i % 6).compress(images[i])[0] for i in range(30)]
    together, models = receiver.decompress(codes)
    assert [m.level for m in models] == [1 + i % 6 for i in range(30)]
    for i in range(0, 30, 7):
        assert np.array_equal(receiver.decompress([codes[i]])[0][0], together[i])


@pytest.mark.parametrize("level", sorted(GOLDEN_FIXED_LATENT_CODES))
def test_the_code_for_a_given_latent_is_fixed_bytes(
    ladders: tuple[EncoderLadder, DecoderLadder], level: str
) -> None:
    """Integers in, bytes out: no floating point between a rounded latent and its code.

    Each shipped level's integer entropy model and tables turn one fixed latent into frozen bytes
    (recompute one only when that level's checkpoint is replaced), and decode them back.
    """
    quality, _, variant = level.removeprefix("q").partition("-")
    model = ladders[0].select(quality=int(quality), denoise=variant == "denoise")
    latent = np.array([[(k * 7) % 5 - 2 for k in range(model.latent_shape[0])]], dtype=np.float32)
    (payload,) = model.latent_codec.compress(latent)
    assert np.array_equal(model.latent_codec.decompress(payload), latent[0])
    code = model.frame(payload)
    header = bitstream.CodeHeader(version=bitstream.LADDER_FORMAT, level=model.level, denoise=model.denoise)
    assert bitstream.read_header(code) == header
    assert code.hex() == GOLDEN_FIXED_LATENT_CODES[level]
    assert (code[0] & 1) << 8 | code[1] == check9(model.model_id, code[0], code[2:])


def decoded_png(text: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(text))))


def check9(model_id: str, first: int, payload: bytes) -> int:
    """docs/bitstream.md's 9-bit check of a ladder code, from hashlib alone (byte 0's bit 0 cleared)."""
    key = bytes.fromhex(model_id)
    digest = hashlib.blake2b(
        bytes([first & 0xFE]) + payload, key=key, digest_size=2, person=b"latentwire code"
    )
    return int.from_bytes(digest.digest(), "big") >> 7


def test_v1_codes_from_the_float64_codec_still_decode_and_v2_codes_are_refused(
    ladders: tuple[EncoderLadder, DecoderLadder],
) -> None:
    golden = json.loads(GOLDEN.read_text())["codes"]
    v1 = [entry for entry in golden if bytes.fromhex(entry["code"])[0] >> 5 == 1]
    v2 = [entry for entry in golden if bytes.fromhex(entry["code"])[0] >> 5 == 2]
    assert len(v1) == 2 and len(v1) + len(v2) == len(golden)
    pixels, models = ladders[1].decompress([bytes.fromhex(entry["code"]) for entry in v1])
    for entry, image, model in zip(v1, pixels, models, strict=True):
        assert (model.level, model.denoise) == (entry["quality"], entry["denoise"]) == (0, False)
        before = decoded_png(entry["decoded_png"])
        assert np.abs(image.astype(int) - before.astype(int)).max() <= 1, entry["quality"]
    for entry in v2:
        with pytest.raises(UnsupportedVersionError, match="code format v2 is no longer read") as caught:
            ladders[1].decompress([bytes.fromhex(entry["code"])])
        assert "relabelled codes" in caught.value.message and "re-encode" in caught.value.message
        assert caught.value.code == "unsupported_version"
        assert "versions 1 and 7" in caught.value.hint
    assert {(e["quality"], e["denoise"]) for e in golden} == {
        (m.level, m.denoise)
        for m in ladders[1].levels()
        if m.level != 6  # level 6 came later
    }


def test_today_encodes_the_golden_digits_to_the_same_codes(
    ladders: tuple[EncoderLadder, DecoderLadder], mnist_test: MnistSplit
) -> None:
    """The shipped ladder's codes of fixed digits, and the digits they decode to, do not move.

    v0.1's v1 codes are the same bytes today; the v7 codes are those the ladder made when it
    landed (golden_codes_v7.json; levels 2's and 6's since they were last retrained:
    LEVEL_2_MODELS, LEVEL_6_MODELS),
    decoded to the same pixels (±1 grey level: float32 networks
    may differ in the last bits on another machine).
    """
    v1 = [e for e in json.loads(GOLDEN.read_text())["codes"] if bytes.fromhex(e["code"])[0] >> 5 == 1]
    retrained = json.loads(GOLDEN_V7_Q2.read_text())["codes"]
    added = json.loads(GOLDEN_V7_Q6.read_text())["codes"]
    ladder = [e for e in json.loads(GOLDEN_V7.read_text())["codes"] if e["quality"] != 2] + retrained + added
    assert len(v1) == 2 and {(e["quality"], e["denoise"]) for e in ladder} == {
        (m.level, m.denoise) for m in ladders[1].levels() if m.format_version == bitstream.LADDER_FORMAT
    }
    for entry in v1 + ladder:
        where = (entry["quality"], entry["denoise"], entry["mnist_test_index"])
        sender = ladders[0].select(quality=entry["quality"], denoise=entry["denoise"])
        (code,) = sender.compress(mnist_test.images[entry["mnist_test_index"]])
        assert code.hex() == entry["code"], where
    codes = [bytes.fromhex(entry["code"]) for entry in ladder]
    pixels, models = ladders[1].decompress(codes)
    for entry, image, model, code in zip(ladder, pixels, models, codes, strict=True):
        where = (entry["quality"], entry["denoise"], entry["mnist_test_index"])
        assert (model.level, model.denoise) == (entry["quality"], entry["denoise"]), where
        assert (code[0] & 1) << 8 | code[1] == check9(model.model_id, code[0], code[2:]), where
        before = decoded_png(entry["decoded_png"])
        assert np.abs(image.astype(int) - before.astype(int)).max() <= 1, where


@pytest.mark.parametrize(("golden", "retired", "level"), RETIRED, ids=[model for _, model, _ in RETIRED])
def test_codes_of_a_retired_model_are_refused_by_name(
    ladders: tuple[EncoderLadder, DecoderLadder], golden: Path, retired: str, level: int
) -> None:
    """Real v7 codes of a level's models before it was retrained: every one refused, naming its model."""
    entries = [e for e in json.loads(golden.read_text())["codes"] if e["quality"] == level]
    codes = [bytes.fromhex(e["code"]) for e in entries]
    assert len(codes) == 8 and set(ladders[1].by_level[level, False].retired_model_ids) == {
        model for _, model, at in RETIRED if at == level
    }
    for code in codes:
        assert (code[0] & 1) << 8 | code[1] == check9(retired, code[0], code[2:])  # they were its codes
        with pytest.raises(
            RetiredModelError, match=f"made by model {retired}, which quality level {level}"
        ) as caught:
            ladders[1].decompress([code])
        assert caught.value.code == "retired_model" and "re-encode" in caught.value.hint


@pytest.mark.parametrize(("level", "models"), [(2, LEVEL_2_MODELS[1:]), (6, LEVEL_6_MODELS)])
def test_the_served_model_is_the_last_one_golden_codes_were_made_with(
    ladders: tuple[EncoderLadder, DecoderLadder], level: int, models: tuple[tuple[Path, str], ...]
) -> None:
    for golden, model in models:
        assert {e["model_id"] for e in json.loads(golden.read_text())["codes"]} == {model}
    assert ladders[1].by_level[level, False].model_id == models[-1][1]


@pytest.mark.parametrize(
    ("golden", "version", "count"),
    [(GOLDEN_V3, 3, 24), (GOLDEN_V4, 4, 48), (GOLDEN_V5, 5, 48), (GOLDEN_V6, 6, 48)],
)
def test_codes_of_retired_ladders_are_refused(
    ladders: tuple[EncoderLadder, DecoderLadder], golden: Path, version: int, count: int
) -> None:
    """Real v3 … v6 codes of retired ladders: refused with the reason and the fix, alone or batched."""
    entries = json.loads(golden.read_text())["codes"]
    assert len(entries) == count and all(bytes.fromhex(e["code"])[0] >> 5 == version for e in entries)
    codes = [bytes.fromhex(entry["code"]) for entry in entries]
    for code in codes:
        with pytest.raises(
            UnsupportedVersionError, match=f"code format v{version} is no longer read"
        ) as caught:
            ladders[1].decompress([code])
        assert "re-encode" in caught.value.message and caught.value.code == "unsupported_version"
        assert "versions 1 and 7" in caught.value.hint
    with pytest.raises(UnsupportedVersionError, match=rf"^code 0: code format v{version} is no longer read"):
        ladders[1].decompress(codes)


def test_pixels_are_the_rounded_sigmoid_away_from_the_boundaries() -> None:
    x = torch.linspace(-12, 12, 20001)
    runner = InvariantRunner(nn.Sequential(nn.Identity(), nn.Sigmoid()), pixels=True)
    got = runner(x).to(torch.int64)
    exact = torch.sigmoid(x.double()) * 255
    clear = (exact - exact.floor() - 0.5).abs() > 1e-4  # not on a rounding boundary
    assert torch.equal(got[clear], torch.round(exact[clear]).to(torch.int64))
    assert got.min() == 0 and got.max() == 255


def test_pixels_need_a_final_sigmoid() -> None:
    with pytest.raises(ValueError, match="Sigmoid"):
        InvariantRunner(nn.Sequential(nn.Linear(2, 2)), pixels=True)


def test_blocks_match_a_plain_forward_closely() -> None:
    torch.manual_seed(0)
    layer = nn.Linear(50, 30)
    x = torch.randn(45, 50)
    runner = InvariantRunner(nn.Sequential(layer))
    assert runner(x).shape == (45, 30)
    assert torch.allclose(runner(x), layer(x), atol=1e-5)


@pytest.mark.parametrize(("kernel", "padding", "channels"), [(5, 2, 32), (3, 1, 8)])
def test_a_one_channel_transposed_convolution_runs_as_a_pixel_shuffle(
    kernel: int, padding: int, channels: int
) -> None:
    torch.manual_seed(kernel)
    layer = nn.ConvTranspose2d(channels, 1, kernel, stride=2, padding=padding, output_padding=1)
    runner = InvariantRunner(nn.Sequential(layer))
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in runner.layers)  # rewritten
    x = torch.randn(20, channels, 9, 9)
    with torch.inference_mode():
        assert torch.allclose(runner(x), layer(x), atol=1e-5)
    wide = nn.ConvTranspose2d(channels, 4, kernel, stride=2, padding=padding, output_padding=1)
    assert InvariantRunner(nn.Sequential(wide)).layers[0] is wide  # kept: oneDNN is fast there
