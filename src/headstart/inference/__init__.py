"""Inference: load any model reference, predict, evaluate, export and serve (never training)."""
