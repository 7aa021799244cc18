"""Training: strategy phases on a plain loop run by Lightning Fabric."""

from __future__ import annotations

from headstart.training.callbacks import BestTracker, EarlyStopping
from headstart.training.checkpoint import load_checkpoint, save_checkpoint
from headstart.training.loop import build_loaders, evaluate, train_one_epoch
from headstart.training.optim import build_optimizer, build_scheduler
from headstart.training.runner import TrainResult, create_fabric, run_training
from headstart.training.strategies import Phase, plan_phases

__all__ = [
    "BestTracker",
    "EarlyStopping",
    "Phase",
    "TrainResult",
    "build_loaders",
    "build_optimizer",
    "build_scheduler",
    "create_fabric",
    "evaluate",
    "load_checkpoint",
    "plan_phases",
    "run_training",
    "save_checkpoint",
    "train_one_epoch",
]
