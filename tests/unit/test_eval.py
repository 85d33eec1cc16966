"""latentwire-eval: the PCA code-length estimate by hand, and a whole run on a tiny ladder."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from latentwire.data import MnistSplit
from latentwire_eval import baselines, classifier, evaluate, metrics


def test_symbol_model_by_hand() -> None:
    # Training values 0, 0, 1: range [0, 1], smoothed counts 3 and 2, escape 1 → total 6.
    model = baselines.SymbolModel.fit(np.array([0, 0, 1]))
    assert (model.lo, model.hi, model.total) == (0, 1, 6)
    bits = model.bits(np.array([0, 1, 3, -1, -4]))
    expected = [
        1.0,  # p(0) = 3/6
        math.log2(3),  # p(1) = 2/6
        math.log2(6) + 1 + 3,  # escape + side bit + gamma(2) = 3 bits
        math.log2(6) + 1 + 1,  # gamma(1) = 1 bit
        math.log2(6) + 1 + 5,  # gamma(4) = 5 bits
    ]
    assert bits == pytest.approx(expected)


def test_ideal_code_bits_sums_per_component() -> None:
    # Column 0 as above (total 6); column 1 is constant: count 3 + 1, total 5, so p(5) = 4/5.
    train = np.array([[0, 5], [0, 5], [1, 5]])
    bits = baselines.ideal_code_bits(train, np.array([[1, 5], [0, 6]]))
    assert bits == pytest.approx(
        [math.log2(3) + math.log2(5 / 4), 1.0 + (math.log2(5) + 1 + 1)]  # 6: escape, side, gamma(1)
    )


def test_pca_is_lossless_with_every_component_and_a_fine_step(mnist_test: MnistSplit) -> None:
    images = mnist_test.images[:300]
    pca = baselines.Pca.fit(images, max_components=784)  # 300 images: 300 components span them
    bits, decoded = baselines.pca_roundtrip(pca, images, images[:20], len(pca.components), 0.01)
    assert np.array_equal(decoded, images[:20])
    assert np.all(bits > 0)


def test_per_image_psnr_caps_identical_images() -> None:
    a = np.zeros((2, 28, 28), np.uint8)
    b = a.copy()
    b[1, 0, 0] = 1  # one pixel off by one: the highest finite PSNR, 10·log10(255²·784)
    values = metrics.per_image_psnr(a, b)
    assert values[0] == metrics.PSNR_CAP
    assert values[1] == pytest.approx(10 * math.log10(255**2 * 784))


def test_end_to_end_on_a_tiny_ladder(
    tmp_path: Path, mnist_test: MnistSplit, checkpoint_factory: Callable[..., Path]
) -> None:
    ladder = tmp_path / "ladder"
    checkpoint_factory(ladder / "q1", preset="dense-tiny", level=1, seed=1)
    checkpoint_factory(ladder / "q2", preset="dense-tiny", level=2, seed=2)
    checkpoint_factory(ladder / "q2-denoise", preset="dense-tiny", level=2, denoise=True, seed=3)
    checkpoint_factory(ladder / "seed", preset="tiny", seed=4)
    checkpoint_factory(ladder / "default", preset="tiny", seed=5)  # a second v1 model, also "q0"
    out = tmp_path / "results"
    argv = [
        "--models", str(ladder), "--out", str(out), "--limit", "50",
        "--classifier-dir", str(tmp_path / "classifier"),
        "--classifier-train-limit", "1000", "--classifier-epochs", "1",
        "--pca-train-limit", "2000", "--pca", "8:100", "32:60",
    ]  # fmt: skip
    assert evaluate.main(argv) == 0
    for name in ("results.md", "results.json", "rd.png"):
        assert (out / name).stat().st_size > 0
    assert list((tmp_path / "classifier").glob("digits-*.safetensors"))  # cached for the next run

    document = json.loads((out / "results.json").read_text())
    assert document["test_images"] == 50
    rows = {(r["method"], r["setting"]): r for r in document["rows"]}
    assert {r["model_id"] for r in document["rows"] if r["model_id"]} == {
        m["model_id"] for m in document["ladder"]
    }
    assert {("latentwire", "q1"), ("latentwire", "q2"), ("latentwire denoise", "q2-denoise")} <= set(rows)
    v1_rows = [r for r in document["rows"] if r["method"] == "latentwire v1"]
    assert sorted(r["setting"] for r in v1_rows) == sorted(f"q0 (v1) {r['model_id']}" for r in v1_rows)
    expected_baselines = {(c.method, c.setting) for c in baselines.IMAGE_CODECS}
    expected_baselines |= {("PCA (ideal)", "k=8, step=100"), ("PCA (ideal)", "k=32, step=60")}
    assert expected_baselines <= set(rows)
    assert len(rows) == 2 + 5 + len(expected_baselines)  # + the original and noisy-input references

    for key, row in rows.items():
        assert 0.0 <= row["accuracy"] <= 1.0 and -1.0 <= row["ssim"] <= 1.0
        if key[0] in ("original", "noisy input"):
            continue
        assert row["bytes"] > 0, key
        if not row["lossless"]:
            assert math.isfinite(row["psnr"]) and row["psnr"] < row["mean_image_psnr"] + 60, key
    for lossless in (("PNG", "optimize"), ("WebP lossless", "method 6")):
        row = rows[lossless]
        assert row["lossless"] and row["psnr"] is None
        assert row["mean_image_psnr"] == metrics.PSNR_CAP and row["ssim"] == 1.0
    v2 = rows[("latentwire", "q1")]
    assert v2["bytes"] - v2["payload_bytes"] == 2 and v2["info_bytes"] > 0
    assert len(v1_rows) == 2
    for v1 in v1_rows:
        assert v1["bytes"] - v1["payload_bytes"] == 15 and v1["info_bytes"] is None
    assert rows[("latentwire denoise", "q2-denoise")]["extra"]["psnr_noisy_input"] < 20

    table = (out / "results.md").read_text()
    assert "| latentwire | q1 |" in table and "| PNG | optimize |" in table and "∞" in table


def test_classifier_is_cached_by_data_and_hyperparameters(
    tmp_path: Path, mnist_test: MnistSplit, monkeypatch: pytest.MonkeyPatch
) -> None:
    images, labels = mnist_test.images[:300], mnist_test.labels[:300]
    config = classifier.ClassifierConfig(channels=(4, 8), hidden=16, epochs=1, train_limit=200)
    first = classifier.load_or_train(config, images, labels, images[200:], labels[200:], cache_dir=tmp_path)
    assert first.info["train_images"] == 200 and len(list(tmp_path.iterdir())) == 2

    def no_training(*args: object) -> None:
        raise AssertionError("the cached classifier should have been used")

    monkeypatch.setattr(classifier, "train", no_training)
    again = classifier.load_or_train(config, images, labels, images[200:], labels[200:], cache_dir=tmp_path)
    assert again.key == first.key
    assert np.array_equal(again.predict(images[200:]), first.predict(images[200:]))
    other_data = classifier.cache_key(config, images[1:201], labels[1:201])
    other_config = classifier.cache_key(dataclasses.replace(config, seed=1), images[:200], labels[:200])
    assert len({first.key, other_data, other_config}) == 3


def test_full_training_must_reach_the_required_accuracy(tmp_path: Path, mnist_test: MnistSplit) -> None:
    config = classifier.ClassifierConfig(channels=(4, 8), hidden=16, epochs=1)  # no limit: checked
    images, labels = mnist_test.images[:100], mnist_test.labels[:100]
    with pytest.raises(classifier.ClassifierError, match="at least 99%"):
        classifier.load_or_train(config, images, labels, images, labels, cache_dir=tmp_path)
    assert not list(tmp_path.glob("*"))  # nothing cached
