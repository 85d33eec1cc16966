"""Latent codecs: how one image's latent becomes payload bytes and back, one class per kind.

As CompressAI's ``latent_codecs``: each way of coding a latent is a ``LatentCodec`` subclass,
registered by the ``kind`` its checkpoints name. A kind owns its parameters (a frozen
``Params`` dataclass, stored as the checkpoint's JSON ``codec`` entry), its tensors (stored as
``tables.*`` in both halves) and the code format version that frames its payloads. Nothing
outside a kind's class branches on which kind it is: adding a kind is adding a class::

    checkpoint metadata  {"kind": "factorized", "precision": 16}   tensors  tables.cdfs, …
                │                                                        │
                └──────────── codec_for(codec, tables, latent_shape) ────┘
                                            │  the registered class for "kind"
                                            ▼
    latents (N, …) float ── compress ──► payloads ── decompress ──► latent values (one row)
                                                  └── decompress_many ──► a row or a BadCodeError each

Three kinds:

``uniform8`` (``Uniform8Codec``; code format v1): the non-negative latent of the ``seed``
network quantized to 8 bits on [0, latent_max], one byte per value.

``factorized`` (``FactorizedCodec``; the ladder code format): the rounded latent arithmetic-coded
with the frozen integer CDF tables of a factorized prior (``entropy.CdfTables``); the quality
ladder's levels 4-5 until issue 10's fourth round.

``conditional`` (``ConditionalCodec``; the ladder code format): the rounded latent coded group by
group, each value's integer mean and scale predicted from the groups before it by the frozen
integer model of a ``conditional.ConditionalPrior`` (every level of the shipped ladder).

Payloads carry no framing: ``codec.Compressor`` frames them by the kind's ``format_version``.
"""

from __future__ import annotations

import abc
import dataclasses
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple, Protocol, Self, TypeVar

import numpy as np
import torch

from latentwire import arithmetic, bitstream
from latentwire.conditional import (
    ConditionalParams,
    ConditionalPrior,
    ConditionalTables,
    IntegerConditional,
    clamp,
)
from latentwire.entropy import CdfTables
from latentwire.errors import BadCheckpointError, BadCodeError

__all__ = [
    "CodecParams",
    "ConditionalCodec",
    "ConditionalSymbols",
    "FactorizedCodec",
    "LatentCodec",
    "Uniform8Codec",
    "codec_for",
    "codec_kinds",
    "max_payload_bytes",
    "register_codec",
]

_LEVELS = 255  # uniform8: the largest 8-bit value


class CodecParams(Protocol):
    """A kind's parameters: a frozen dataclass that is the checkpoint's ``codec`` entry."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON ``codec`` entry, ``kind`` included (it enters the model id: keep it stable)."""
        ...


class LatentCodec(abc.ABC):
    """One way of coding latents: a registered kind, its parameters, its tables, its format.

    Subclasses set the class variables, define ``Params`` and implement ``from_checkpoint``,
    ``compress`` and ``decompress`` (and may override ``decompress_many``, a batch of payloads
    at once); ``register_codec`` makes checkpoints of the kind loadable.
    """

    kind: ClassVar[str]  # the checkpoint's codec["kind"]
    format_version: ClassVar[int]  # the bitstream format that frames its payloads
    needs_level: ClassVar[bool] = False  # ladder codes name their model by quality level, not id

    params: CodecParams
    max_payload: int  # the longest payload a code of this codec can carry, checked before decoding

    @classmethod
    @abc.abstractmethod
    def from_checkpoint(
        cls, codec: Mapping[str, Any], tables: Mapping[str, torch.Tensor], latent_shape: tuple[int, ...]
    ) -> Self:
        """Rebuild from a checkpoint's ``codec`` entry and tensors; ValueError/KeyError/TypeError if bad."""

    def tables(self) -> dict[str, torch.Tensor]:
        """The tensors a checkpoint stores for this codec (``save_checkpoint(tables=…)``)."""
        return {}

    @abc.abstractmethod
    def compress(self, latents: np.ndarray | torch.Tensor) -> list[bytes]:
        """Latents (N, …) float → N payloads, without framing."""

    @abc.abstractmethod
    def decompress(self, payload: bytes) -> np.ndarray:
        """One payload → its latent values, float32, flattened; BadCodeError if malformed."""

    def decompress_many(self, payloads: Sequence[bytes]) -> list[np.ndarray | BadCodeError]:
        """Payloads → each one's ``decompress`` result, or the BadCodeError it raises.

        Exactly what decoding each payload alone gives, values and refusals; a bad payload
        fails alone. This default decodes them one by one; a kind whose decoding has a fixed
        cost per step overrides it to decode the batch together (``ConditionalCodec``).
        """
        results: list[np.ndarray | BadCodeError] = []
        for payload in payloads:
            try:
                results.append(self.decompress(payload))
            except BadCodeError as exc:
                results.append(exc)
        return results

    def information_bits(self, latents: np.ndarray | torch.Tensor) -> np.ndarray | None:
        """(N,) information content in bits of each latent under the codec's entropy model.

        None for a kind without one (its payload length is all there is to measure).
        """
        return None


# -----------------------------------------------------------------------------
# registry

Codec = TypeVar("Codec", bound=LatentCodec)
_KINDS: dict[str, type[LatentCodec]] = {}


def register_codec(cls: type[Codec]) -> type[Codec]:
    """Class decorator: make checkpoints whose codec names ``cls.kind`` loadable (kinds are unique)."""
    if cls.kind in _KINDS:
        raise ValueError(f"codec kind {cls.kind!r} is already registered")
    _KINDS[cls.kind] = cls
    return cls


def codec_kinds() -> tuple[str, ...]:
    """The registered kinds, in registration order."""
    return tuple(_KINDS)


def codec_for(
    codec: Mapping[str, Any],
    tables: Mapping[str, torch.Tensor],
    latent_shape: tuple[int, ...],
    *,
    model_id: str,
) -> LatentCodec:
    """The latent codec a checkpoint describes; BadCheckpointError for an unknown kind or bad parameters."""
    kind = codec.get("kind") if isinstance(codec, Mapping) else None
    cls = _KINDS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        kinds = codec_kinds()
        known = " and ".join([", ".join(kinds[:-1]), kinds[-1]] if len(kinds) > 1 else kinds)
        raise BadCheckpointError(f"unknown codec {codec!r}; this build knows {known}")
    try:
        return cls.from_checkpoint(codec, tables, tuple(latent_shape))
    except (KeyError, ValueError, TypeError) as exc:
        raise BadCheckpointError(f"bad codec parameters in checkpoint {model_id}: {exc}") from exc


def _check_fields(codec: Mapping[str, Any], params: type[Any]) -> None:
    """Refuse fields a kind does not know: a newer variant must not decode as an older one."""
    unknown = set(codec) - {"kind"} - {f.name for f in dataclasses.fields(params)}
    if unknown:
        raise ValueError(f"unknown {codec['kind']} parameters {sorted(unknown)}")


def _as_tensor(latents: np.ndarray | torch.Tensor) -> torch.Tensor:
    return latents if isinstance(latents, torch.Tensor) else torch.from_numpy(np.asarray(latents))


def _as_array(latents: np.ndarray | torch.Tensor) -> np.ndarray:
    return latents.detach().cpu().numpy() if isinstance(latents, torch.Tensor) else np.asarray(latents)


# -----------------------------------------------------------------------------
# uniform8


@register_codec
class Uniform8Codec(LatentCodec):
    """8-bit uniform quantization of a non-negative latent on the fixed range [0, latent_max].

    >>> codec = Uniform8Codec(Uniform8Codec.Params(latent_max=2.0), latent_shape=(2,))
    >>> codec.compress(np.array([[1.0, 5.0]], np.float32))
    [b'\\x80\\xff']
    """

    kind = "uniform8"
    format_version = bitstream.FORMAT_V1

    @dataclass(frozen=True)
    class Params:
        latent_max: float  # the top of the range; larger values clamp to it

        def __post_init__(self) -> None:
            object.__setattr__(self, "latent_max", float(self.latent_max))  # JSON 2.0, not 2: the model id
            if not self.latent_max > 0:
                raise ValueError(f"latent_max must be positive, got {self.latent_max}")

        def to_dict(self) -> dict[str, Any]:
            return {"kind": Uniform8Codec.kind, "latent_max": self.latent_max}

        @classmethod
        def from_dict(cls, codec: Mapping[str, Any]) -> Self:
            _check_fields(codec, cls)
            return cls(latent_max=float(codec["latent_max"]))

    params: Params

    def __init__(self, params: Params, latent_shape: tuple[int, ...]) -> None:
        self.params = params
        self.latent_shape = tuple(latent_shape)
        self.max_payload = math.prod(self.latent_shape)  # one byte per value, always exactly this many

    @classmethod
    def fit(cls, latents: torch.Tensor) -> Self:
        """Choose the range from latents (N, C, H, W) of training images: their maximum."""
        return cls(cls.Params(max(float(latents.max()), 1e-6)), tuple(latents.shape[1:]))

    @classmethod
    def from_checkpoint(
        cls, codec: Mapping[str, Any], tables: Mapping[str, torch.Tensor], latent_shape: tuple[int, ...]
    ) -> Self:
        return cls(cls.Params.from_dict(codec), latent_shape)

    def compress(self, latents: np.ndarray | torch.Tensor) -> list[bytes]:
        z = _as_tensor(latents)  # (N, C, H, W)
        scaled = (z / self.params.latent_max).clamp(0.0, 1.0) * _LEVELS
        quantized = torch.round(scaled).to(torch.uint8).reshape(len(z), -1).numpy()  # (N, C·H·W)
        return [row.tobytes() for row in quantized]

    def decompress(self, payload: bytes) -> np.ndarray:
        if len(payload) != self.max_payload:
            raise BadCodeError(f"payload is {len(payload)} bytes, this model expects {self.max_payload}")
        row = torch.from_numpy(np.frombuffer(payload, dtype=np.uint8).astype(np.float32))
        values: np.ndarray = (row * (self.params.latent_max / _LEVELS)).numpy()
        return values


# -----------------------------------------------------------------------------
# factorized


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


def _refuse_overlong(payload: bytes, max_payload: int) -> None:
    """BadCodeError for a payload longer than any code of its model, before a decoder spends time on it."""
    if len(payload) > max_payload:
        raise BadCodeError(
            f"the payload is {len(payload)} bytes, longer than any code of this model "
            f"(at most {max_payload}): padded or corrupted"
        )


@register_codec
class FactorizedCodec(LatentCodec):
    """The rounded latent (N, K), arithmetic-coded with one frozen integer CDF table per dimension.

    The tables come from ``FactorizedPrior.freeze()`` (CompressAI's ``update()``): integers only,
    so every machine codes and decodes the same symbols.
    """

    kind = "factorized"
    format_version = bitstream.LADDER_FORMAT
    needs_level = True

    @dataclass(frozen=True)
    class Params:
        precision: int = arithmetic.PRECISION  # bits of the CDFs' total

        def __post_init__(self) -> None:
            if self.precision != arithmetic.PRECISION:  # the coder's arithmetic is fixed at 16
                raise ValueError(f"precision {self.precision!r}: this build codes at {arithmetic.PRECISION}")

        def to_dict(self) -> dict[str, Any]:
            return {"kind": FactorizedCodec.kind, "precision": self.precision}

        @classmethod
        def from_dict(cls, codec: Mapping[str, Any]) -> Self:
            _check_fields(codec, cls)
            return cls(precision=codec["precision"])

    params: Params

    def __init__(self, cdf_tables: CdfTables, params: Params | None = None) -> None:
        self.params = self.Params() if params is None else params
        self.cdf_tables = cdf_tables
        self._prepared = arithmetic.prepare(cdf_tables.rows())  # laid out once: ~2x faster coding
        self.max_payload = max_payload_bytes(self._prepared.cdfs)

    @classmethod
    def from_checkpoint(
        cls, codec: Mapping[str, Any], tables: Mapping[str, torch.Tensor], latent_shape: tuple[int, ...]
    ) -> Self:
        params = cls.Params.from_dict(codec)
        cdf_tables = CdfTables.from_tensors(dict(tables))
        if (len(cdf_tables.offsets),) != latent_shape:
            raise ValueError(
                f"tables for {len(cdf_tables.offsets)} dimensions, but the latent is {latent_shape}"
            )
        return cls(cdf_tables, params)

    def tables(self) -> dict[str, torch.Tensor]:
        return self.cdf_tables.to_tensors()

    def symbols(self, latents: np.ndarray | torch.Tensor) -> np.ndarray:
        """Latents (N, K) float → (N, K) symbol indices: rounded, clamped into each dimension's support."""
        z = _as_array(latents)
        return self.cdf_tables.symbols(z.reshape(len(z), -1))

    def compress(self, latents: np.ndarray | torch.Tensor) -> list[bytes]:
        return [arithmetic.encode(row.tolist(), self._prepared) for row in self.symbols(latents)]

    def decompress(self, payload: bytes) -> np.ndarray:
        _refuse_overlong(payload, self.max_payload)
        symbols = np.asarray(arithmetic.decode(payload, self._prepared), dtype=np.int64)
        values: np.ndarray = self.cdf_tables.values(symbols).astype(np.float32)
        return values

    def information_bits(self, latents: np.ndarray | torch.Tensor) -> np.ndarray:
        cdfs = self._prepared.cdfs
        return np.array([arithmetic.information_bits(row.tolist(), cdfs) for row in self.symbols(latents)])


# -----------------------------------------------------------------------------
# conditional


# From this many codes ``arithmetic.encode_many`` beats coding them one by one (one thread, 98
# values a code: 15 against 25 µs a code at 16, 13 against 26 at 256; 72 against 25 for one).
_MANY_CODES = 8


class ConditionalSymbols(NamedTuple):
    """What a batch of latents codes to under a conditional model (each (N, K) int64)."""

    values: np.ndarray  # the integer latent the codes carry (rounded; clamped where it had to be)
    symbols: np.ndarray  # residual ŷ − μ̂ + R: the coded symbol of each position
    indices: np.ndarray  # the CDF row (scale and mean fraction) each position is coded with


@register_codec
class ConditionalCodec(LatentCodec):
    """The rounded latent (N, K), coded group by group with a conditional integer model.

    The model (``conditional.IntegerConditional``, from ``ConditionalPrior.freeze()``) predicts
    each value's integer mean μ̂ and CDF row (a scale and the mean's fraction) from the groups
    before it; the residual ŷ − μ̂ is arithmetic-coded with that row. Decoding predicts group g
    from the groups already decoded (``arithmetic.StreamDecoder``), so both sides see the same
    integers::

        group 0 ──► μ̂, scale (biases only) ──► decode n₀ residuals ──► values of group 0
        group 1 ──► μ̂, scale from group 0 ───► decode n₁ residuals ──► values of group 1  …

    ``decompress_many`` decodes a batch of payloads this way together: one model pass per group
    over the rows of all of them (G passes in all, not G per payload), the same results.

    A latent value is first rounded and clamped to ±V; a residual beyond ±R is clamped to ±R, and
    the later groups are predicted from the value that code carries, so both sides agree. The
    decoder accepts exactly the payloads ``compress`` can give: the arithmetic coder's canonical
    bytes, decoding to values within ±V.
    """

    kind = "conditional"
    format_version = bitstream.LADDER_FORMAT
    needs_level = True
    Params = ConditionalParams

    params: ConditionalParams

    def __init__(self, tables: ConditionalTables, params: ConditionalParams, dims: int) -> None:
        self.params = params
        self.model = IntegerConditional(params, tables, dims)  # validates the tables
        self.dims = dims
        self._cdfs = np.asarray(tables.cdfs, np.int64)  # (rows, 2R + 2)
        self._rows = tuple(tuple(row) for row in tables.cdfs.tolist())  # the CDFs, for the coder
        self._freqs = np.diff(tables.cdfs, axis=1)  # (rows, 2R + 1)
        # the worst case: every position coded with the row holding the smallest frequency
        worst = self._rows[int(self._freqs.min(axis=1).argmin())]
        self.max_payload = max_payload_bytes([worst] * dims)

    @classmethod
    def from_checkpoint(
        cls, codec: Mapping[str, Any], tables: Mapping[str, torch.Tensor], latent_shape: tuple[int, ...]
    ) -> Self:
        if len(latent_shape) != 1:
            raise ValueError(f"a conditional model codes a latent vector, not {latent_shape}")
        return cls(
            ConditionalTables.from_tensors(tables), ConditionalParams.from_dict(codec), latent_shape[0]
        )

    @classmethod
    def from_prior(cls, prior: ConditionalPrior) -> Self:
        """The frozen integer codec of a trained prior (CompressAI's ``update()``)."""
        return cls(prior.freeze(), prior.params, prior.dims)

    def tables(self) -> dict[str, torch.Tensor]:
        return self.model.tables.to_tensors()

    def symbols(self, latents: np.ndarray | torch.Tensor) -> ConditionalSymbols:
        """Latents (N, K) float → the integers their codes carry, group by group over the batch."""
        z = _as_array(latents)
        v, r = self.params.value_max, self.params.support
        values = np.clip(np.rint(z.reshape(len(z), -1)), -v, v).astype(np.int64)  # (N, K)
        symbols = np.empty_like(values)
        indices = np.empty_like(values)
        bounds = self.model.bounds
        for g in range(self.params.groups):
            start, end = int(bounds[g]), int(bounds[g + 1])
            means, indices[:, start:end] = self.model.predict(values, g)
            residuals = clamp(values[:, start:end] - means, -r, r)
            values[:, start:end] = means + residuals  # what the decoder will see
            symbols[:, start:end] = residuals + r
        return ConditionalSymbols(values, symbols, indices)

    def compress(self, latents: np.ndarray | torch.Tensor) -> list[bytes]:
        coded = self.symbols(latents)
        if len(coded.symbols) >= _MANY_CODES:
            cum = self._cdfs[coded.indices, coded.symbols]
            return arithmetic.encode_many(cum, self._freqs[coded.indices, coded.symbols])
        rows = self._rows
        return [
            arithmetic.encode(symbols, [rows[i] for i in indices])
            for symbols, indices in zip(coded.symbols.tolist(), coded.indices.tolist(), strict=True)
        ]

    def decompress(self, payload: bytes) -> np.ndarray:
        decoded = self.decompress_many([payload])[0]
        if isinstance(decoded, BadCodeError):
            raise decoded
        return decoded

    def decompress_many(self, payloads: Sequence[bytes]) -> list[np.ndarray | BadCodeError]:
        """Decode the payloads together, group by group: one integer-model pass per group.

        Each payload has its own ``arithmetic.StreamDecoder``; for group g, one
        ``IntegerConditional.predict`` over the rows of the payloads still being decoded gives
        each its means and CDF rows, and each decoder decodes its group-g residuals with its own
        rows. The model is exact integer arithmetic, row by row, so every payload decodes (or is
        refused, at the same step with the same message) exactly as it would alone; a refused
        payload leaves the batch and the others go on.
        """
        errors: dict[int, BadCodeError] = {}  # by index: the payloads refused
        decoders: dict[int, arithmetic.StreamDecoder] = {}  # by index: the payloads still decoding
        for index, payload in enumerate(payloads):
            try:
                _refuse_overlong(payload, self.max_payload)
                decoders[index] = arithmetic.StreamDecoder(payload, positions=self.dims)
            except BadCodeError as exc:
                errors[index] = exc
        values = np.zeros((len(payloads), self.dims), np.int64)  # a refused payload's row is left as is
        live = np.fromiter(decoders, np.int64, len(decoders))  # the rows still decoding, in order
        rows, r, v, bounds = self._rows, self.params.support, self.params.value_max, self.model.bounds
        for g in range(self.params.groups):
            if not len(live):
                break
            start, end = int(bounds[g]), int(bounds[g + 1])
            every = len(live) == len(payloads)  # no refusal yet: views, not copies
            means, indices = self.model.predict(values if every else values[live, :start], g)
            symbols = [
                decoders[index].decode([rows[i] for i in row])
                for index, row in zip(live.tolist(), indices.tolist(), strict=True)
            ]
            decoded = means + np.array(symbols, np.int64).reshape(means.shape) - r  # (n, end − start)
            if every:
                values[:, start:end] = decoded
            else:
                values[live, start:end] = decoded
            beyond = (np.abs(decoded) > v).any(axis=1)  # the encoder clamps to ±V
            if beyond.any():
                for index in live[beyond].tolist():
                    errors[index] = BadCodeError(
                        f"the payload decodes to a latent value beyond ±{v}, "
                        "which no code of this model carries: corrupted"
                    )
                    del decoders[index]
                live = live[~beyond]
        for index, decoder in decoders.items():
            try:
                decoder.finish()
            except BadCodeError as exc:
                errors[index] = exc
        return [errors[i] if i in errors else values[i].astype(np.float32) for i in range(len(payloads))]

    def information_bits(self, latents: np.ndarray | torch.Tensor) -> np.ndarray:
        coded = self.symbols(latents)
        freqs = self._freqs[coded.indices, coded.symbols]  # (N, K)
        bits: np.ndarray = (arithmetic.PRECISION - np.log2(freqs)).sum(axis=1)
        return bits
