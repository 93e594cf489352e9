"""What every result and checkpoint records about the software that made it."""

from __future__ import annotations

import platform

import numpy as np
import torch


def library_versions() -> dict[str, str]:
    from aerobust import __version__

    return {
        "aerobust": __version__,
        "torch": str(torch.__version__),
        "numpy": str(np.__version__),
        "python": platform.python_version(),
    }
