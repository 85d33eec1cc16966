"""Split checkpoints: ``encoder.safetensors`` for the sender, ``decoder.safetensors`` for the receiver.

Each half is a safetensors file (no pickle) holding that half's weights, with the JSON metadata
under the header key ``latentwire``: the preset's fields (the network is rebuilt from them),
the codec parameters, training hyperparameters, data checksum, test-set metrics, library
versions and the exact command. Both halves carry the same ``model_id``, derived from the
content of both::

    model_id = sha256(preset ‖ codec ‖ encoder_digest ‖ decoder_digest)[:16 hex]

Loading is strict: the file must be the requested half, its weights must hash to the digest it
records, and every tensor must match the rebuilt network (``load_state_dict(strict=True)``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple, cast

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from latentwire.errors import BadCheckpointError
from latentwire.nets import Decoder, Encoder, Preset, preset_from_dict

__all__ = [
    "DECODER_FILE",
    "DEFAULT_CHECKPOINT_DIR",
    "ENCODER_FILE",
    "CheckpointMeta",
    "Half",
    "LoadedDecoder",
    "LoadedEncoder",
    "load_decoder",
    "load_encoder",
    "read_meta",
    "resolve_checkpoint",
    "save_checkpoint",
]

Half = Literal["encoder", "decoder"]
FORMAT = "latentwire.checkpoint/1"
ENCODER_FILE = "encoder.safetensors"
DECODER_FILE = "decoder.safetensors"
DEFAULT_CHECKPOINT_DIR = Path(__file__).parent / "pretrained"  # the shipped ladder
_META_KEY = "latentwire"


@dataclass(frozen=True)
class CheckpointMeta:
    """What a checkpoint half says about itself (stored as JSON in the safetensors header)."""

    model_id: str
    half: Half
    preset: dict[str, Any]  # Preset fields
    # the latent codec's parameters, shared by both halves (latent_codecs: its Params.to_dict()),
    # e.g. {"kind": "uniform8", "latent_max": 4.2}
    codec: dict[str, Any]
    encoder_digest: str
    decoder_digest: str
    training: dict[str, Any] = field(default_factory=dict)  # resolved trainer options
    data_checksum: str = ""
    metrics: dict[str, float] = field(default_factory=dict)  # test-set metrics of the codec round trip
    versions: dict[str, str] = field(default_factory=dict)
    command: str = ""
    level: int = 0  # quality level 1..7 of an entropy-coded model (0: none, a v1 model)
    denoise: bool = False  # trained to remove noise: noisy input → clean output
    # ladder format: the model ids this level served before it was retrained, whose codes the
    # receiver refuses by name (bitstream.unpack_ladder); empty for a level never retrained
    retired_model_ids: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> CheckpointMeta:
        raw = json.loads(text)
        if not isinstance(raw, dict):
            raise ValueError("metadata is not a JSON object")
        names = {f.name for f in dataclasses.fields(cls)}
        required = {
            f.name
            for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        }
        missing = required - set(raw)
        if missing:
            raise ValueError(f"metadata lacks {sorted(missing)}")
        return cls(**{k: v for k, v in raw.items() if k in names})

    def build_preset(self) -> Preset:
        return preset_from_dict(self.preset)


class LoadedEncoder(NamedTuple):
    module: Encoder
    meta: CheckpointMeta
    tables: dict[str, torch.Tensor]  # the latent codec's tensors, e.g. {"cdfs": …}; empty for uniform8


class LoadedDecoder(NamedTuple):
    module: Decoder
    meta: CheckpointMeta
    tables: dict[str, torch.Tensor]


def _digest(state: dict[str, torch.Tensor]) -> str:
    """Hash of a state dict's names, dtypes, shapes and bytes (order-independent)."""
    h = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().to("cpu").contiguous()
        h.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        h.update(tensor.numpy().tobytes())
    return h.hexdigest()


def _model_id(preset: dict[str, Any], codec: dict[str, Any], enc: str, dec: str) -> str:
    blob = json.dumps([preset, codec, enc, dec], sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _write_atomic(tensors: dict[str, torch.Tensor], meta: CheckpointMeta, path: Path) -> None:
    # A crash mid-write must never leave a half-written checkpoint where a service would load it.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={"format": FORMAT, _META_KEY: meta.to_json()})
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; services may run as another user
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_checkpoint(
    directory: Path,
    *,
    encoder: Encoder,
    decoder: Decoder,
    codec: dict[str, Any],
    tables: dict[str, torch.Tensor] | None = None,
    level: int = 0,
    denoise: bool = False,
    training: dict[str, Any] | None = None,
    data_checksum: str = "",
    metrics: dict[str, float] | None = None,
    versions: dict[str, str] | None = None,
    command: str = "",
    retired_model_ids: Sequence[str] = (),
) -> tuple[Path, Path]:
    """Write ``encoder.safetensors`` and ``decoder.safetensors`` into ``directory``; return their paths.

    ``codec`` and ``tables`` are a latent codec's ``params.to_dict()`` and ``tables()``; the tables
    (integer coding tables) go into both halves: each side codes with the same integers.
    ``retired_model_ids`` are the models ``level`` served before this one (both halves: the
    receiver refuses their codes by name, the sender never makes a code that passes their check).
    """
    directory.mkdir(parents=True, exist_ok=True)
    # Tensor names carry their half ("encoder.net.0.weight"), so the two files share no weights.
    shared = {f"tables.{k}": v.detach().cpu().contiguous() for k, v in (tables or {}).items()}
    enc_state = {f"encoder.{k}": v.detach().cpu().contiguous() for k, v in encoder.state_dict().items()}
    dec_state = {f"decoder.{k}": v.detach().cpu().contiguous() for k, v in decoder.state_dict().items()}
    enc_state.update(shared)
    dec_state.update(shared)
    preset = encoder.preset.to_dict()
    enc_digest, dec_digest = _digest(enc_state), _digest(dec_state)
    common: dict[str, Any] = {
        "model_id": _model_id(preset, codec, enc_digest, dec_digest),
        "preset": preset,
        "codec": codec,
        "encoder_digest": enc_digest,
        "decoder_digest": dec_digest,
        "training": training or {},
        "data_checksum": data_checksum,
        "metrics": metrics or {},
        "versions": versions or {},
        "command": command,
        "level": level,
        "denoise": denoise,
        "retired_model_ids": list(retired_model_ids),
    }
    enc_path, dec_path = directory / ENCODER_FILE, directory / DECODER_FILE
    _write_atomic(enc_state, CheckpointMeta(half="encoder", **common), enc_path)
    _write_atomic(dec_state, CheckpointMeta(half="decoder", **common), dec_path)
    return enc_path, dec_path


def resolve_checkpoint(path: Path | str, half: Half) -> Path:
    """A half's file: ``path`` itself, or ``path/<half>.safetensors`` for a directory."""
    path = Path(path)
    if path.is_dir():
        path = path / (ENCODER_FILE if half == "encoder" else DECODER_FILE)
    if not path.is_file():
        raise BadCheckpointError(f"no {half} checkpoint at {path}")
    return path


def _read(path: Path, half: Half) -> tuple[dict[str, torch.Tensor], CheckpointMeta]:
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118 (safe_open is not a dict)
    except (SafetensorError, OSError, ValueError) as exc:
        raise BadCheckpointError(f"{path} is not a readable safetensors file: {exc}") from exc
    if header.get("format") != FORMAT or _META_KEY not in header:
        raise BadCheckpointError(f"{path} is a safetensors file but not a latentwire checkpoint")
    try:
        meta = CheckpointMeta.from_json(header[_META_KEY])
    except (ValueError, TypeError) as exc:
        raise BadCheckpointError(f"{path} has unreadable metadata: {exc}") from exc
    if meta.half != half:
        raise BadCheckpointError(f"{path} is the {meta.half} half; the {half} half was asked for")
    expected = meta.encoder_digest if half == "encoder" else meta.decoder_digest
    if _digest(tensors) != expected:
        raise BadCheckpointError(
            f"{path}: the weights do not match the digest in its metadata (corrupt file?)"
        )
    return tensors, meta


def read_meta(path: Path, half: Half) -> CheckpointMeta:
    """A half's metadata, fully verified (the weights are read and hashed too)."""
    return _read(path, half)[1]


def _build(
    module: torch.nn.Module, tensors: dict[str, torch.Tensor], path: Path, half: Half
) -> dict[str, torch.Tensor]:
    """Load the half's weights into ``module`` (strictly); return the coding tables."""
    state = {name.removeprefix(f"{half}."): t for name, t in tensors.items() if name.startswith(f"{half}.")}
    tables = {name.removeprefix("tables."): t for name, t in tensors.items() if name.startswith("tables.")}
    stray = set(tensors) - {f"{half}.{k}" for k in state} - {f"tables.{k}" for k in tables}
    if stray:
        raise BadCheckpointError(f"{path}: tensors outside the {half} half: {sorted(stray)[:3]}")
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise BadCheckpointError(f"{path}: weights do not fit the preset in its metadata: {exc}") from exc
    module.eval()
    module.requires_grad_(False)
    return tables


def _load(path: Path | str, half: Half) -> tuple[torch.nn.Module, CheckpointMeta, dict[str, torch.Tensor]]:
    file = resolve_checkpoint(path, half)
    tensors, meta = _read(file, half)
    try:
        module = (Encoder if half == "encoder" else Decoder)(meta.build_preset())
    except (ValueError, TypeError) as exc:
        raise BadCheckpointError(f"{file}: unknown architecture in metadata: {exc}") from exc
    tables = _build(module, tensors, file, half)
    return module, meta, tables


def load_encoder(path: Path | str) -> LoadedEncoder:
    """Load the encoder half (a file, or a directory holding ``encoder.safetensors``)."""
    module, meta, tables = _load(path, "encoder")
    return LoadedEncoder(cast(Encoder, module), meta, tables)


def load_decoder(path: Path | str) -> LoadedDecoder:
    """Load the decoder half (a file, or a directory holding ``decoder.safetensors``)."""
    module, meta, tables = _load(path, "decoder")
    return LoadedDecoder(cast(Decoder, module), meta, tables)
