"""aerobust: autoencoders in adversarial settings."""

__version__ = "0.1.0"
