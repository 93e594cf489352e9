"""aerobust: autoencoders in adversarial settings.

The Python API in four names: ``load_dataset``, ``load_model``, ``attacks.get`` and
``evaluate``; ``AEClassifier`` puts any autoencoder in front of any classifier.
"""

__version__ = "0.1.0"

from aerobust import attacks
from aerobust.attacks import bpda, evaluate
from aerobust.data import load_dataset
from aerobust.models import AEClassifier, load_model

__all__ = ["AEClassifier", "__version__", "attacks", "bpda", "evaluate", "load_dataset",
           "load_model"]
