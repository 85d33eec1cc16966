"""latentwire: learned compression of handwritten digits into codes of a few bytes.

The package both services import: networks (``nets``), the codec (``codec``) and the latent
codecs it runs, one class per kind (``latent_codecs``), the code format (``bitstream``), split
checkpoints (``checkpoint``), MNIST access (``data``), image preprocessing (``preprocess``) and
the error tree (``errors``).

>>> from latentwire import Compressor, Decompressor
>>> codes = Compressor.from_checkpoint().compress(digits)       # uint8 (N, 28, 28) → list[bytes]
>>> images = Decompressor.from_checkpoint().decompress(codes)   # → uint8 (N, 28, 28)
"""

from latentwire.codec import Compressor, Decompressor
from latentwire.errors import LatentwireError

__all__ = ["Compressor", "Decompressor", "LatentwireError", "__version__"]

__version__ = "0.1.0"
