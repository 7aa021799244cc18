"""Evaluation: metrics as pure functions, the evaluation result, the report and its pictures."""

from headstart.evaluation.result import EvalResult, save_eval_json

__all__ = ["EvalResult", "save_eval_json"]
