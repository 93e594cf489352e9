"""aerobust: autoencoders in adversarial settings.

The Python API in five names: ``load_dataset``, ``load_model``, ``attacks.get``,
``evaluate`` and ``audit`` (``aerobust.audit(model, x, y, eps=...)``: is a defense
robust, or does it only mask gradients?); ``AEClassifier`` puts any autoencoder in front
of any classifier.
"""

__version__ = "0.1.0"

from typing import Any

from aerobust import attacks
from aerobust.attacks import bpda, evaluate
from aerobust.data import load_dataset
from aerobust.models import AEClassifier, load_model

__all__ = ["AEClassifier", "__version__", "attacks", "audit", "bpda", "evaluate", "load_dataset",
           "load_model"]


def __getattr__(name: str) -> Any:
    """``aerobust.audit`` on first use: it imports scipy (1.7 s here), which ``import
    aerobust`` and every CLI command that does not audit should not pay for."""
    if name == "audit":
        import aerobust.audit

        return aerobust.audit
    raise AttributeError(f"module 'aerobust' has no attribute {name!r}")
