"""Inference: load any model reference, predict, evaluate, export and serve (never training).

Modules, each with one job:

- ``device``: the one check of a user's device value (``resolve_device``).
- ``load``: any reference (run folder, model folder, exported file, zoo name) onto a device.
- ``predict``: the one decode-run-top-k path: ``ModelRunner``, ``predict_files`` and friends.
- ``evaluate``: metrics of a loaded model on labelled samples.
- ``exported``: exported files (ONNX, TorchScript): their description, loading and running.
- ``export``: building exports in memory, the parity check, the one atomic write.
- ``serve``: the HTTP app; ``uploads`` (bounded request bodies) and ``batcher``
  (micro-batching) are its parts.
"""
