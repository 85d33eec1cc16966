"""latentwire-eval: rate, distortion and recognizability of the quality ladder against standard codecs.

Modules: ``evaluate`` (the CLI and the run), ``metrics`` (PSNR, SSIM, result rows),
``baselines`` (PNG, WebP, JPEG through Pillow; PCA with an ideal entropy-code estimate),
``classifier`` (the cached reference digit classifier) and ``report`` (markdown, JSON, plot).
See docs/evaluation.md.
"""
