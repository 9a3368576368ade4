"""CoTracker3 (Karaev et al., 2024): weight-compatible network, predictor and the `cotracker3`
tracker over the rolling buffer."""

from stvla_core.tracking.cotracker3.predictor import CoTracker3Predictor, PredictorConfig
from stvla_core.tracking.cotracker3.tracker import CoTracker3Config, CoTracker3Tracker

__all__ = ["CoTracker3Config", "CoTracker3Predictor", "CoTracker3Tracker", "PredictorConfig"]
