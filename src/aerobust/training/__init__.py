"""Training specs, the training loop and the content-addressed run store."""

from aerobust.training.defaults import adversarial_settings, data_family, default_spec
from aerobust.training.losses import LOSSES, make_loss
from aerobust.training.spec import TrainSpec
from aerobust.training.store import Run, RunStore, default_store
from aerobust.training.trainer import TrainingDiverged, evaluate_model, fit

__all__ = [
    "LOSSES",
    "Run",
    "RunStore",
    "TrainSpec",
    "TrainingDiverged",
    "adversarial_settings",
    "data_family",
    "default_spec",
    "default_store",
    "evaluate_model",
    "fit",
    "make_loss",
]
