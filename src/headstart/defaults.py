"""Defaults that several commands and the library share, one constant each (no imports, so the
CLI's ``--help`` shows them without loading torch)."""

__all__ = ["INFERENCE_BATCH_SIZE", "MAX_PIXELS", "TOPK", "UPLOAD_MAX_PIXELS"]

TOPK = 5
"""Labels per image: ``predict --topk``, ``predict_files(topk=)`` and the server's ``?topk=``."""
INFERENCE_BATCH_SIZE = 64
"""Images per forward pass of ``predict``, ``evaluate`` and ``embed`` (no gradients are kept)."""
MAX_PIXELS = 89_478_485
"""Largest width * height decoded from files (Pillow's own limit): training, ``check``,
``predict``, ``evaluate``; larger images are rejected as bombs."""
UPLOAD_MAX_PIXELS = 40_000_000
"""Largest width * height ``serve`` decodes from an upload: lower than ``MAX_PIXELS`` because
anyone who reaches the port may send one, and ``--max-concurrency`` of them decode at once
(40 M pixels are 120 MB as RGB)."""
