"""`oracle`: the ground-truth 2D positions a simulator episode carries (its gripper points), for
judging the other trackers and for traces free of tracking error."""

from __future__ import annotations

import numpy as np

from stvla_core.tracking.base import TRACKERS, Clip, TrackerUnavailableError, Tracks


class OracleTracker:
    name = "oracle"

    def track(self, clip: Clip) -> Tracks:
        if clip.gt_points is None or clip.gt_visible is None:
            raise TrackerUnavailableError(
                "tracker 'oracle' needs ground-truth point positions (Episode.gt_points), and this "
                "episode has none; choose 'lk' or 'cotracker3'"
            )
        return Tracks(clip.gt_points.astype(np.float32), clip.gt_visible.astype(bool))


@TRACKERS.register("oracle")
def make_oracle() -> OracleTracker:
    return OracleTracker()
