"""The shipped ST-VLA-S (assets/models/stvla-s): it loads strictly (every weight of the files
used, none missing), predicts actions inside its own grid's range, and on the bundled push episode
(a held-out seed of the same camera) predicts the demonstration's moves far better than standing
still would."""

from __future__ import annotations

import json

import numpy as np
import pytest

from stvla_core.episodes import load_episode
from stvla_core.model.shipped import STVLA_S_DIR, stvla_s_available

pytestmark = pytest.mark.skipif(not stvla_s_available(), reason="assets/models/stvla-s is not present")
EPISODES = STVLA_S_DIR.parents[1] / "episodes"


@pytest.fixture(scope="module")
def policy():
    from stvla_core.policy import Policy

    return Policy.from_pretrained("stvla-s")


def test_every_stored_weight_is_loaded(policy) -> None:
    # the files use the official SpatialVLA names; loading maps them and refuses any missing or
    # unexpected one, so equal counts mean every stored tensor went to one parameter
    stored = json.loads((STVLA_S_DIR / "model.safetensors.index.json").read_text())["weight_map"]
    assert len(stored) == len(policy.model.state_dict()) > 400
    assert (policy.config.depth, policy.config.trace.variant, policy.config.trace.buffer) == (
        "traced",
        "C",
        30,
    )


def test_predictions_are_in_range_and_follow_the_demonstration(policy) -> None:
    stats = json.loads((STVLA_S_DIR / "processor_config.json").read_text())["statistics"]
    action = stats["maniskill_panda_10hz"]["action"]
    lo, hi = np.array(action["q01"]), np.array(action["q99"])
    ep = load_episode(EPISODES / "maniskill_push.npz")
    errors, moves = [], []
    for t in range(3, len(ep), 6):
        chunk = policy.predict(ep, t).chunk
        assert chunk.shape == (4, 7) and np.isfinite(chunk).all()
        span = np.maximum(hi - lo, 1e-6)
        assert ((chunk[:, :6] >= lo[:6] - 0.01 * span[:6]) & (chunk[:, :6] <= hi[:6] + 0.01 * span[:6])).all()
        assert set(np.unique(chunk[:, 6])) <= {0.0, 1.0}
        errors.append(np.abs(chunk[0, :3] - ep.actions[t, :3]).mean())
        moves.append(np.abs(ep.actions[t, :3]).mean())
    # measured 1.5 mm against moves of ~4 mm; predicting no motion scores the moves themselves
    assert np.mean(errors) < 0.5 * np.mean(moves), (np.mean(errors), np.mean(moves))
