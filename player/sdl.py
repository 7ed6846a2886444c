"""The screen modules' one import of pygame (SDL).

``import pygame`` also imports numpy when it is installed (for ``pygame.surfarray``, which the
screen never uses): 11 MB of resident memory on a board that may have 1 GB. numpy is kept out
of that import, and only of that import: a later ``import numpy`` (Piper's ONNX runtime needs
it) works as usual.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")  # no banner on stdout
_keep_numpy_out = "numpy" not in sys.modules
if _keep_numpy_out:
    sys.modules["numpy"] = None  # type: ignore[assignment]  # "import numpy" raises ImportError
try:
    import pygame as pygame
    import pygame.freetype
finally:
    if _keep_numpy_out:
        del sys.modules["numpy"]

__all__ = ["pygame"]
