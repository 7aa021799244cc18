"""The data layer: class-per-folder scanning and splits, the one image decoder, transforms."""

from headstart.data.datasets import ImageDataset
from headstart.data.demo import materialize_demo_data
from headstart.data.folders import (
    DataSplits,
    Sample,
    list_images,
    load_eval_samples,
    load_splits,
    read_splits,
    splits_json,
)
from headstart.data.images import (
    DEFAULT_MAX_PIXELS,
    IMAGE_EXTENSIONS,
    decode_image,
    image_to_tensor,
)
from headstart.data.transforms import (
    AUGMENT_PRESETS,
    build_eval_transform,
    build_train_transform,
)

__all__ = [
    "AUGMENT_PRESETS",
    "DEFAULT_MAX_PIXELS",
    "IMAGE_EXTENSIONS",
    "DataSplits",
    "ImageDataset",
    "Sample",
    "build_eval_transform",
    "build_train_transform",
    "decode_image",
    "image_to_tensor",
    "list_images",
    "load_eval_samples",
    "load_splits",
    "materialize_demo_data",
    "read_splits",
    "splits_json",
]
