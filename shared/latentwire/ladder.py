"""The quality ladder: several checkpoints served together, one per quality level.

A ladder is a directory of checkpoint directories (the shipped one is ``pretrained/``)::

    pretrained/
      q1/ … q6/      entropy-coded models, levels 1 (smallest codes) … 6 (best quality)
      q3-denoise/    level 3, trained to remove noise (σ 0.4) from its input
      seed/          the tutorial's network, code format v1, served as quality 0

The sender picks a model by ``(quality, denoise)``; the code says which model made it (its
level byte, or a v1 code's model id), so the receiver picks the matching decoder unasked.
A single checkpoint directory, or a single ``.safetensors`` file, is a ladder of one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Generic, TypeVar

import numpy as np

from latentwire import bitstream
from latentwire.checkpoint import DECODER_FILE, DEFAULT_CHECKPOINT_DIR, ENCODER_FILE, Half
from latentwire.codec import Compressor, Decompressor, ModelHalf, latents_in_order
from latentwire.errors import (
    BadCheckpointError,
    BadCodeError,
    BadRequestError,
    ForeignModelError,
    LatentwireError,
)

__all__ = ["DecoderLadder", "EncoderLadder", "Ladder", "checkpoint_files", "compress_each", "describe"]

# The default level when a ladder has it: the smallest shipped level at ≥ 24 dB (PSNR of the mean
# MSE over the MNIST test set). A ladder without it defaults to its middle level.
PREFERRED_QUALITY = 4
Model = TypeVar("Model", bound=ModelHalf)


def checkpoint_files(path: Path | str | None, half: Half) -> list[Path]:
    """The ``half`` files of a ladder directory, a checkpoint directory, or a single file."""
    root = Path(path) if path not in (None, "") else DEFAULT_CHECKPOINT_DIR
    name = ENCODER_FILE if half == "encoder" else DECODER_FILE
    if root.is_file():
        return [root]
    if (root / name).is_file():
        return [root / name]
    files = sorted(p / name for p in root.iterdir() if (p / name).is_file()) if root.is_dir() else []
    if not files:
        raise BadCheckpointError(f"no {half} checkpoint at {root} (nor in its subdirectories)")
    return files


class Ladder(Generic[Model]):
    """Checkpoint halves indexed by (level, denoise) and by model id."""

    def __init__(self, models: Iterable[Model]) -> None:
        self.models = list(models)
        if not self.models:
            raise BadCheckpointError("a ladder needs at least one checkpoint")
        self.by_level: dict[tuple[int, bool], Model] = {}
        self.by_id: dict[str, Model] = {}
        for model in self.models:
            key = (model.level, model.denoise)
            coded = model.format_version != bitstream.FORMAT_V1  # entropy-coded: routed by level
            if coded and key in self.by_level:
                raise BadCheckpointError(
                    f"two checkpoints claim level {model.level} (denoise={model.denoise})"
                )
            if coded or key not in self.by_level:
                self.by_level.setdefault(key, model)
            self.by_id[model.model_id] = model

    def levels(self) -> list[Model]:
        """Every model, sorted by (denoise, level)."""
        return sorted(self.models, key=lambda m: (m.denoise, m.level))

    def default_level(self) -> int:
        """PREFERRED_QUALITY when the ladder has it, else the middle of its plain quality levels."""
        plain = sorted(level for level, denoise in self.by_level if not denoise)
        if PREFERRED_QUALITY in plain:
            return PREFERRED_QUALITY
        levels = [level for level in plain if level > 0] or plain
        return levels[(len(levels) - 1) // 2] if levels else self.models[0].level

    @property
    def default(self) -> Model:
        """The model a service names in /readyz and at the top of /v1/model."""
        return self.by_level.get((self.default_level(), False), self.models[0])


class EncoderLadder(Ladder[Compressor]):
    """The sender's models, by quality level."""

    def __init__(self, models: Iterable[Compressor], *, default_quality: int | None = None) -> None:
        super().__init__(models)
        if default_quality is not None and (default_quality, False) not in self.by_level:
            plain = sorted(level for level, denoise in self.by_level if not denoise)
            raise BadCheckpointError(
                f"default quality {default_quality} is not in the ladder (levels {plain})"
            )
        self.default_quality = default_quality if default_quality is not None else self.default_level()

    @classmethod
    def load(cls, path: Path | str | None = None, *, default_quality: int | None = None) -> EncoderLadder:
        return cls(
            (Compressor.from_checkpoint(f) for f in checkpoint_files(path, "encoder")),
            default_quality=default_quality,
        )

    @property
    def default(self) -> Compressor:
        return self.select()

    def select(self, *, quality: int | None = None, denoise: bool = False) -> Compressor:
        """The model for ``quality`` (default: the ladder's default, or the denoiser's own level)."""
        if quality is None:
            if denoise:
                denoisers = sorted(level for level, d in self.by_level if d)
                quality = self.default_quality if self.default_quality in denoisers else (denoisers or [0])[0]
            else:
                quality = self.default_quality
        model = self.by_level.get((quality, denoise))
        if model is None:
            offered = sorted(level for level, d in self.by_level if d == denoise)
            kind = "denoising " if denoise else ""
            raise BadRequestError(
                f"no {kind}model at quality {quality}",
                hint=f"{kind}quality levels here: {offered}" if offered else "denoising is not offered here",
            )
        return model


class DecoderLadder(Ladder[Decompressor]):
    """The receiver's models; each code is routed to the model that made it."""

    @classmethod
    def load(cls, path: Path | str | None = None) -> DecoderLadder:
        return cls(Decompressor.from_checkpoint(f) for f in checkpoint_files(path, "decoder"))

    def open(self, code: bytes) -> tuple[Decompressor, bytes]:
        """The model a code names and its payload, the framing checked once.

        v1: length and CRC before the model id it carries is trusted; the ladder format: the level
        byte picks the model, then the payload's length is bounded by that model's longest
        payload, then the check keyed by its id is compared. Retired formats (v2 … v6) are refused
        (``UnsupportedVersionError``).
        """
        header = bitstream.read_header(code)
        if header.version == bitstream.FORMAT_V1:
            payload = bitstream.unpack_v1(code, model_id=header.model_id)
            model = self.by_id.get(header.model_id)
            if model is None or model.format_version != bitstream.FORMAT_V1:
                raise ForeignModelError(
                    f"the code was made by model {header.model_id}, which this receiver lacks"
                )
            return model, payload
        model = self.by_level.get((header.level, header.denoise))
        if model is None or model.format_version != bitstream.LADDER_FORMAT:
            kind = "denoising " if header.denoise else ""
            raise ForeignModelError(
                f"the code names {kind}quality level {header.level}, which this receiver lacks"
            )
        return model, model.payload(code)  # the ladder framing's checks, retired models included

    def route(self, code: bytes) -> Decompressor:
        """The model a code names (ladder format: by level byte; v1: by the model id it carries)."""
        return self.open(code)[0]

    def model_for(self, level: int, denoise: bool) -> Decompressor:
        """The ladder-format model of a batch container's level."""
        model = self.by_level.get((level, denoise))
        if model is None:
            raise ForeignModelError(f"the batch names quality level {level}, which this receiver lacks")
        return model

    def decompress(self, codes: Sequence[bytes]) -> tuple[np.ndarray, list[Decompressor]]:
        """N codes (of any models here) → uint8 (N, 28, 28) and the model of each.

        Every code is checked before any is decoded; a batch error names the culprit's index
        (the first bad code's error, as if each were decoded in turn).
        """
        opened, latents = latents_in_order(codes, self.open, _latents_each)
        models = [model for model, _ in opened]
        out = np.zeros((len(codes), 28, 28), np.uint8)
        for model, rows in _rows_by_model(models).items():  # one decoder pass per model
            out[rows] = model.decode_latents(np.stack([latents[i] for i in rows]))
        return out, models

    @staticmethod
    def decompress_each(opened: Sequence[tuple[Decompressor, bytes]]) -> list[np.ndarray | LatentwireError]:
        """Payloads already ``open``ed → a uint8 (28, 28) image each, or that payload's error.

        One latent decoding (``Decompressor.latent_values_many``) and one decoder pass per
        model; a bad payload fails alone (what a micro-batch of unrelated requests needs),
        unlike ``decompress``, which refuses the whole batch.
        """
        results: list[np.ndarray | LatentwireError] = list(_latents_each(opened))
        good = {index: row for index, row in enumerate(results) if isinstance(row, np.ndarray)}
        models = {index: opened[index][0] for index in good}
        for model, rows in _rows_by_model(models).items():
            pixels = model.decode_latents(np.stack([good[i] for i in rows]))
            for row, image in zip(rows, pixels, strict=True):
                results[row] = image
        return results

    def unpack_batch(self, data: bytes, *, max_codes: int) -> list[bytes]:
        return bitstream.unpack_batch(
            data,
            max_codes=max_codes,
            model_id_for=lambda level, denoise: self.model_for(level, denoise).model_id,
            retired_for=lambda level, denoise: self.model_for(level, denoise).retired_model_ids,
        )


def _latents_each(opened: Sequence[tuple[Decompressor, bytes]]) -> list[np.ndarray | BadCodeError]:
    """Each payload's latent values, or its BadCodeError: the payloads of a model decoded together."""
    results: list[np.ndarray | BadCodeError] = [_PENDING] * len(opened)
    for model, rows in _rows_by_model([model for model, _ in opened]).items():
        for row, result in zip(rows, model.latent_values_many([opened[i][1] for i in rows]), strict=True):
            results[row] = result
    return results


_PENDING = np.zeros((0,), np.float32)  # placeholder until the model's decoding fills the slot


def _rows_by_model(models: Sequence[Model] | dict[int, Model]) -> dict[Model, list[int]]:
    """Indices grouped by model (models are hashable by identity), in first-seen order."""
    pairs = models.items() if isinstance(models, dict) else enumerate(models)
    groups: dict[Model, list[int]] = {}
    for index, model in pairs:
        groups.setdefault(model, []).append(index)
    return groups


def compress_each(items: Sequence[tuple[Compressor, np.ndarray]]) -> list[bytes]:
    """(model, uint8 (28, 28) digit) pairs → each digit's payload; one encoder pass per model."""
    payloads: list[bytes] = [b""] * len(items)
    for model, rows in _rows_by_model([m for m, _ in items]).items():
        for row, payload in zip(rows, model.payloads(np.stack([items[i][1] for i in rows])), strict=True):
            payloads[row] = payload
    return payloads


def describe(ladder: Ladder[Model]) -> str:
    """One line for logs: each level with its model id."""
    return ", ".join(f"q{m.level}{'-denoise' if m.denoise else ''}={m.model_id}" for m in ladder.levels())
