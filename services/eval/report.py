"""Writing the results: ``results.md`` (a table), ``results.json`` and ``rd.png`` (rate–distortion).

Rows are grouped — references, our ladder, its denoiser and v1 model, then each baseline
family — and sorted by bytes within a group.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from latentwire_eval.metrics import PSNR_CAP, Row

__all__ = ["METHOD_ORDER", "sort_rows", "write_json", "write_markdown", "write_plot"]

#: Group order in the table; unknown methods go last.
METHOD_ORDER = (
    "original",
    "noisy input",
    "latentwire",
    "latentwire denoise",
    "latentwire v1",
    "PCA (ideal)",
    "JPEG",
    "WebP",
    "WebP lossless",
    "PNG",
)


def sort_rows(rows: Sequence[Row]) -> list[Row]:
    def key(row: Row) -> tuple[int, float]:
        group = METHOD_ORDER.index(row.method) if row.method in METHOD_ORDER else len(METHOD_ORDER)
        return group, row.bytes if row.bytes is not None else -1.0

    return sorted(rows, key=key)


def _num(value: float | None, digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if math.isinf(value):
        return "∞"
    return f"{value:.{digits}f}"


def write_markdown(path: Path, rows: Sequence[Row], header: dict[str, Any]) -> None:
    lines = [
        "# latentwire evaluation",
        "",
        f"{header['date']} · {header['test_images']} MNIST test images · `{header['command']}`",
        "",
        f"Ladder: {header['ladder_ids']}",
        "",
        f"Reference classifier {header['classifier_key']}: accuracy on the reconstructions "
        f"(on the originals it is in the first row). Per-image PSNR counts an exact image as "
        f"{PSNR_CAP:.0f} dB. PCA bytes are an ideal entropy-code estimate, not a file.",
        "",
        "| method | setting | bytes/image | payload bytes | info bytes | PSNR (mean MSE) dB "
        "| mean per-image PSNR dB | SSIM | accuracy % | notes |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    for row in sort_rows(rows):
        q = row.quality
        cells = [
            row.method,
            row.setting,
            _num(row.bytes, 1),
            _num(row.payload_bytes, 1),
            _num(row.info_bytes, 2),
            _num(q.psnr, 2),
            _num(q.mean_psnr, 2),
            _num(q.ssim, 4),
            _num(100 * q.accuracy, 2),
            row.notes,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    path.write_text("\n".join(lines) + "\n")


def _finite(value: Any) -> Any:
    """Strict JSON: NaN and ±∞ (anywhere, e.g. in a checkpoint's recorded metrics) become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def write_json(path: Path, rows: Sequence[Row], header: dict[str, Any]) -> None:
    document = _finite({**header, "rows": [row.to_dict() for row in sort_rows(rows)]})
    path.write_text(json.dumps(document, indent=2, allow_nan=False) + "\n")


_STYLE = {  # method -> (marker, linestyle)
    "PCA (ideal)": ("s", "-"),
    "JPEG": ("^", "-"),
    "WebP": ("v", "-"),
}


def write_plot(path: Path, rows: Sequence[Row], *, title: str) -> None:
    """Bytes per image (log) against PSNR of the mean MSE; lossless codecs as vertical lines."""
    figure = Figure(figsize=(8, 5.5), layout="constrained")
    ax = figure.add_subplot()
    ordered = sort_rows(rows)
    ours = [r for r in ordered if r.method == "latentwire" and r.bytes]
    if ours:
        ax.plot(
            [r.bytes or 0 for r in ours],
            [r.quality.psnr for r in ours],
            "o-",
            color="C3",
            linewidth=2.2,
            markersize=7,
            label="latentwire ladder",
            zorder=5,
        )
        for r in ours:
            ax.annotate(
                r.setting, (r.bytes or 0, r.quality.psnr), textcoords="offset points", xytext=(5, -12)
            )
    for method, (marker, style) in _STYLE.items():
        family = [r for r in ordered if r.method == method and r.bytes and not r.lossless]
        if family:
            ax.plot(
                [r.bytes or 0 for r in family], [r.quality.psnr for r in family], marker=marker,
                linestyle=style, label=method,
            )  # fmt: skip
    for method, marker, color in (("latentwire denoise", "*", "C3"), ("latentwire v1", "D", "C4")):
        for r in (r for r in ordered if r.method == method and r.bytes and not r.lossless):
            if method == "latentwire denoise":
                label = (
                    f"latentwire denoiser {r.setting.removesuffix('-denoise')} (noisy in, scored vs clean)"
                )
            else:
                label = f"latentwire v1 seed model, {r.setting.removesuffix(' (v1)')}"
            ax.plot([r.bytes or 0], [r.quality.psnr], marker=marker, markersize=13 if marker == "*" else 8,
                    linestyle="none", color=color, markerfacecolor="white" if marker == "D" else color,
                    label=label)  # fmt: skip
    lossless = [r for r in ordered if r.lossless and r.bytes and r.method not in ("original", "noisy input")]
    for i, r in enumerate(lossless):
        ax.axvline(
            r.bytes or 0, color=f"C{7 + i}", linestyle=":", label=f"{r.method} ({r.bytes:.0f} B, lossless)"
        )
    ax.set_xscale("log")
    ax.set_xlabel("bytes per image (log scale)")
    ax.set_ylabel("PSNR of the mean MSE (dB)")
    ax.set_title(title)
    ax.grid(True, which="major", alpha=0.5)
    ax.grid(True, which="minor", alpha=0.2)
    ax.legend(fontsize="small", loc="best")
    figure.savefig(path, dpi=120)
