"""The data layer: class-per-folder scanning and splits, the one image decoder, transforms.

Import what you need from its modules (``headstart.data.folders``, ``headstart.data.images``, ...):
this package imports nothing itself, so that reading a folder (``headstart check``) does not pull
in torch and torchvision, which only datasets, transforms and caches need.
"""
