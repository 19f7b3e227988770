"""The ML voter in the panel, from Settings: ``ml_voter_from_settings`` is what the panel builder calls.

- No model file at ``Settings.ml_model_file`` → ``None`` (the panel runs without it) and one log line per path and
  process saying so and how to get one; scikit-learn is not even imported.
- A file this code cannot use (other features or timeframes, another scikit-learn/NumPy, not an ML-voter model, a
  broken file) → ``ModelMismatch`` whose message says what to do; ``main.py run`` prints it and refuses to start.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from settings import Settings

if TYPE_CHECKING:
    from strategies.ml_voter import MLVoter

log = logging.getLogger(__name__)

_said_absent: set[Path] = set()


def ml_voter_from_settings(settings: Settings) -> MLVoter | None:
    path = settings.ml_model_file
    if path.parent.is_dir():
        from strategies.model_swap import finish_interrupted

        finish_interrupted(path)  # a retrain's swap cut short by a crash: the model and its metadata belong together
    if not path.is_file():
        if path not in _said_absent:
            _said_absent.add(path)
            log.info("no ML model at %s: the panel runs without the ML voter (train one with `python main.py train`)",
                     path)
        return None
    from strategies.ml_voter import load_ml_voter

    voter = load_ml_voter(path, tuple(settings.timeframes), settings.ml_threshold)
    log.info("ML voter in the panel: %s, threshold %g", voter.description, voter.threshold)
    return voter
