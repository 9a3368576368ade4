"""Quality against ground truth, for episodes that carry it: a tracker against the oracle gripper
points, a depth source against the recorded depth. pandas tables for the app and the CLI."""

from __future__ import annotations

import numpy as np
import pandas as pd

from stvla_core.buffer import window_indices
from stvla_core.depth import DepthEstimator
from stvla_core.episodes import Episode
from stvla_core.traces.pipeline import episode_key
from stvla_core.traces.render import valid_mask
from stvla_core.tracking import Clip, Tracker

PIXEL_THRESHOLDS = (2, 4, 8)


def _steps(episode: Episode, steps: list[int] | None, stride: int) -> list[int]:
    return list(range(1, episode.num_frames, stride)) if steps is None else steps


def tracker_quality(
    episode: Episode, tracker: Tracker, buffer: int = 30, steps: list[int] | None = None, stride: int = 5
) -> pd.DataFrame:
    """Per step: the tracker follows the ground-truth points visible on frame t back through the
    window; errors count where the ground truth is visible. Columns: step, points, median_px,
    within_2px/4px/8px (share), visibility_agreement (share of (frame, point) pairs whose visible
    flag matches the ground truth). The last row, step 'all', pools every step."""
    if episode.gt_points is None or episode.gt_visible is None:
        raise ValueError(f"episode {episode.name!r} has no ground-truth points to judge a tracker against")
    rows, errs_all, agree_all = [], [], []
    for t in _steps(episode, steps, stride):
        idx = window_indices(t, buffer)
        q_ok = episode.gt_visible[t]
        if not q_ok.any() or len(idx) < 2:
            continue
        gt_p, gt_v = episode.gt_points[idx][:, q_ok], episode.gt_visible[idx][:, q_ok]
        clip = Clip(episode.frames[idx], idx, gt_p, gt_v, queries=gt_p[-1], key=episode_key(episode))
        tr = tracker.track(clip)
        both = gt_v & tr.visible
        err = np.linalg.norm(tr.points - gt_p, axis=-1)[both]
        agree = (tr.visible == gt_v).ravel()
        errs_all.append(err)
        agree_all.append(agree)
        rows.append(_track_row(t, int(q_ok.sum()), err, agree))
    if not rows:
        raise ValueError(f"episode {episode.name!r}: no step has visible ground-truth points")
    rows.append(
        _track_row(
            "all", int(sum(r["points"] for r in rows)), np.concatenate(errs_all), np.concatenate(agree_all)
        )
    )
    return pd.DataFrame(rows)


def _track_row(step: int | str, n: int, err: np.ndarray, agree: np.ndarray) -> dict[str, object]:
    row: dict[str, object] = {"step": step, "points": n}
    row["median_px"] = float(np.median(err)) if err.size else float("nan")
    for th in PIXEL_THRESHOLDS:
        row[f"within_{th}px"] = float((err <= th).mean()) if err.size else float("nan")
    row["visibility_agreement"] = float(agree.mean())
    return row


def depth_errors(pred: np.ndarray, gt: np.ndarray) -> tuple[float, float, int]:
    """(AbsRel, share with max(pred/gt, gt/pred) < 1.25, pixels) over pixels valid in both."""
    ok = valid_mask(pred) & valid_mask(gt)
    n = int(ok.sum())
    if n == 0:
        return float("nan"), float("nan"), 0
    p, g = pred[ok].astype(np.float64), gt[ok].astype(np.float64)
    absrel = float(np.mean(np.abs(p - g) / g))
    delta = float(np.mean(np.maximum(p / g, g / p) < 1.25))
    return absrel, delta, n


def depth_quality(
    episode: Episode, estimator: DepthEstimator, steps: list[int] | None = None, stride: int = 5
) -> pd.DataFrame:
    """Per step AbsRel and delta<1.25 of the estimator against the episode's recorded depth; the
    estimator sees only the RGB frame. Last row, step 'all', pools the pixels of every step."""
    if episode.depth is None:
        raise ValueError(f"episode {episode.name!r} has no recorded depth to judge a depth source against")
    rows = []
    tot = np.zeros(3)
    for t in list(range(0, episode.num_frames, stride)) if steps is None else steps:
        pred = estimator.estimate(episode.frames[t], None)
        absrel, delta, n = depth_errors(pred, episode.depth[t])
        rows.append({"step": t, "abs_rel": absrel, "delta_1.25": delta, "pixels": n})
        if n:
            tot += (absrel * n, delta * n, n)
    n_all = int(tot[2])
    rows.append(
        {
            "step": "all",
            "abs_rel": tot[0] / n_all if n_all else float("nan"),
            "delta_1.25": tot[1] / n_all if n_all else float("nan"),
            "pixels": n_all,
        }
    )
    return pd.DataFrame(rows)
