"""Running a model fast on one device: layout and autocast settings, the timed trial that picks
them, depthwise convolutions kept in float32, and the allocator setting for steady memory."""

from headstart.speed.allocator import keep_freed_memory
from headstart.speed.settings import SpeedSettings, describe, prefers_channels_last
from headstart.speed.trial import training_candidates, tune_speed

__all__ = [
    "SpeedSettings",
    "describe",
    "keep_freed_memory",
    "prefers_channels_last",
    "training_candidates",
    "tune_speed",
]
