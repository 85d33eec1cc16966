"""Mutated real codes are refused: every single-bit flip, truncation, extension and relabelling.

The codes are the shipped ladder's (every level, the denoiser included) for MNIST test digits,
and each mutated code goes through the receiver's own path (``DecoderLadder.open``, then the
model's arithmetic decoder, as ``DecoderLadder.decompress`` does before its network runs). A
mutation is *accepted* when both let it through: the receiver would decode it into some digit.

Mutation classes (per code):

* ``flip version bit`` / ``flip level/variant bit`` / ``flip check bit`` / ``flip payload bit``:
  every single-bit flip, by where the bit is (a ladder code's check bit: bit 0 of byte 0, or byte 1);
* ``truncate 1`` / ``truncate 2``: the last one or two bytes cut off;
* ``extend 1`` / ``extend 2``: one or two random bytes appended;
* ``relabel to a served level``: byte 0's (level, variant) bits replaced by each other pair the
  ladder serves, its check bit kept; ``relabel to an unserved level``: by each other of the 16
  (level 0..7, variant) pairs.

The bar (issue 8): at most 1/256 accepted in every class. A damaged code passes the keyed 9-bit
check 1 time in 512 and must then pass the arithmetic decoder too, so every class is at most
1/512 in expectation: half the bar, truncations included (the decoder accepts ~99% of truncated
payloads, so they sit at about 1/512). The CI test runs 600 codes (~79,000 mutations, a few
seconds) and asserts the bar with a margin for chance that still stays below 1/256. The
full measurement (≥ 100,000 mutations, and the v1 ``seed`` model too) prints its table::

    .venv/bin/python tests/unit/test_mutations.py [digits per level, default 1000]
    LATENTWIRE_MUTATIONS_FULL=1 .venv/bin/pytest tests/unit/test_mutations.py -m slow -s

Apart, and not a mutation: random payloads framed with a correct check byte (what a forger who
knows the model id makes) pass the check by construction; how often the arithmetic decoder
accepts them is measured and printed, not bounded (at the real codes' lengths: 33–51%).
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pytest

from latentwire import bitstream
from latentwire.data import MnistSplit, load_mnist
from latentwire.errors import LatentwireError
from latentwire.ladder import DecoderLadder, EncoderLadder

LIMIT = 1 / 256  # the bar
CHECK = 1 / 512  # how often a changed (header, payload) passes the 9-bit check
CLASSES = [
    "flip version bit",
    "flip level/variant bit",
    "flip check bit",
    "flip payload bit",
    "truncate 1",
    "truncate 2",
    "extend 1",
    "extend 2",
    "relabel to a served level",
    "relabel to an unserved level",
]


@dataclass
class Tally:
    tried: Counter[str] = field(default_factory=Counter)
    accepted: Counter[str] = field(default_factory=Counter)

    def add(self, key: str, accepted: bool) -> None:
        self.tried[key] += 1
        self.accepted[key] += accepted


def accepted(ladder: DecoderLadder, code: bytes) -> bool:
    """Whether the receiver would decode ``code`` (its framing and its payload pass every check)."""
    try:
        model, payload = ladder.open(code)
        model.latent_values(payload)
    except LatentwireError:
        return False
    return True


def decoder_accepts(ladder: DecoderLadder, code: bytes) -> bool:
    """Whether the arithmetic decoder of the model byte 0 names accepts the payload, check aside.

    A ladder-code mutation is accepted iff this holds and the check matches; the keyed check matches a
    changed (header, payload) 1 time in 512 independently of the rest, so 1/512 times the rate
    of this is the expected acceptance rate: a far more precise estimate than counting the rare
    acceptances themselves.
    """
    try:
        header = bitstream.read_header(code)
    except LatentwireError:
        return False
    model = ladder.by_level.get((header.level, header.denoise))
    if header.version != bitstream.LADDER_FORMAT or model is None or model.format_version != header.version:
        return False
    try:
        model.latent_values(code[2:])
    except LatentwireError:
        return False
    return True


def mutations(code: bytes, rng: np.random.Generator, served: set[int]) -> Iterator[tuple[str, bytes]]:
    """Every mutation of one code, with its class (v1 codes: flips, truncations, extensions)."""
    ladder = code[0] >> 5 == bitstream.LADDER_FORMAT
    for bit in range(8 * len(code)):
        mutated = bytearray(code)
        mutated[bit // 8] ^= 0x80 >> (bit % 8)  # bit 0 is byte 0's most significant bit
        if bit < 3:
            kind = "flip version bit"
        elif ladder and (bit == 7 or 8 <= bit < 16):  # bit 0 of byte 0, and byte 1
            kind = "flip check bit"
        elif bit < 8:
            kind = "flip level/variant bit"  # v1: the reserved bits
        else:
            kind = "flip payload bit"  # v1: model id, length, payload and CRC alike
        yield kind, bytes(mutated)
    for n in (1, 2):
        yield f"truncate {n}", code[:-n]
        yield f"extend {n}", code + rng.bytes(n)
    if ladder:
        ladder_bits = bitstream.LADDER_FORMAT << 5
        for header in range(ladder_bits, ladder_bits + 0x20, 2):  # every (level, variant), the check bit kept
            if header != code[0] & 0xFE:
                kind = "relabel to a served level" if header in served else "relabel to an unserved level"
                yield kind, bytes([header | code[0] & 1]) + code[1:]


def measure(
    encoders: EncoderLadder,
    decoders: DecoderLadder,
    images: np.ndarray,
    *,
    seed: int = 0,
    v1_digits: int = 0,
    decoder_alone: Tally | None = None,
) -> tuple[Tally, Tally, Tally]:
    """Mutate every code of ``images`` at every ladder level (and ``v1_digits`` v1 codes).

    Returns the tally by class, by (model, class), and of forged-check random payloads by model;
    fills ``decoder_alone`` (by class, ladder codes only) with what the arithmetic decoder alone accepts.
    """
    rng = np.random.default_rng(seed)
    by_class, by_model, forged = Tally(), Tally(), Tally()
    served = {
        m.level << 1 | (0x10 if m.denoise else 0) | bitstream.LADDER_FORMAT << 5
        for m in decoders.levels()
        if m.format_version == bitstream.LADDER_FORMAT
    }
    for compressor in encoders.levels():
        label = f"q{compressor.level}{'-denoise' if compressor.denoise else ''}"
        v1 = compressor.format_version == bitstream.FORMAT_V1
        if v1 and not v1_digits:
            continue
        codes = compressor.compress(images[:v1_digits] if v1 else images)
        for code in codes:
            assert accepted(decoders, code), "an unmutated code must decode"
            for kind, mutated in mutations(code, rng, served):
                ok = accepted(decoders, mutated)
                by_class.add(kind, ok)
                by_model.add(f"{label} {kind}", ok)
                if decoder_alone is not None and not v1:
                    decoder_alone.add(kind, decoder_accepts(decoders, mutated))
            if not v1:  # random payloads of the real code's length, and of any length up to the bound
                bound = decoders.by_id[compressor.model_id].max_payload
                for kind, length in (("same length", len(code) - 2), ("any length", rng.integers(bound + 1))):
                    fake = bitstream.pack_ladder(
                        level=compressor.level,
                        denoise=compressor.denoise,
                        model_id=compressor.model_id,
                        payload=rng.bytes(int(length)),
                    )
                    forged.add(f"{label} {kind}", accepted(decoders, fake))
    return by_class, by_model, forged


def upper_bound(accepted: int, tried: int, z: float = 1.96) -> float:
    """Wilson score upper bound of a binomial rate (95% by default)."""
    if not tried:
        return 1.0
    p = accepted / tried
    centre = p + z * z / (2 * tried)
    spread = z * math.sqrt(p * (1 - p) / tried + z * z / (4 * tried * tried))
    return (centre + spread) / (1 + z * z / tried)


def table(tally: Tally, keys: list[str] | None = None, *, bar: bool = True) -> str:
    head = f"{'class':<44} {'tried':>9} {'accepted':>8} {'rate':>10} {'95% upper':>10}"
    lines = [head + ("  ≤ 1/256" if bar else "")]
    for key in keys or sorted(tally.tried):
        n, k = tally.tried[key], tally.accepted[key]
        if not n:
            continue
        bound = upper_bound(k, n)
        verdict = ""
        if bar:  # "yes": its 95% upper bound is under 1/256 too; "yes, rate": the measured rate only
            verdict = (
                "  yes"
                if bound < LIMIT
                else "  yes, rate"
                if k / n <= LIMIT
                else "  within noise"
                if lower_bound(k, n) <= LIMIT
                else "  NO"
            )
        lines.append(f"{key:<44} {n:>9} {k:>8} {k / n:>10.5f} {bound:>10.5f}{verdict}")
    total_n, total_k = sum(tally.tried.values()), sum(tally.accepted.values())
    lines.append(f"{'all':<44} {total_n:>9} {total_k:>8} {total_k / total_n:>10.5f}")
    return "\n".join(lines)


def assert_within_bar(tally: Tally) -> None:
    """Each class within chance of its 1/512 expectation: 4 standard deviations (and 2) above it.

    From about 10,000 mutations a class up (payload flips here; every class of the full run) that
    allowance is itself below 1/256; and no class may be significantly (99.9%) above 1/512.
    """
    for kind, n in tally.tried.items():
        k = tally.accepted[kind]
        assert k <= n * CHECK + 4 * math.sqrt(n * CHECK) + 2, (kind, k, n)
        assert lower_bound(k, n) <= CHECK, (kind, k, n)


@pytest.fixture(scope="module")
def ladders() -> tuple[EncoderLadder, DecoderLadder]:
    return EncoderLadder.load(), DecoderLadder.load()


def test_mutated_real_codes_are_refused(
    ladders: tuple[EncoderLadder, DecoderLadder], mnist_test: MnistSplit
) -> None:
    """100 digits × 7 levels: about 95,000 mutations (~135 a code) in a few seconds."""
    by_class, _, forged = measure(*ladders, mnist_test.images[:100], seed=1)
    print("\n" + table(by_class, CLASSES) + "\n" + table(forged, bar=False))
    assert set(by_class.tried) == set(CLASSES)
    assert by_class.tried["relabel to a served level"] == 7 * 100 * 6  # each code to the 6 other models
    assert_within_bar(by_class)
    assert by_class.accepted["flip check bit"] == 0  # the check is a function of the rest
    assert by_class.accepted["flip version bit"] == 0  # v3, v5 or v6: retired, refused before any check
    assert by_class.accepted["relabel to an unserved level"] == 0  # foreign_model
    levels = ["q1", "q2", "q3", "q3-denoise", "q4", "q5", "q6"]
    assert set(forged.tried) == {f"{q} {kind}" for q in levels for kind in ("same length", "any length")}


def test_the_issues_relabelled_code_is_refused(ladders: tuple[EncoderLadder, DecoderLadder]) -> None:
    """Issue 8's example: digit 4777 at q3, bit 4 of byte 0 flipped, passed as q3-denoise in v2."""
    v2_code = bytes.fromhex("53389147667bc7a1f168eb7e0f")
    assert not accepted(ladders[1], v2_code)  # v2: refused outright
    digit = load_or_skip().images[4777]
    code = ladders[0].select(quality=3).compress(digit)[0]  # q3 was retrained in issue 10: a new payload
    assert bitstream.read_header(code) == bitstream.CodeHeader(version=bitstream.LADDER_FORMAT, level=3)
    assert accepted(ladders[1], code)
    assert not accepted(ladders[1], bytes([code[0] ^ 0x10]) + code[1:])


def load_or_skip() -> MnistSplit:
    try:
        return load_mnist("test", download=False)
    except LatentwireError as exc:
        pytest.skip(f"MNIST not present ({exc})")


def test_mutated_batch_containers_are_refused(ladders: tuple[EncoderLadder, DecoderLadder]) -> None:
    """A ladder container's 4-byte tag: every flip, truncation, extension and relabelling is caught."""
    split = load_or_skip()
    sender, receiver = ladders
    compressor = sender.select(quality=3)
    container = compressor.compress_batch(split.images[:16])
    assert receiver.unpack_batch(container, max_codes=16) == compressor.compress(split.images[:16])
    assert (len(container) - sum(len(c) - 2 for c in compressor.compress(split.images[:16]))) / 16 < 1.5
    mutated = [container[:-n] for n in (1, 2)] + [container + b"\x01", container + b"\x00\x00"]
    # every v7 (level, variant, check bit) byte, and every v3 … v6 one (no longer read)
    mutated += [container[:2] + bytes([first]) + container[3:] for first in range(0x60, 0x100)]
    for bit in range(8 * len(container)):
        flipped = bytearray(container)
        flipped[bit // 8] ^= 0x80 >> (bit % 8)
        mutated.append(bytes(flipped))
    for body in mutated:
        if body == container:
            continue
        with pytest.raises(LatentwireError):
            for code in receiver.unpack_batch(body, max_codes=16):
                receiver.decompress([code])


def lower_bound(accepted: int, tried: int, z: float = 3.0) -> float:
    """Wilson score lower bound of a binomial rate (z = 3: 99.9% one-sided)."""
    return 1 - upper_bound(tried - accepted, tried, z)


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("LATENTWIRE_MUTATIONS_FULL") != "1", reason="set LATENTWIRE_MUTATIONS_FULL=1 (~1 minute)"
)
def test_full_mutation_table(mnist_test: MnistSplit) -> None:
    by_class, _, _, alone = main(1000, mnist_test)
    assert sum(by_class.tried.values()) >= 100_000
    for kind, n in by_class.tried.items():  # every class within the bar, none significantly above 1/512
        assert by_class.accepted[kind] <= n * LIMIT, kind
        assert lower_bound(by_class.accepted[kind], n) <= CHECK, kind
    assert set(alone.tried) == set(CLASSES)


def expected_table(by_class: Tally, alone: Tally) -> str:
    lines = [f"{'class':<32} {'decoder alone accepts':>22} {'expected rate (÷512)':>21} {'measured':>9}"]
    for kind in CLASSES:
        n, k = alone.tried[kind], alone.accepted[kind]
        if n:
            measured = by_class.accepted[kind] / by_class.tried[kind]
            expected = (
                0.0 if kind == "flip check bit" else k / n * CHECK
            )  # the check is a function of the rest
            lines.append(f"{kind:<32} {k:>10}/{n:<11} {expected:>21.5f} {measured:>9.5f}")
    return "\n".join(lines)


def main(digits: int, split: MnistSplit | None = None) -> tuple[Tally, Tally, Tally, Tally]:
    split = split or load_mnist("test", download=False)
    start = time.perf_counter()
    alone = Tally()
    by_class, by_model, forged = measure(
        EncoderLadder.load(),
        DecoderLadder.load(),
        split.images[:digits],
        seed=2026,
        v1_digits=2,
        decoder_alone=alone,
    )
    seconds = time.perf_counter() - start
    print(f"{digits} MNIST test digits per level (2 for the v1 seed model), {seconds:.0f} s")
    print("\nby class, every level together:\n" + table(by_class, CLASSES))
    print("\nladder codes: what the arithmetic decoder alone accepts, and the rate that gives:")
    print(expected_table(by_class, alone))
    print("\nby level and class:\n" + table(by_model))
    print("\nrandom payloads with a forged-correct check byte, accepted by the arithmetic decoder:")
    print(table(forged, bar=False))
    return by_class, by_model, forged, alone


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
