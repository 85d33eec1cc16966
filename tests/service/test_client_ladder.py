"""Quality, denoise, preprocess and scale from the Python clients and the CLI to real services on
the shipped ladder (levels 1–6, q3-denoise, q0): every code must be the one the ladder makes in
process, and its first byte must carry the level asked for.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import latentwire
from latentwire import bitstream
from latentwire.ladder import EncoderLadder
from latentwire.preprocess import load_digit
from latentwire_client import AsyncLatentwireClient, LatentwireClient, ServiceError
from latentwire_client.cli import main
from tests.service.conftest import Service

SAMPLES = Path(latentwire.__file__).parent / "samples"
DIGIT = SAMPLES / "mnist-test-0.png"  # 28×28
PHOTO = SAMPLES / "digit-on-paper.png"  # a photo: normalized by the sender


@pytest.fixture(scope="module")
def ladder() -> EncoderLadder:
    return EncoderLadder.load()


@pytest.fixture
def client(shipped: tuple[Service, Service]) -> Iterator[LatentwireClient]:
    with LatentwireClient(sender_url=shipped[0].url, receiver_url=shipped[1].url) as client:
        yield client


def urls(shipped: tuple[Service, Service]) -> list[str]:
    return ["--sender-url", shipped[0].url, "--receiver-url", shipped[1].url]


def expected(ladder: EncoderLadder, path: Path, quality: int | None, denoise: bool = False) -> bytes:
    (code,) = ladder.select(quality=quality, denoise=denoise).compress(load_digit(path.read_bytes()))
    return code


def level_of(code: bytes) -> tuple[int, bool]:
    """(level, denoise) as the code's first byte says: bit 4 denoise, bits 3..1 the level."""
    header = bitstream.read_header(code)
    assert header.version == code[0] >> 5 and header.version != bitstream.FORMAT_V1
    return header.level, header.denoise


@pytest.mark.parametrize(
    ("quality", "denoise", "header"),
    [
        (1, False, (1, False)),
        (2, False, (2, False)),
        (5, False, (5, False)),
        (6, False, (6, False)),
        (3, True, (3, True)),
        (None, True, (3, True)),  # the denoiser's own level
        (None, False, (4, False)),  # the sender's default
    ],
)
def test_quality_and_denoise_reach_the_sender(
    client: LatentwireClient,
    ladder: EncoderLadder,
    quality: int | None,
    denoise: bool,
    header: tuple[int, bool],
) -> None:
    code = client.encode(PHOTO.read_bytes(), quality=quality, denoise=denoise)
    assert level_of(code) == header
    assert code == expected(ladder, PHOTO, quality, denoise)


def test_quality_0_is_the_tutorial_model(client: LatentwireClient, ladder: EncoderLadder) -> None:
    code = client.encode(DIGIT.read_bytes(), quality=0)
    assert code[0] >> 5 == bitstream.FORMAT_V1 and len(code) == 1583 and code == expected(ladder, DIGIT, 0)


def test_batch_options_reach_the_sender(client: LatentwireClient, ladder: EncoderLadder) -> None:
    codes = client.encode_batch([DIGIT.read_bytes(), PHOTO.read_bytes()], quality=2)
    assert codes == [expected(ladder, DIGIT, 2), expected(ladder, PHOTO, 2)]
    assert client.encode_batch([DIGIT.read_bytes()], quality=3, denoise=True) == [
        expected(ladder, DIGIT, 3, denoise=True)
    ]


def test_preprocess_false_sends_the_pixels_as_they_are(
    client: LatentwireClient, ladder: EncoderLadder
) -> None:
    pixels = np.asarray(Image.open(DIGIT).convert("L"))
    assert (
        client.encode(DIGIT.read_bytes(), quality=2, preprocess=False)
        == ladder.select(quality=2).compress(pixels)[0]
    )
    with pytest.raises(ServiceError) as caught:
        client.encode(PHOTO.read_bytes(), preprocess=False)
    assert (caught.value.status, caught.value.error) == (422, "bad_image")


def test_a_level_the_ladder_lacks_is_a_service_error(client: LatentwireClient) -> None:
    with pytest.raises(ServiceError) as caught:
        client.encode(DIGIT.read_bytes(), quality=2, denoise=True)
    assert (caught.value.status, caught.value.error) == (400, "bad_request")
    assert "3" in caught.value.hint + caught.value.detail  # names the level it offers


def test_scale_changes_the_png_size(client: LatentwireClient) -> None:
    code = client.encode(DIGIT.read_bytes(), quality=1)
    for scale, side in ((1, 28), (4, 112), (16, 448)):
        with Image.open(io.BytesIO(client.decode(code, scale=scale))) as image:
            assert image.size == (side, side) and image.mode == "L"


@pytest.mark.anyio
async def test_the_async_client_sends_the_options(
    shipped: tuple[Service, Service], ladder: EncoderLadder
) -> None:
    async with AsyncLatentwireClient(sender_url=shipped[0].url, receiver_url=shipped[1].url) as client:
        assert await client.encode(PHOTO.read_bytes(), quality=6) == expected(ladder, PHOTO, 6)
        assert await client.encode_batch([PHOTO.read_bytes()], denoise=True) == [
            expected(ladder, PHOTO, None, denoise=True)
        ]
        code = await client.encode(DIGIT.read_bytes(), quality=2)
        with Image.open(io.BytesIO(await client.decode(code, scale=3))) as image:
            assert image.size == (84, 84)


# --------------------------------------------------------------------------- the CLI


def test_cli_encode_quality_and_denoise(
    tmp_path: Path, shipped: tuple[Service, Service], ladder: EncoderLadder
) -> None:
    plain, clean = tmp_path / "plain", tmp_path / "clean"
    assert main([*urls(shipped), "encode", str(PHOTO), "--quality", "2", "-o", str(plain)]) == 0
    assert (plain / "digit-on-paper.lw").read_bytes() == expected(ladder, PHOTO, 2)
    assert main([*urls(shipped), "encode", str(PHOTO), "--denoise", "-o", str(clean)]) == 0
    assert level_of((clean / "digit-on-paper.lw").read_bytes()) == (3, True)


def test_cli_encode_no_preprocess(
    tmp_path: Path, shipped: tuple[Service, Service], ladder: EncoderLadder
) -> None:
    """The options may also follow the subcommand (--sender-url …, -q)."""
    assert (
        main(["encode", str(DIGIT), "--no-preprocess", "-q", "1", *urls(shipped), "-o", str(tmp_path)]) == 0
    )
    pixels = np.asarray(Image.open(DIGIT).convert("L"))
    assert (tmp_path / "mnist-test-0.lw").read_bytes() == ladder.select(quality=1).compress(pixels)[0]


def test_cli_decode_scale(tmp_path: Path, shipped: tuple[Service, Service], ladder: EncoderLadder) -> None:
    code_file = tmp_path / "seven.lw"
    code_file.write_bytes(expected(ladder, DIGIT, 3))
    assert main([*urls(shipped), "decode", str(code_file), "--scale", "4", "-o", str(tmp_path / "out")]) == 0
    with Image.open(tmp_path / "out" / "seven.png") as image:
        assert image.format == "PNG" and image.size == (112, 112)


def test_cli_roundtrip_quality(
    shipped: tuple[Service, Service], ladder: EncoderLadder, capsys: pytest.CaptureFixture[str]
) -> None:
    sizes = {}
    for quality in (1, 5, 6):
        assert main([*urls(shipped), "roundtrip", str(PHOTO), "--quality", str(quality)]) == 0
        match = re.search(
            r"digit-on-paper\.png: (\d+) bytes \(784 pixels\), PSNR ([\d.]+) dB", capsys.readouterr().out
        )
        assert match
        sizes[quality] = int(match[1])
        assert sizes[quality] == len(expected(ladder, PHOTO, quality))
    assert sizes[1] < sizes[5] < sizes[6]


def test_cli_refusal_prints_the_service_error(
    tmp_path: Path, shipped: tuple[Service, Service], capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main([*urls(shipped), "encode", str(DIGIT), "--quality", "2", "--denoise", "-o", str(tmp_path)]) == 1
    )
    captured = capsys.readouterr()
    assert "latentwire: the service refused: 400 bad_request:" in captured.err, captured.err
    assert "Traceback" not in captured.err and not list(tmp_path.iterdir())
