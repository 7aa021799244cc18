"""A whole training run: data -> audit -> model -> engine -> model folder -> test metrics -> report.

The CLI's ``train`` and ``demo`` commands and ``ImageClassifier.fit`` all call :func:`train_run`;
``headstart train --resume`` calls :func:`resume_run`.
"""

from headstart.pipeline.notes import NOTE_FLAG
from headstart.pipeline.run import RunResult, resume_run, train_run

__all__ = ["NOTE_FLAG", "RunResult", "resume_run", "train_run"]
