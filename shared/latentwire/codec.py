"""The codec: uint8 digits in, compact codes out, and back — one half on each side of the wire.

Two kinds of model, told apart by the ``codec`` entry of their checkpoints:

``factorized`` (the quality ladder; code format v3)::

    sender (Compressor)                               receiver (Decompressor)
    uint8 (N, 28, 28) ÷ 255                           code: level byte, keyed check, payload
      │ Encoder                                         │ bitstream.unpack_v3 (length ≤ bound,
      ▼                                                 ▼   BLAKE2 check keyed by model id)
    latent (N, K) float ──round──► integers           arithmetic.decode with the same tables
      │ − offsets, clamped: symbols                     │ + offsets
      ▼                                                 ▼
    arithmetic.encode with the frozen integer        integers (N, K) ──► Decoder ──► uint8
    CDF tables ──► payload ──► pack_v3 ─── wire ──►

``uniform8`` (the tutorial's ``seed`` network; code format v1): the non-negative latent
(N, C, 7, 7) is quantized to 8 bits on [0, latent_max] and framed with a CRC and the model id.

Both halves run their network in float32 through ``inference.InvariantRunner``, so an image
encodes to the same latent and a code decodes to the same pixels alone or in any batch (the
services batch concurrent requests together). The integers are exact everywhere: symbols come
from integer tables only, identical on every machine (docs/bitstream.md says what is promised).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from latentwire import arithmetic, bitstream
from latentwire.checkpoint import CheckpointMeta, LoadedDecoder, LoadedEncoder, load_decoder, load_encoder
from latentwire.entropy import CdfTables
from latentwire.errors import BadCheckpointError, BadCodeError, BadImageError, LatentwireError
from latentwire.inference import InvariantRunner
from latentwire.nets import Decoder, Encoder

__all__ = [
    "Compressor",
    "Decompressor",
    "ModelHalf",
    "UniformQuantizer",
    "fit_quantizer",
    "max_payload_bytes",
]

IMAGE_SHAPE = (28, 28)
_LEVELS = 255


class UniformQuantizer:
    """8-bit uniform quantization of a non-negative latent on the fixed range [0, latent_max]."""

    kind = "uniform8"

    def __init__(self, latent_max: float) -> None:
        if not latent_max > 0:
            raise ValueError(f"latent_max must be positive, got {latent_max}")
        self.latent_max = float(latent_max)

    def quantize(self, latents: torch.Tensor) -> np.ndarray:
        """(N, C, H, W) float → (N, C·H·W) uint8."""
        scaled = (latents / self.latent_max).clamp(0.0, 1.0) * _LEVELS
        return torch.round(scaled).to(torch.uint8).reshape(latents.shape[0], -1).numpy()

    def dequantize(self, payload: np.ndarray, shape: tuple[int, ...]) -> torch.Tensor:
        """(N, C·H·W) uint8 → (N, C, H, W) float32."""
        values = torch.from_numpy(payload.astype(np.float32)) * (self.latent_max / _LEVELS)
        return values.reshape(payload.shape[0], *shape)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "latent_max": self.latent_max}

    @classmethod
    def from_dict(cls, params: dict[str, Any]) -> UniformQuantizer:
        return cls(float(params["latent_max"]))


def fit_quantizer(latents: torch.Tensor) -> UniformQuantizer:
    """Choose the quantization range from latents of training images (their maximum)."""
    return UniformQuantizer(max(float(latents.max()), 1e-6))


FACTORIZED = {"kind": "factorized", "precision": arithmetic.PRECISION}


def max_payload_bytes(cdfs: Sequence[Sequence[int]]) -> int:
    """The longest payload ``arithmetic.encode`` can give with these tables, over every message.

    The coder emits the shortest bytes inside the final interval of width W (out of 2**bits,
    bits = 16 per position with more than one symbol): a multiple of 2**shift lies in every
    interval with W ≥ 2**shift, so it needs at most ⌈(bits − ⌊log2 W⌋) / 8⌉ bytes, and W is at
    least the product of each position's smallest frequency. Any longer payload is not a code
    of this model, and is refused before the arithmetic decoder runs.
    """
    bits, width = 0, 1
    for cdf in cdfs:
        if len(cdf) > 2:  # one-symbol positions code nothing
            bits += arithmetic.PRECISION
            width *= min(b - a for a, b in itertools.pairwise(cdf))
    return (bits - width.bit_length() + 8) >> 3


def check_images(images: np.ndarray) -> np.ndarray:
    if images.ndim == 2:
        images = images[None]
    if images.dtype != np.uint8 or images.shape[1:] != IMAGE_SHAPE:
        raise BadImageError(f"expected uint8 images of shape (N, 28, 28), got {images.dtype} {images.shape}")
    return images


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, 28, 28) → float32 (N, 1, 28, 28) in [0, 1]."""
    return torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)


def to_pixels(images: torch.Tensor) -> np.ndarray:
    """float (N, 1, 28, 28) in [0, 1] → uint8 (N, 28, 28), rounded."""
    return torch.round(images.clamp(0.0, 1.0) * 255.0).to(torch.uint8).squeeze(1).numpy()


def _runner(module: Encoder | Decoder, *, pixels: bool) -> InvariantRunner:
    return InvariantRunner(module.float().eval().net, pixels=pixels)


class ModelHalf:
    """What both halves share: metadata, the codec parameters, and which format they speak."""

    def __init__(self, meta: CheckpointMeta, tables: dict[str, torch.Tensor]) -> None:
        self.meta = meta
        kind = meta.codec.get("kind")
        self.quantizer: UniformQuantizer | None = None
        self.tables: CdfTables | None = None
        self.max_payload = 0  # the longest payload a code of this model can carry
        try:
            if kind == UniformQuantizer.kind:
                self.quantizer = UniformQuantizer.from_dict(meta.codec)
                self.max_payload = int(np.prod(meta.build_preset().latent_shape))
            elif kind == FACTORIZED["kind"] and meta.codec.get("precision") == arithmetic.PRECISION:
                self.tables = CdfTables.from_tensors(tables)
                self._rows = arithmetic.prepare(self.tables.rows())  # laid out once: ~2x faster coding
                self.max_payload = max_payload_bytes(self._rows.cdfs)
            else:
                raise BadCheckpointError(
                    f"unknown codec {meta.codec!r}; this build knows uniform8 and factorized"
                )
        except (KeyError, ValueError, TypeError) as exc:
            raise BadCheckpointError(f"bad codec parameters in checkpoint {meta.model_id}: {exc}") from exc
        if self.tables is not None and not 1 <= meta.level <= bitstream.MAX_LEVEL:
            raise BadCheckpointError(f"an entropy-coded checkpoint needs a level 1…{bitstream.MAX_LEVEL}")

    @property
    def model_id(self) -> str:
        return self.meta.model_id

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return self.meta.build_preset().latent_shape

    @property
    def format_version(self) -> int:
        return bitstream.FORMAT_V1 if self.quantizer is not None else bitstream.FORMAT_V3

    @property
    def level(self) -> int:
        return self.meta.level

    @property
    def denoise(self) -> bool:
        return self.meta.denoise


class Compressor(ModelHalf):
    """The sender's half: encodes digits into codes. Holds the encoder only.

    >>> compressor = Compressor.from_checkpoint("shared/latentwire/pretrained/q3")
    >>> codes = compressor.compress(np.zeros((2, 28, 28), np.uint8))
    >>> len(codes)
    2
    """

    def __init__(self, loaded: LoadedEncoder) -> None:
        super().__init__(loaded.meta, loaded.tables)
        self.encoder = loaded.module
        self._run = _runner(loaded.module, pixels=False)

    @classmethod
    def from_checkpoint(cls, path: Path | str) -> Compressor:
        return cls(load_encoder(path))

    def latents(self, images: np.ndarray) -> torch.Tensor:
        """uint8 (N, 28, 28) → the encoder's float32 latents (batch-invariant)."""
        return self._run(to_tensor(check_images(images)))

    def symbols(self, images: np.ndarray) -> np.ndarray:
        """uint8 (N, 28, 28) → (N, K) symbol indices into the coding tables (factorized models)."""
        if self.tables is None:
            raise TypeError("symbols are defined for entropy-coded models only")
        return self.tables.symbols(self.latents(images).numpy())

    def payloads(self, images: np.ndarray) -> list[bytes]:
        """The coded latents without framing (what a batch container stores per code)."""
        if self.quantizer is not None:
            return [p.tobytes() for p in self.quantizer.quantize(self.latents(images))]
        return [arithmetic.encode(row.tolist(), self._rows) for row in self.symbols(images)]

    @property
    def framing_bytes(self) -> int:
        """What ``frame`` adds to a payload: a code is ``len(payload) + framing_bytes`` bytes."""
        return bitstream.FRAMING_BYTES[self.format_version]

    def frame(self, payload: bytes) -> bytes:
        if self.quantizer is not None:
            return bitstream.pack_v1(model_id=self.model_id, payload=payload)
        return bitstream.pack_v3(
            level=self.level, denoise=self.denoise, model_id=self.model_id, payload=payload
        )

    def compress(self, images: np.ndarray) -> list[bytes]:
        """uint8 (N, 28, 28) (or one (28, 28) image) → N codes."""
        return [self.frame(p) for p in self.payloads(images)]

    def compress_batch(self, images: np.ndarray) -> bytes:
        """N images → one batch container (v3 shares a header between codes; v1 lists whole codes)."""
        return self.pack_batch(self.payloads(images))

    def pack_batch(self, payloads: Sequence[bytes]) -> bytes:
        """Payloads of this model → one batch container."""
        if self.quantizer is not None:
            return bitstream.pack_batch([self.frame(p) for p in payloads])
        return bitstream.pack_batch_v3(
            level=self.level, denoise=self.denoise, model_id=self.model_id, payloads=list(payloads)
        )


class Decompressor(ModelHalf):
    """The receiver's half: decodes codes back into digits. Holds the decoder only."""

    def __init__(self, loaded: LoadedDecoder) -> None:
        super().__init__(loaded.meta, loaded.tables)
        self.decoder = loaded.module
        self._run = _runner(loaded.module, pixels=True)
        self._shape = loaded.module.preset.latent_shape

    @classmethod
    def from_checkpoint(cls, path: Path | str) -> Decompressor:
        return cls(load_decoder(path))

    def payload(self, code: bytes) -> bytes:
        """Check a code's framing against this model; its payload."""
        if self.format_version == bitstream.FORMAT_V1:
            return bitstream.unpack_v1(code, model_id=self.model_id)
        return bitstream.unpack_v3(code, model_id=self.model_id, max_payload=self.max_payload)

    def latent_values(self, payload: bytes) -> np.ndarray:
        """One payload → its latent as float32, (C·H·W,) or (K,); raises BadCodeError if malformed."""
        if self.quantizer is not None:
            expected = int(np.prod(self._shape))
            if len(payload) != expected:
                raise BadCodeError(f"payload is {len(payload)} bytes, this model expects {expected}")
            row = np.frombuffer(payload, dtype=np.uint8)[None]
            return self.quantizer.dequantize(row, self._shape).reshape(-1).numpy()
        assert self.tables is not None
        if len(payload) > self.max_payload:  # before the decoder spends time on it
            raise BadCodeError(
                f"the payload is {len(payload)} bytes, longer than any code of this model "
                f"(at most {self.max_payload}): padded or corrupted"
            )
        symbols = np.asarray(arithmetic.decode(payload, self._rows), dtype=np.int64)
        return self.tables.values(symbols).astype(np.float32)

    def decompress(self, codes: Sequence[bytes]) -> np.ndarray:
        """N codes → uint8 (N, 28, 28). Any bad code raises before anything is decoded."""
        rows = []
        for index, code in enumerate(codes):
            try:
                rows.append(self.latent_values(self.payload(code)))
            except LatentwireError as exc:
                if len(codes) > 1:  # name the culprit in a batch
                    raise exc.prefixed(f"code {index}: ") from exc
                raise
        if not rows:
            return np.zeros((0, *IMAGE_SHAPE), np.uint8)
        return self.decode_latents(np.stack(rows))

    def decode_latents(self, latents: np.ndarray) -> np.ndarray:
        """(N, latent size) float → uint8 (N, 28, 28) (batch-invariant)."""
        batch = torch.from_numpy(np.ascontiguousarray(latents, dtype=np.float32))
        return self._run(batch.reshape(len(latents), *self._shape)).squeeze(1).numpy()
