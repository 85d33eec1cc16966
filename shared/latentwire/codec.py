"""The codec: uint8 digits in, compact codes out, and back — one half on each side of the wire.

A checkpoint's ``codec`` entry names its latent codec (``latent_codecs``), which turns latents
into payloads and back; this module runs the networks around it and frames each payload in the
code format the codec's kind speaks. The ``factorized`` kind (the ladder format, v7; the
``conditional`` kind of the shipped levels differs in how its tables are picked)::

    sender (Compressor)                               receiver (Decompressor)
    uint8 (N, 28, 28) ÷ 255                           code: level byte, keyed check, payload
      │ Encoder                                         │ bitstream.unpack_ladder (length ≤ bound,
      ▼                                                 ▼   BLAKE2 check keyed by model id)
    latent (N, K) float ──round──► integers           arithmetic.decode with the same tables
      │ − offsets, clamped: symbols                     │ + offsets
      ▼                                                 ▼
    arithmetic.encode with the frozen integer        integers (N, K) ──► Decoder ──► uint8
    CDF tables ──► payload ──► pack_ladder ─── wire ──►

The ``uniform8`` kind (the tutorial's ``seed`` network; format v1): the non-negative latent
(N, C, 7, 7) is quantized to 8 bits on [0, latent_max] and framed with a CRC and the model id.

Both halves run their network in float32 through ``inference.InvariantRunner``, so an image
encodes to the same latent and a code decodes to the same pixels alone or in any batch (the
services batch concurrent requests together). The integers are exact everywhere: symbols come
from integer tables only, identical on every machine (docs/bitstream.md says what is promised).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple, TypeVar

import numpy as np
import torch

from latentwire import bitstream
from latentwire.checkpoint import CheckpointMeta, LoadedDecoder, LoadedEncoder, load_decoder, load_encoder
from latentwire.errors import BadCheckpointError, BadCodeError, BadImageError, LatentwireError
from latentwire.inference import InvariantRunner
from latentwire.latent_codecs import LatentCodec, codec_for
from latentwire.nets import Decoder, Encoder

__all__ = ["Compressor", "Decompressor", "ModelHalf", "latents_in_order"]

IMAGE_SHAPE = (28, 28)


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


Opened = TypeVar("Opened")


def latents_in_order(
    codes: Sequence[bytes],
    open_code: Callable[[bytes], Opened],
    latents_each: Callable[[list[Opened]], Sequence[np.ndarray | LatentwireError]],
) -> tuple[list[Opened], list[np.ndarray]]:
    """Open every code, decode the latents of all of them together; or raise the first bad code's
    error, as if each were decoded in turn (in a batch, named by its index).

    The codes after one that does not open are not decoded: the ones before it may hold an
    earlier bad one, so only those are.
    """
    opened: list[Opened] = []
    culprit: tuple[int, LatentwireError] | None = None
    for index, code in enumerate(codes):
        try:
            opened.append(open_code(code))
        except LatentwireError as exc:
            culprit = (index, exc)
            break
    rows: list[np.ndarray] = []
    for index, row in enumerate(latents_each(opened)):
        if isinstance(row, LatentwireError):
            culprit = (index, row)
            break
        rows.append(row)
    if culprit is not None:
        index, error = culprit
        if len(codes) > 1:  # name the culprit in a batch
            raise error.prefixed(f"code {index}: ") from error
        raise error
    return opened, rows


class ModelHalf:
    """What both halves share: metadata, the latent codec, and the code format it speaks."""

    def __init__(self, meta: CheckpointMeta, tables: dict[str, torch.Tensor]) -> None:
        self.meta = meta
        self.latent_codec: LatentCodec = codec_for(
            meta.codec, tables, meta.build_preset().latent_shape, model_id=meta.model_id
        )
        framing = _FRAMINGS.get(self.latent_codec.format_version)
        if framing is None:
            raise BadCheckpointError(
                f"codec {self.latent_codec.kind!r} speaks code format v{self.latent_codec.format_version}, "
                "which this build cannot frame"
            )
        self._framing = framing
        if self.latent_codec.needs_level and not 1 <= meta.level <= bitstream.MAX_LEVEL:
            raise BadCheckpointError(f"an entropy-coded checkpoint needs a level 1…{bitstream.MAX_LEVEL}")
        if meta.retired_model_ids and self.format_version != bitstream.LADDER_FORMAT:
            raise BadCheckpointError("only a ladder-format checkpoint can retire the models of its level")
        for retired in meta.retired_model_ids:
            try:
                bitstream.model_id_bytes(retired)
            except ValueError as exc:
                raise BadCheckpointError(f"retired model ids: {exc}") from None
        if meta.model_id in meta.retired_model_ids:
            raise BadCheckpointError(f"model {meta.model_id} lists itself among the models it retired")

    @property
    def model_id(self) -> str:
        return self.meta.model_id

    @property
    def retired_model_ids(self) -> tuple[str, ...]:
        """The models this one's level served before it (ladder format), whose codes are refused."""
        return tuple(self.meta.retired_model_ids)

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return self.meta.build_preset().latent_shape

    @property
    def format_version(self) -> int:
        return self.latent_codec.format_version

    @property
    def max_payload(self) -> int:
        """The longest payload a code of this model can carry."""
        return self.latent_codec.max_payload

    @property
    def level(self) -> int:
        return self.meta.level

    @property
    def denoise(self) -> bool:
        return self.meta.denoise


class _Framing(NamedTuple):
    """How one code format wraps a model's payloads (bitstream.py has the byte layouts)."""

    frame: Callable[[ModelHalf, bytes], bytes]  # payload → standalone code
    unframe: Callable[[ModelHalf, bytes], bytes]  # code → payload, checked against the model
    pack_batch: Callable[[ModelHalf, Sequence[bytes]], bytes]  # payloads → one batch container


def _frame_v1(model: ModelHalf, payload: bytes) -> bytes:
    return bitstream.pack_v1(model_id=model.model_id, payload=payload)


def _frame_ladder(model: ModelHalf, payload: bytes) -> bytes:
    return bitstream.pack_ladder(
        level=model.level, denoise=model.denoise, model_id=model.model_id, payload=payload
    )


_FRAMINGS = {
    bitstream.FORMAT_V1: _Framing(
        frame=_frame_v1,
        unframe=lambda model, code: bitstream.unpack_v1(code, model_id=model.model_id),
        # container v1 lists whole codes
        pack_batch=lambda model, payloads: bitstream.pack_batch([_frame_v1(model, p) for p in payloads]),
    ),
    bitstream.LADDER_FORMAT: _Framing(
        frame=_frame_ladder,
        unframe=lambda model, code: bitstream.unpack_ladder(
            code,
            model_id=model.model_id,
            max_payload=model.max_payload,
            retired_model_ids=model.retired_model_ids,
        ),
        # the ladder format's container shares one header between the codes
        pack_batch=lambda model, payloads: bitstream.pack_ladder_batch(
            level=model.level, denoise=model.denoise, model_id=model.model_id, payloads=list(payloads)
        ),
    ),
}


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

    def payloads(self, images: np.ndarray) -> list[bytes]:
        """The coded latents without framing (what a batch container stores per code)."""
        return self.code_latents(self.latents(images))

    def code_latents(self, latents: torch.Tensor) -> list[bytes]:
        """Latents from ``latents`` → their payloads (``payloads`` without the encoder)."""
        payloads = self.latent_codec.compress(latents)
        if self.retired_model_ids:
            payloads = [self._unretired(p, z) for p, z in zip(payloads, latents.numpy(), strict=True)]
        return payloads

    def _clashes(self, payload: bytes) -> bool:
        return bitstream.retired_check_clash(
            level=self.level,
            denoise=self.denoise,
            payload=payload,
            model_id=self.model_id,
            retired_model_ids=self.retired_model_ids,
        )

    def _unretired(self, payload: bytes, latent: np.ndarray) -> bytes:
        """``payload``, or where its code would pass a retired model's check too (1 in 512 per
        retired model) the code of the nearest latent that does not: one value rounded the other
        way, the value nearest its rounding boundary first. The receiver refuses a code that passes
        a retired check as that model's (``bitstream.unpack_ladder``)."""
        if not self._clashes(payload):
            return payload
        flat = latent.reshape(-1).astype(np.float64)
        offsets = flat - np.rint(flat)
        for index in np.argsort(-np.abs(offsets), kind="stable").tolist():
            nudged = flat.copy()
            nudged[index] = np.rint(flat[index]) + (1.0 if offsets[index] >= 0 else -1.0)
            (candidate,) = self.latent_codec.compress(nudged.reshape(1, *latent.shape).astype(np.float32))
            if not self._clashes(candidate):
                return candidate
        raise BadCheckpointError("every nearby code of this latent passes a retired model's check")

    @property
    def framing_bytes(self) -> int:
        """What ``frame`` adds to a payload: a code is ``len(payload) + framing_bytes`` bytes."""
        return bitstream.FRAMING_BYTES[self.format_version]

    def frame(self, payload: bytes) -> bytes:
        """A payload of this model → its standalone code."""
        return self._framing.frame(self, payload)

    def compress(self, images: np.ndarray) -> list[bytes]:
        """uint8 (N, 28, 28) (or one (28, 28) image) → N codes."""
        return [self.frame(p) for p in self.payloads(images)]

    def compress_batch(self, images: np.ndarray) -> bytes:
        """N images → one batch container (ladder codes share a header; v1 lists whole codes)."""
        return self.pack_batch(self.payloads(images))

    def pack_batch(self, payloads: Sequence[bytes]) -> bytes:
        """Payloads of this model → one batch container."""
        return self._framing.pack_batch(self, payloads)


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
        return self._framing.unframe(self, code)

    def latent_values(self, payload: bytes) -> np.ndarray:
        """One payload → its latent as float32, (C·H·W,) or (K,); raises BadCodeError if malformed."""
        return self.latent_codec.decompress(payload)

    def latent_values_many(self, payloads: Sequence[bytes]) -> list[np.ndarray | BadCodeError]:
        """Payloads → each one's ``latent_values``, or its BadCodeError; decoded together where the
        codec can (``LatentCodec.decompress_many``), with the results of decoding each alone."""
        return self.latent_codec.decompress_many(payloads)

    def decompress(self, codes: Sequence[bytes]) -> np.ndarray:
        """N codes → uint8 (N, 28, 28). Any bad code raises before anything is decoded.

        The error is the first bad code's, as if each were decoded in turn, and in a batch it
        names that code's index. The payloads are decoded together (``latent_values_many``).
        """
        _, rows = latents_in_order(codes, self.payload, self.latent_values_many)
        if not rows:
            return np.zeros((0, *IMAGE_SHAPE), np.uint8)
        return self.decode_latents(np.stack(rows))

    def decode_latents(self, latents: np.ndarray) -> np.ndarray:
        """(N, latent size) float → uint8 (N, 28, 28) (batch-invariant)."""
        batch = torch.from_numpy(np.ascontiguousarray(latents, dtype=np.float32))
        return self._run(batch.reshape(len(latents), *self._shape)).squeeze(1).numpy()
