import math

import pytest

from headstart.training.divergence import DIVERGED_LOSS, Diverged, blown_up, divergence_note


@pytest.mark.parametrize("loss", [math.nan, math.inf, -math.inf, DIVERGED_LOSS * 10])
def test_blown_up_losses(loss: float) -> None:
    assert blown_up(loss)


@pytest.mark.parametrize("loss", [0.0, 2.3, 95.0, DIVERGED_LOSS])
def test_sane_losses(loss: float) -> None:
    assert not blown_up(loss)


def test_the_note_keeps_the_best_epoch_or_refuses() -> None:
    note = divergence_note("epoch 3 (full phase, step 2: training loss nan)", best_epoch=2,
                           finished=2)  # fmt: skip
    assert "keeps epoch 2" in note and "--lr" in note
    with pytest.raises(Diverged, match="no model to keep"):
        divergence_note("epoch 1 (head phase, validation loss inf)", best_epoch=None, finished=0)
