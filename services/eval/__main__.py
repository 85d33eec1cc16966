"""``python -m latentwire_eval`` = ``latentwire-eval``."""

from latentwire_eval.evaluate import run

run()
