"""The ``latentwire`` command-line client against the real sender and receiver processes."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from latentwire.codec import Compressor
from latentwire.preprocess import load_digit
from latentwire_client.cli import build_parser, main
from tests.service.conftest import Service, free_port


@pytest.fixture
def digit_file(tmp_path: Path, digit_pngs: list[bytes]) -> Path:
    path = tmp_path / "seven.png"
    path.write_bytes(digit_pngs[0])
    return path


def urls(sender: Service, receiver: Service) -> list[str]:
    return ["--sender-url", sender.url, "--receiver-url", receiver.url]


def test_encode_then_decode_files(
    tmp_path: Path, digit_file: Path, sender: Service, receiver: Service, compressor: Compressor
) -> None:
    codes = tmp_path / "codes"
    assert main([*urls(sender, receiver), "encode", str(digit_file), "-o", str(codes)]) == 0
    code_file = codes / "seven.lw"
    assert [p.name for p in codes.iterdir()] == ["seven.lw"]
    assert [code_file.read_bytes()] == compressor.compress(load_digit(digit_file.read_bytes()))

    out = tmp_path / "out"
    assert main([*urls(sender, receiver), "decode", str(code_file), "-o", str(out), "--scale", "2"]) == 0
    with Image.open(out / "seven.png") as image:
        assert image.format == "PNG" and image.size == (56, 56) and image.mode == "L"


def test_roundtrip_prints_size_and_psnr(
    digit_file: Path,
    sender: Service,
    receiver: Service,
    compressor: Compressor,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main([*urls(sender, receiver), "roundtrip", str(digit_file)]) == 0
    out = capsys.readouterr().out
    match = re.search(r"seven\.png: (\d+) bytes \(784 pixels\), PSNR (-?[\d.]+|inf) dB", out)
    assert match, out
    (code,) = compressor.compress(load_digit(digit_file.read_bytes()))
    assert int(match[1]) == len(code)
    assert np.isfinite(float(match[2])) or match[2] == "inf"


def test_service_refusal_is_exit_1(
    tmp_path: Path, sender: Service, receiver: Service, capsys: pytest.CaptureFixture[str]
) -> None:
    garbage = tmp_path / "garbage.lw"
    garbage.write_bytes(b"\xe0not a code at all")  # format version 7: refused by any receiver
    assert main([*urls(sender, receiver), "decode", str(garbage), "-o", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "refused" in err and "422" in err and "unsupported_version" in err, err
    assert not (tmp_path / "out" / "garbage.png").exists()


def test_missing_input_file_is_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["encode", str(tmp_path / "absent.png"), "-o", str(tmp_path)]) == 1
    assert "absent.png" in capsys.readouterr().err


def test_unreachable_service_is_exit_1(
    digit_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    nobody = f"http://127.0.0.1:{free_port()}"
    argv = ["--sender-url", nobody, "--receiver-url", nobody, "--timeout", "5", "--retries", "0"]
    assert main([*argv, "encode", str(digit_file), "-o", str(tmp_path / "codes")]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"latentwire: cannot reach the service: unreachable: POST {nobody}/encode"), err
    assert "Traceback" not in err and "LATENTWIRE_SENDER_URL" in err


def test_every_option_is_documented(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    (subcommands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert set(subcommands.choices) == {"encode", "decode", "roundtrip"}
    for name, command in [("latentwire", parser), *subcommands.choices.items()]:
        text = command.format_help()
        for action in command._actions:
            assert action.help, f"{name}: {action.option_strings or action.dest} has no help"
            assert all(option in text for option in action.option_strings), (name, action.option_strings)
    for argv, options in [
        (["--help"], ["--sender-url", "--receiver-url", "--timeout", "--retries", "encode", "roundtrip"]),
        (["encode", "--help"], ["--quality", "--denoise", "--no-preprocess", "--out", "--retries"]),
        (["decode", "--help"], ["--scale", "--out", "--sender-url"]),
        (["roundtrip", "--help"], ["--quality", "--denoise", "--no-preprocess", "--out"]),
    ]:
        with pytest.raises(SystemExit) as exited:
            main(argv)
        assert exited.value.code == 0
        out = capsys.readouterr().out
        assert all(option in out for option in options), (argv, out)


@pytest.mark.parametrize(
    "argv",
    [
        ["decode", "x.lw", "--scale", "0"],
        ["encode", "x.png", "--quality", "-1"],
        ["encode", "x.png", "--quality", "two"],
        ["--retries", "-1", "encode", "x.png"],
    ],
)
def test_bad_arguments_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2 and "usage: latentwire" in capsys.readouterr().err


def test_scale_over_the_receivers_limit_is_refused(
    tmp_path: Path, digit_file: Path, sender: Service, receiver: Service, capsys: pytest.CaptureFixture[str]
) -> None:
    codes = tmp_path / "codes"
    assert main([*urls(sender, receiver), "encode", str(digit_file), "-o", str(codes)]) == 0
    argv = ["decode", str(codes / "seven.lw"), "--scale", "99", "-o", str(tmp_path / "out")]
    assert main([*urls(sender, receiver), *argv]) == 1
    err = capsys.readouterr().err
    assert err.startswith("latentwire: the service refused: 400 bad_request: scale 99"), err
