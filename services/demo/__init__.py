"""The browser demo: a static page (plain HTML, CSS and JavaScript, no build step) that draws or
takes a digit, sends it to the sender's ``/encode`` and the code to the receiver's ``/decode``.

The gateway serves these files at ``/``; without Docker the sender serves them at ``/demo/``.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["STATIC_DIR"]

STATIC_DIR: Path = Path(__file__).resolve().parent / "static"
