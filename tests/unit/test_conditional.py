"""The conditional entropy model and its codec: masks, the integer forward pass, round trips, refusals."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from latentwire import arithmetic, bitstream
from latentwire.checkpoint import load_decoder, load_encoder, save_checkpoint
from latentwire.codec import Compressor, Decompressor
from latentwire.conditional import (
    ACTIVATION_MAX,
    WEIGHT_MAX,
    ConditionalParams,
    ConditionalPrior,
    ConditionalTables,
    ExactWeights,
    IntegerConditional,
    exact_matmul,
    group_bounds,
    masks,
)
from latentwire.errors import BadCheckpointError, BadCodeError
from latentwire.ladder import DecoderLadder
from latentwire.latent_codecs import ConditionalCodec, codec_for, codec_kinds
from latentwire.nets import Decoder, Encoder, get_preset


def prior(dims: int = 8, groups: int = 4, seed: int = 0, *, spread: float = 1.0) -> ConditionalPrior:
    """A random prior whose predictions really depend on the inputs (the initial w2 is near 0)."""
    torch.manual_seed(seed)
    model = ConditionalPrior(dims, groups=groups)
    with torch.no_grad():
        model.w2.normal_(0.0, spread / math.sqrt(model.params.hidden))
        model.b1.normal_(0.0, 0.5)
        model.b2.normal_(0.0, 1.0)
    return model


def codec(dims: int = 8, groups: int = 4, seed: int = 0) -> ConditionalCodec:
    return ConditionalCodec.from_prior(prior(dims, groups, seed))


LATENTS = arrays(np.float32, (3, 8), elements=st.floats(-300, 300, width=32))


# -----------------------------------------------------------------------------
# the model: masks and the integer forward pass


@pytest.mark.parametrize(("dims", "groups"), [(8, 1), (8, 4), (8, 8), (7, 3)])
def test_the_masks_are_autoregressive_in_the_float_and_integer_models(dims: int, groups: int) -> None:
    model = prior(dims, groups)
    integer = IntegerConditional(model.params, model.freeze(), dims)
    bounds = group_bounds(dims, groups)
    rng = np.random.default_rng(1)
    base = rng.integers(-20, 21, (4, dims))
    for g in range(groups):
        start, end = bounds[g], bounds[g + 1]
        changed = base.copy()
        changed[:, start:end] += rng.integers(1, 50, (4, end - start))  # group g's inputs (and no others)
        with torch.no_grad():
            before = model.predict(torch.from_numpy(base).float())
            after = model.predict(torch.from_numpy(changed).float())
        for a, b in zip(before, after, strict=True):  # means, log-scales: groups ≤ g unchanged
            assert torch.equal(a[:, :end], b[:, :end])
        for later in range(groups):
            unchanged = [np.array_equal(x, y) for x, y in zip(*(
                integer.predict(v, later) for v in (base, changed)), strict=True)]  # fmt: skip
            assert all(unchanged) or later > g
        reference = [_reference_forward(integer, row) for row in (base[0].tolist(), changed[0].tolist())]
        assert (
            reference[0][0][:end] == reference[1][0][:end] and reference[0][1][:end] == reference[1][1][:end]
        )


def test_group_zero_is_learned_constants() -> None:
    first, second = masks(8, 4, 16)
    assert not second[:2].any() and not second[8:10].any()  # group 0's means and log-scales: biases only
    assert not first[:, 6:].any()  # the last group feeds nothing
    assert group_bounds(7, 3).tolist() == [0, 2, 4, 7]
    with pytest.raises(ValueError, match="9 groups for 8 latent values"):
        group_bounds(8, 9)


def _reference_forward(model: IntegerConditional, values: list[int]) -> tuple[list[int], list[int]]:
    """The integer forward pass in plain Python ints, over the full masked matrices, all groups at once."""
    t, p = model.tables, model.params
    f, k = p.frac_bits, model.dims
    w1, b1, w2, b2 = t.w1.tolist(), t.b1.tolist(), t.w2.tolist(), t.b2.tolist()
    hidden = [
        min(max(sum(w * v for w, v in zip(row, values, strict=True)) + b, 0), ACTIVATION_MAX << f)
        for row, b in zip(w1, b1, strict=True)
    ]
    out = [
        sum(w * h for w, h in zip(row, hidden, strict=True)) + (b << f) for row, b in zip(w2, b2, strict=True)
    ]
    m, v = p.mean_bits, p.value_max << p.mean_bits
    fine = [min(max((o + (1 << (2 * f - m - 1))) >> (2 * f - m), -v), v) for o in out[:k]]  # 2**−m steps
    thresholds = t.thresholds.tolist()
    scales = [sum(th <= (o >> f) for th in thresholds) for o in out[k:]]
    rows = [(scale << m) + mean % (1 << m) for scale, mean in zip(scales, fine, strict=True)]
    return [mean >> m for mean in fine], rows


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    spread=st.sampled_from([0.1, 1.0, 30.0]),
    values=arrays(np.int64, (5, 8), elements=st.integers(-382, 382)),
)
def test_the_integer_forward_is_exact_integer_arithmetic(
    seed: int, spread: float, values: np.ndarray
) -> None:
    model = prior(8, 4, seed, spread=spread)
    tables = model.freeze()
    assert all(getattr(tables, name).dtype == np.int64 for name in tables._fields)
    integer = IntegerConditional(model.params, tables, 8)
    bounds = group_bounds(8, 4)
    expected = [_reference_forward(integer, row.tolist()) for row in values]
    for row, (want_means, want_rows) in zip(values, expected, strict=True):
        for g in range(4):
            means, indices = integer.predict(row[None], g)
            assert means.dtype == indices.dtype == np.int64
            assert means[0].tolist() == want_means[bounds[g] : bounds[g + 1]]
            assert indices[0].tolist() == want_rows[bounds[g] : bounds[g + 1]]
            again = integer.predict(row[None].copy(), g)
            assert np.array_equal(again[0], means) and np.array_equal(again[1], indices)
    for g in range(4):  # 5 rows at once: the float64 BLAS path, the same integers
        means, indices = integer.predict(values, g)
        assert means.tolist() == [m[bounds[g] : bounds[g + 1]] for m, _ in expected]
        assert indices.tolist() == [r[bounds[g] : bounds[g + 1]] for _, r in expected]


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**16), rows=st.sampled_from([1, 3, 4, 7, 256]))
def test_the_second_layer_product_is_exact_past_float64s_integers(seed: int, rows: int) -> None:
    """Hidden values up to 2**31, weights at ±2**21 (F = 14's cap), 1024 hidden units: sums near 2**62.

    ``exact_matmul`` must agree with Python ints where a plain float64 product rounds.
    """
    rng = np.random.default_rng(seed)
    cap = WEIGHT_MAX << 14
    hidden = rng.integers(0, ACTIVATION_MAX << 15, (rows, 1024))
    weights = rng.integers(cap // 2, cap, (1024, 8), endpoint=True) * rng.choice([-1, 1], (1, 8))
    expected = hidden.astype(object) @ weights.astype(object)
    got = exact_matmul(hidden, ExactWeights.of(weights))
    assert got.dtype == np.int64 and (got == expected).all()
    assert not ((hidden.astype(np.float64) @ weights).astype(np.int64) == expected).all()


def test_the_integer_model_follows_the_float_model() -> None:
    """Freezing costs fixed-point error only: means within half a mean step, scales within one table step."""
    model = prior(16, 16, spread=0.5)
    integer = IntegerConditional(model.params, model.freeze(), 16)
    steps = 1 << model.params.mean_bits  # mean offsets per scale (8 by default)
    values = np.random.default_rng(0).integers(-10, 11, (64, 16))
    with torch.no_grad():
        means, log_scales = model.predict(torch.from_numpy(values).float())
    for g in range(16):
        mu, row = integer.predict(values, g)
        assert (
            np.abs(mu[:, 0] + (row[:, 0] % steps) / steps - means[:, g].numpy()).max() <= 0.5 / steps + 0.01
        )  # fixed-point error
        expected = np.searchsorted(integer.tables.thresholds / 4096, log_scales[:, g].numpy(), side="right")
        assert np.abs(row[:, 0] // steps - expected).max() <= 1


# -----------------------------------------------------------------------------
# parameters and tables: what a checkpoint stores


def test_the_kind_is_registered() -> None:
    assert "conditional" in codec_kinds()
    assert (ConditionalCodec.format_version, ConditionalCodec.needs_level) == (bitstream.LADDER_FORMAT, True)
    params = ConditionalParams(groups=4, hidden=16)
    assert params.to_dict() == {
        "kind": "conditional", "groups": 4, "hidden": 16, "frac_bits": 12, "support": 127,
        "scales": 64, "value_max": 255, "mean_bits": 3, "precision": 16,
    }  # fmt: skip
    assert ConditionalParams.from_dict(params.to_dict()) == params


def test_the_tables_round_trip_through_a_checkpoint(tmp_path: Path) -> None:
    original = codec()
    preset = get_preset("dense-tiny")
    save_checkpoint(
        tmp_path, encoder=Encoder(preset), decoder=Decoder(preset), codec=original.params.to_dict(),
        tables=original.tables(), level=2,
    )  # fmt: skip
    for loaded in (load_encoder(tmp_path), load_decoder(tmp_path)):
        assert loaded.meta.codec == original.params.to_dict()
        assert set(loaded.tables) == set(ConditionalTables._fields)
        assert all(t.dtype == torch.int32 for t in loaded.tables.values())
    sender, receiver = Compressor.from_checkpoint(tmp_path), Decompressor.from_checkpoint(tmp_path)
    for half in (sender, receiver):
        assert (
            isinstance(half.latent_codec, ConditionalCodec) and half.format_version == bitstream.LADDER_FORMAT
        )
        assert half.max_payload == original.max_payload
        for name, tensor in original.tables().items():
            assert torch.equal(half.latent_codec.tables()[name], tensor)
    latents = np.random.default_rng(0).normal(0, 4, (6, 8)).astype(np.float32)
    assert sender.latent_codec.compress(latents) == original.compress(latents)


def _bad(
    tables: dict[str, torch.Tensor], name: str, change: tuple[tuple[int, ...], int]
) -> dict[str, torch.Tensor]:
    tables = {k: v.clone() for k, v in tables.items()}
    tables[name][change[0]] = change[1]
    return tables


@pytest.mark.parametrize(
    ("entry", "tables", "detail"),
    [
        ({"frac_bits": 15}, None, "frac_bits must be in 1 … 14"),
        ({"mean_bits": 5}, None, "mean_bits must be in 0 … 4"),
        ({"depth": 2}, None, "unknown conditional parameters ['depth']"),
        ({"precision": 15}, None, "precision 15"),
        ({"hidden": None}, None, "missing conditional parameters ['hidden']"),
        ({"groups": True}, None, "groups must be an integer"),
        ({"groups": 9}, None, "9 groups for 8 latent values"),
        ({"hidden": 17}, None, "table w1 is (16, 8), expected (17, 8)"),
        ({"mean_bits": 2}, None, "table cdfs is (512, 256), expected (256, 256)"),
        ({}, ("w1", ((0, 7), 1)), "do not respect the autoregressive masks"),
        ({}, ("w2", ((0, 0), 1)), "do not respect the autoregressive masks"),
        ({}, ("b2", ((0,), 1 << 20)), "beyond ±128"),
        ({}, ("thresholds", ((0,), 1 << 20)), "thresholds must increase"),
        ({}, ("cdfs", ((0, 5), 0)), "frequency of at least 1"),
    ],
)
def test_bad_parameters_and_tables_are_refused(
    entry: dict[str, object], tables: tuple[str, tuple[tuple[int, ...], int]] | None, detail: str
) -> None:
    good = codec()
    chosen = good.tables() if tables is None else _bad(good.tables(), *tables)
    params = {k: v for k, v in {**good.params.to_dict(), **entry}.items() if v is not None}
    with pytest.raises(
        BadCheckpointError, match=f"bad codec parameters in checkpoint x: .*{re.escape(detail)}"
    ):
        codec_for(params, chosen, (8,), model_id="x")


def test_other_latent_shapes_and_dtypes_are_refused() -> None:
    good = codec()
    with pytest.raises(BadCheckpointError, match="codes a latent vector"):
        codec_for(good.params.to_dict(), good.tables(), (2, 2, 2), model_id="x")
    with pytest.raises(BadCheckpointError, match="must be int32"):
        codec_for(
            good.params.to_dict(), {**good.tables(), "b1": good.tables()["b1"].long()}, (8,), model_id="x"
        )


# -----------------------------------------------------------------------------
# round trips


@settings(max_examples=40, deadline=None)
@given(latents=LATENTS, seed=st.integers(0, 3), groups=st.sampled_from([1, 3, 8]))
def test_round_trip_gives_the_clamped_integer_latents(latents: np.ndarray, seed: int, groups: int) -> None:
    model = codec(8, groups, seed)
    coded = model.symbols(latents)
    payloads = model.compress(latents)
    assert payloads == model.compress(torch.from_numpy(latents))  # arrays or tensors alike
    for payload, values, original in zip(payloads, coded.values, latents, strict=True):
        decoded = model.decompress(payload)
        assert decoded.dtype == np.float32 and np.array_equal(decoded, values)
        assert np.abs(values).max() <= 255
        # only a residual beyond ±R (or a value beyond ±V) moves a value away from its rounding
        rounded = np.clip(np.rint(original), -255, 255)
        assert np.array_equal(values, rounded) or (coded.symbols % 254 == 0).any()
        assert len(payload) <= model.max_payload
        # the coder spends less than a byte over the information content
        assert len(payload) * 8 < model.information_bits(original[None])[0] + 8


def test_typical_latents_round_trip_exactly_and_a_batch_codes_as_one_by_one() -> None:
    model = codec(8, 4)
    latents = np.random.default_rng(2).normal(0, 3, (64, 8)).astype(np.float32)
    payloads = model.compress(latents)
    assert payloads == [model.compress(row[None])[0] for row in latents]
    restored = np.stack([model.decompress(p) for p in payloads])
    assert np.array_equal(restored, np.rint(latents))
    overhead = np.array([len(p) for p in payloads]) - model.information_bits(latents) / 8
    assert overhead.max() < 1 and overhead.mean() < 0.6


def test_max_payload_bounds_the_worst_case() -> None:
    model = codec(8, 4)
    assert model.max_payload == 2 * 8  # the rarest residuals cost 16 bits each: 16 bytes for 8
    extreme = np.array([[300, -300] * 4, [-300, 300] * 4, [0, 200, 0, -200] * 2], np.float32)
    assert all(len(p) <= model.max_payload for p in model.compress(extreme))
    with pytest.raises(BadCodeError, match="longer than any code of this model"):
        model.decompress(bytes(model.max_payload + 1))


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_damaged_payloads_are_refused_or_canonical(data: st.DataObject) -> None:
    """Truncated, extended or bit-flipped: BadCodeError, or the one payload that codes what it decodes to."""
    model = codec(8, 4)
    latents = data.draw(arrays(np.float32, (1, 8), elements=st.floats(-20, 20, width=32)))
    payload = model.compress(latents)[0]
    kind = data.draw(st.sampled_from(["truncate", "extend", "flip", "random"]))
    if kind == "truncate":
        damaged = payload[: data.draw(st.integers(0, max(len(payload) - 1, 0)))]
    elif kind == "extend":
        damaged = payload + data.draw(st.binary(min_size=1, max_size=4))
    elif kind == "flip" and payload:
        bit = data.draw(st.integers(0, 8 * len(payload) - 1))
        damaged = (int.from_bytes(payload, "big") ^ (1 << bit)).to_bytes(len(payload), "big")
    else:
        damaged = data.draw(st.binary(max_size=model.max_payload + 2))
    if damaged == payload:
        return
    try:
        values = model.decompress(damaged)
    except BadCodeError:
        return
    assert model.compress(values[None])[0] == damaged  # a valid code of other values, never a stray one


# -----------------------------------------------------------------------------
# the arithmetic coder's stream decoder


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_the_stream_decoder_matches_decode(data: st.DataObject) -> None:
    rows = codec(8, 4)._rows
    n = data.draw(st.integers(1, 12))
    cdfs = [rows[data.draw(st.integers(0, len(rows) - 1))] for _ in range(n)] + [(0, arithmetic.TOTAL)]
    symbols = [data.draw(st.integers(0, len(c) - 2)) for c in cdfs]
    good = arithmetic.encode(symbols, cdfs)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(cdfs)), max_size=3)))
    for payload in (good, data.draw(st.binary(max_size=2 * n + 1))):
        try:
            expected: list[int] | None = arithmetic.decode(payload, cdfs)
        except BadCodeError:
            expected = None
        try:
            decoder = arithmetic.StreamDecoder(payload, positions=len(cdfs))
            got: list[int] | None = []
            for a, b in zip([0, *cuts], [*cuts, len(cdfs)], strict=True):
                got += decoder.decode(cdfs[a:b])  # type: ignore[operator]
            decoder.finish()
        except BadCodeError:
            got = None
        assert got == expected
    assert arithmetic.decode(good, cdfs) == symbols


def test_the_stream_decoder_checks_its_positions() -> None:
    cdfs = [[0, 1 << 15, arithmetic.TOTAL]] * 3
    decoder = arithmetic.StreamDecoder(arithmetic.encode([1, 1, 0], cdfs), positions=3)
    with pytest.raises(ValueError, match="only 3 positions are left"):
        decoder.decode(cdfs * 2)
    decoder.decode(cdfs[:2])
    with pytest.raises(ValueError, match="1 positions are not decoded yet"):
        decoder.finish()
    with pytest.raises(BadCodeError):
        arithmetic.StreamDecoder(bytes(7), positions=3)


# -----------------------------------------------------------------------------
# training


def correlated_latents(count: int, seed: int = 0) -> torch.Tensor:
    """(count, 8) latents whose values repeat the first group's: a conditional model can predict them."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(count, 2, generator=g) * 6
    return base.repeat(1, 4) + torch.randn(count, 8, generator=g) * 0.3


def trained_prior(steps: int = 150) -> tuple[ConditionalPrior, list[float]]:
    torch.manual_seed(0)
    model = ConditionalPrior(8, groups=4)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    data = correlated_latents(512)
    rates = []
    for _ in range(steps):
        _, bits = model(data)
        optimizer.zero_grad()
        bits.mean().backward()
        optimizer.step()
        rates.append(float(bits.detach().mean()))
    return model.eval(), rates


def test_training_lowers_the_rate_and_the_integer_model_keeps_it() -> None:
    model, rates = trained_prior()
    assert rates[-1] < 0.6 * rates[0]
    test = correlated_latents(256, seed=1)
    with torch.no_grad():
        float_bits = float(model(test)[1].mean())
    integer_bits = float(ConditionalCodec.from_prior(model).information_bits(test).mean())
    assert abs(integer_bits - float_bits) < 0.05 * float_bits  # freezing costs little
    # the first group costs what it costs; the three that repeat it cost far less
    assert integer_bits < 0.6 * rates[0]


def trained_checkpoints(directory: Path, levels: tuple[int, ...]) -> ConditionalCodec:
    """A dense-tiny network with a trained conditional prior, saved as q<level> for each level."""
    model, _ = trained_prior(40)
    preset = get_preset("dense-tiny")
    torch.manual_seed(0)
    encoder, decoder = Encoder(preset), Decoder(preset)
    bottleneck = encoder.net[-1]
    assert isinstance(bottleneck, torch.nn.Linear)
    with torch.no_grad():  # latents the prior was trained on have a spread of a few units
        bottleneck.weight.mul_(400.0)
    frozen = ConditionalCodec.from_prior(model)
    for level in levels:
        save_checkpoint(
            directory / f"q{level}", encoder=encoder, decoder=decoder, codec=frozen.params.to_dict(),
            tables=frozen.tables(), level=level,
        )  # fmt: skip
    return frozen


def test_a_trained_model_codes_through_the_compressor_and_the_ladder(tmp_path: Path) -> None:
    frozen = trained_checkpoints(tmp_path, (1, 2))
    sender, receiver = (
        Compressor.from_checkpoint(tmp_path / "q2"),
        Decompressor.from_checkpoint(tmp_path / "q2"),
    )
    images = np.random.default_rng(0).integers(0, 256, (12, 28, 28), dtype=np.uint8)
    latents = sender.latents(images)
    codes = sender.compress(images)
    assert [len(c) for c in codes] == [len(p) + sender.framing_bytes for p in sender.payloads(images)]
    assert np.abs(np.rint(latents.numpy())).max() > 2  # not all zeros: the test codes something
    assert np.array_equal(np.stack([receiver.latent_values(receiver.payload(c)) for c in codes]),
                          frozen.symbols(latents).values)  # fmt: skip
    pixels = receiver.decompress(codes)
    assert np.array_equal(pixels, receiver.decode_latents(frozen.symbols(latents).values.astype(np.float32)))
    ladder = DecoderLadder.load(tmp_path)
    via_ladder, _ = ladder.decompress(codes)
    assert np.array_equal(via_ladder, pixels)
    assert np.array_equal(receiver.decompress(codes[:1]), pixels[:1])  # alone as in a batch


# -----------------------------------------------------------------------------
# decoding a batch of payloads together


def _decode_alone(model: ConditionalCodec, payload: bytes) -> np.ndarray | BadCodeError:
    """One payload decoded on its own, group by group (the one-code decoder, written out here)."""
    try:
        if len(payload) > model.max_payload:
            raise BadCodeError(
                f"the payload is {len(payload)} bytes, longer than any code of this model "
                f"(at most {model.max_payload}): padded or corrupted"
            )
        decoder = arithmetic.StreamDecoder(payload, positions=model.dims)
        values = np.zeros((1, model.dims), np.int64)
        for g in range(model.params.groups):
            start, end = int(model.model.bounds[g]), int(model.model.bounds[g + 1])
            means, indices = model.model.predict(values, g)
            symbols = decoder.decode([model._rows[i] for i in indices[0].tolist()])
            values[0, start:end] = means[0] + np.array(symbols, np.int64) - model.params.support
            if np.abs(values[0, start:end]).max() > model.params.value_max:
                raise BadCodeError(
                    f"the payload decodes to a latent value beyond ±{model.params.value_max}, "
                    "which no code of this model carries: corrupted"
                )
        decoder.finish()
    except BadCodeError as exc:
        return exc
    decoded: np.ndarray = values[0].astype(np.float32)
    return decoded


def _same(a: np.ndarray | Exception, b: np.ndarray | Exception) -> bool:
    """Equal values (dtype included), or errors of the same class with the same message."""
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        return a.dtype == b.dtype and np.array_equal(a, b)
    return type(a) is type(b) and str(a) == str(b)


VALUES = st.floats(-300, 300, width=32)
DAMAGE = ["truncate", "flip", "long", "extend", "random"]


def _damaged(payload: bytes, kind: str, rng: np.random.Generator, max_payload: int) -> bytes:
    if kind == "truncate":
        return payload[: int(rng.integers(0, max(len(payload), 1)))]
    if kind == "flip" and payload:
        bit = int(rng.integers(0, 8 * len(payload)))
        return (int.from_bytes(payload, "big") ^ (1 << bit)).to_bytes(len(payload), "big")
    if kind == "long":
        return payload + bytes(max_payload + 1 - len(payload))  # one byte past the bound
    if kind == "extend":
        return payload + rng.bytes(int(rng.integers(1, 3)))
    return rng.bytes(int(rng.integers(0, max_payload + 1)))  # random bytes


@settings(max_examples=40, deadline=None)
@given(
    latents=arrays(np.float32, st.tuples(st.integers(1, 6), st.just(8)), elements=VALUES),
    damage=st.lists(st.sampled_from(["none", *DAMAGE]), min_size=6, max_size=6),
    seed=st.integers(0, 3),
    groups=st.sampled_from([1, 3, 8]),
)  # fmt: skip
def test_a_batch_decodes_as_each_payload_alone(
    latents: np.ndarray, damage: list[str], seed: int, groups: int
) -> None:
    model = codec(8, groups, seed)
    rng = np.random.default_rng(seed)
    payloads = [
        p if kind == "none" else _damaged(p, kind, rng, model.max_payload)
        for p, kind in zip(model.compress(latents), damage, strict=False)
    ]
    batch = model.decompress_many(payloads)
    assert len(batch) == len(payloads)
    coded = model.symbols(latents)
    for result, payload, kind, values in zip(batch, payloads, damage, coded.values, strict=False):
        assert _same(result, _decode_alone(model, payload))
        try:
            alone: np.ndarray | BadCodeError = model.decompress(payload)
        except BadCodeError as exc:
            alone = exc
        assert _same(result, alone)
        if kind == "none":
            assert isinstance(result, np.ndarray) and np.array_equal(result, values)


def test_a_batch_mixing_good_and_bad_payloads_gives_each_its_own_result() -> None:
    model = codec(8, 4)
    rng = np.random.default_rng(5)
    latents = rng.normal(0, 3, (24, 8)).astype(np.float32)
    good = model.compress(latents)
    kinds = ["none", "truncate", "flip", "long", "random", "extend"] * 4
    payloads = [
        p if kind == "none" else _damaged(p, kind, rng, model.max_payload)
        for p, kind in zip(good, kinds, strict=True)
    ]
    payloads += [
        bytes([0xFF]) * model.max_payload,
        b"",
    ]  # the largest value: beyond ±V, or the coder's refusal
    batch = model.decompress_many(payloads)
    expected = [_decode_alone(model, p) for p in payloads]
    assert all(_same(a, b) for a, b in zip(batch, expected, strict=True))
    errors = [r for r in batch if isinstance(r, BadCodeError)]
    messages = {str(e).split(":")[0] for e in errors}
    assert len(errors) >= 8 and len(messages) >= 2  # refusals of more than one kind, each alone
    assert any("longer than any code" in m for m in messages)
    for result, kind, values in zip(batch, kinds, np.rint(latents), strict=False):
        if kind == "none":
            assert isinstance(result, np.ndarray) and np.array_equal(result, values)
    assert model.decompress_many([]) == []


def test_the_default_decompress_many_loops_over_decompress() -> None:
    factorized = codec_for({"kind": "uniform8", "latent_max": 2.0}, {}, (4,), model_id="test")
    payloads = [bytes([0, 64, 128, 255]), b"\x01"]
    batch = factorized.decompress_many(payloads)
    assert isinstance(batch[0], np.ndarray) and np.array_equal(batch[0], factorized.decompress(payloads[0]))
    assert isinstance(batch[1], BadCodeError) and "expects 4" in str(batch[1])
    assert factorized.decompress_many([]) == []


def test_a_trained_model_decodes_a_batch_as_one_by_one_through_the_receivers(tmp_path: Path) -> None:
    frozen = trained_checkpoints(tmp_path, (2,))
    sender, receiver = (
        Compressor.from_checkpoint(tmp_path / "q2"),
        Decompressor.from_checkpoint(tmp_path / "q2"),
    )
    ladder = DecoderLadder.load(tmp_path)
    images = np.random.default_rng(1).integers(0, 256, (16, 28, 28), dtype=np.uint8)
    codes = sender.compress(images)
    pixels = receiver.decompress(codes)
    assert np.array_equal(pixels, np.concatenate([receiver.decompress([c]) for c in codes]))
    assert np.array_equal(ladder.decompress(codes)[0], pixels)
    assert receiver.decompress([]).shape == (0, 28, 28) and ladder.decompress([])[0].shape == (0, 28, 28)
    assert DecoderLadder.decompress_each([]) == []

    # bad payloads in good framing (the decoder refuses them), and a code whose framing is bad
    rng = np.random.default_rng(2)
    payloads = sender.payloads(images)
    bad_payloads = [_damaged(payloads[i], kind, rng, frozen.max_payload) for i, kind in
                    [(1, "truncate"), (3, "flip"), (5, "random"), (7, "extend")]]  # fmt: skip
    bad_codes = [
        sender.frame(p) for p in bad_payloads if not isinstance(frozen.decompress_many([p])[0], np.ndarray)
    ]
    assert len(bad_codes) >= 2
    unframed = codes[0][:-1] + bytes([codes[0][-1] ^ 1])  # the keyed check fails
    mixed = [codes[0], bad_codes[0], codes[2], unframed, bad_codes[1], codes[4]]

    def alone(code: bytes) -> np.ndarray | Exception:
        try:
            return receiver.decompress([code])[0]
        except Exception as exc:  # compared by class and message
            return exc

    expected = [alone(c) for c in mixed]
    assert [isinstance(e, Exception) for e in expected] == [False, True, False, True, True, False]
    # a batch refuses with the first bad code's error, named by its index, as one by one would
    for batch, first in ((mixed, 1), (mixed[:1] + mixed[3:], 1), (mixed[2:], 1)):
        message = str(alone(batch[first]))
        for decompress in (receiver.decompress, lambda b: ladder.decompress(b)[0]):
            with pytest.raises(BadCodeError) as info:
                decompress(batch)
            assert str(info.value) == f"code {first}: {message}"
    # the receiver service's path: each payload its own result, the good ones unharmed
    kept = [i for i in range(len(mixed)) if i != 3]  # the service opens each code first; 3 fails there
    each = DecoderLadder.decompress_each([ladder.open(mixed[i]) for i in kept])
    assert all(_same(a, expected[i]) for a, i in zip(each, kept, strict=True))
