"""Per-episode, per-settings cache of everything the inspector shows for a step, filled by a
background thread (with progress) so that moving the slider over a computed episode only reads
memory. A step the thread has not reached yet is computed on demand and kept."""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from app.compare import COMPARE_MODES, MODE_LABELS, StepComparison, compare_step, error_table, step_errors
from app.episodes import SEP
from app.panels import DISPLAY_SIDE, buffer_strip, fit, legend, thumbnails
from app.plots import actions_figure, errors_figure
from stvla_core.episodes import Episode
from stvla_core.policy import Policy, Prediction
from stvla_core.traces import VARIANTS, TracedFrame, colorize_depth, depth_range, draw_traced
from stvla_core.traces.quality import depth_quality, tracker_quality


@dataclass(frozen=True)
class ViewSettings:
    """The inspector controls that change what is computed (part of the cache key)."""

    buffer: int = 30
    tracker: str = "lk"
    depth: str = "episode"
    max_traces: int = 5
    line_thickness: int = 2
    policy: str = ""  # the checkpoint (app/backends.py: policy_named); "" = the settings' policy


@dataclass
class StepView:
    """Everything shown for one step, as small display arrays."""

    index: int
    window: np.ndarray  # (b,) frame indices, oldest first
    overlay: np.ndarray  # (h, w, 3) uint8 RGB frame with traces
    depth: np.ndarray  # (h, w, 3) uint8 colourised depth of frame t
    traced: dict[str, np.ndarray]  # variant -> (h, w, 3) uint8, same colour scale as depth
    vmin: float  # metres, the shared colour scale
    vmax: float
    legend: np.ndarray  # (h', w', 3) uint8 colour bar with labels
    tracked: int  # points tracked
    active: int  # traces kept and drawn
    action: np.ndarray  # (7,) float32 predicted action for step t (chunk[0])
    tokens: pd.DataFrame  # one row per generated action token
    depth_source: str
    buffer: np.ndarray  # (h, w, 3) uint8 thumbnails of the window
    files: dict[str, str]  # image name -> PNG file of it, encoded once (the slider sends paths)
    tokens_html: str = ""  # the token table, rendered once

    def images(self) -> dict[str, np.ndarray]:
        return {
            "buffer": self.buffer,
            "overlay": self.overlay,
            "depth": self.depth,
            **self.traced,
            "legend": self.legend,
        }


def token_table(pred: Prediction) -> pd.DataFrame:
    """One row per generated token: which action of the chunk, its kind, grid cell, id,
    probability and the top alternatives."""
    rows = []
    for i, tid in enumerate(pred.token_ids):
        k, j = divmod(i, 3)
        tok = pred.tokens[k][j]
        alts = ", ".join(
            f"{int(a)}:{p:.3f}" for a, p in zip(pred.topk_ids[i], pred.topk_probs[i], strict=True)
        )
        rows.append(
            {
                "action": k,
                "kind": tok.kind,
                "cell": "/".join(str(c) for c in tok.cell),
                "token": int(tid),
                "prob": round(float(pred.token_probs[i]), 4),
                "top-k (id:prob)": alts,
            }
        )
    return pd.DataFrame(rows)


def write_png(img: np.ndarray, path: Path) -> str:
    """Fast PNG (zlib level 1): encoding here, once per step, keeps it off the slider's path."""
    ok, buf = cv2.imencode(".png", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise RuntimeError(f"PNG encoding of {path.name} failed")
    path.write_bytes(buf.tobytes())
    return str(path)


def tokens_html(tokens: pd.DataFrame) -> str:
    """The token table as plain HTML: cheaper to send and to draw than a Dataframe component."""
    return "<div class='stvla-tokens'>" + tokens.to_html(index=False, border=0, escape=True) + "</div>"


def make_step_view(pred: Prediction, thumbs: np.ndarray, image_dir: Path) -> StepView:
    """The display images of one prediction's step, also written as PNG files into image_dir."""
    f = pred.traced
    assert f is not None, "inspection predictions carry their traced frame"
    vmin, vmax = depth_range(f.depth, *f.traced.values())
    outline = -(-max(f.depth.shape) // DISPLAY_SIDE)  # still 1 px wide once `fit` scales it down
    view = StepView(
        index=f.index,
        window=f.window.copy(),
        overlay=fit(f.overlay),
        depth=fit(colorize_depth(f.depth, vmin, vmax), nearest=True),
        traced={
            v: fit(draw_traced(f.traced[v], f.masks[v], vmin, vmax, outline), nearest=True) for v in VARIANTS
        },
        vmin=vmin,
        vmax=vmax,
        legend=legend(vmin, vmax),
        tracked=int(f.tracks.points.shape[1]),
        active=int(f.active.points.shape[1]),
        action=pred.action.astype(np.float32),
        tokens=token_table(pred),
        depth_source=pred.depth_source,
        buffer=buffer_strip(thumbs, f.window),
        files={},
    )
    view.tokens_html = tokens_html(view.tokens)
    view.files = {
        name: write_png(img, image_dir / f"{f.index:05d}_{name}.png") for name, img in view.images().items()
    }
    return view


class EpisodeRun:
    """The cached views of one episode under one set of settings, and the thread filling them."""

    def __init__(
        self,
        key: tuple[Any, ...],
        episode: Episode,
        policy: Policy,
        view: ViewSettings,
        root: Path | None = None,
    ) -> None:
        self.key = key
        self.image_dir = Path(tempfile.mkdtemp(prefix="run-", dir=root))
        self.episode = episode
        self.policy = policy
        self.view = view
        self.steps: list[StepView | None] = [None] * episode.num_frames
        self.thumbs = thumbnails(episode.frames)
        self.quality: dict[str, pd.DataFrame | str] = {}
        self.error: str | None = None
        self._lock = threading.Lock()  # the pipeline and its tracker are not thread-safe
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.quality_done = False
        self._figure: tuple[int, dict[str, Any]] | None = None
        # the depth-input comparison: filled after the pictures, the step being viewed first
        self.modes = COMPARE_MODES
        self.comparisons: list[StepComparison | None] = [None] * episode.num_frames
        self._wanted: int | None = None
        self.compare_error: str | None = None
        self._errors: tuple[int, dict[str, Any], pd.DataFrame] | None = None

    # -- reading ----------------------------------------------------------------------------
    @property
    def done(self) -> int:
        return sum(s is not None for s in self.steps)

    @property
    def compared(self) -> int:
        return sum(c is not None for c in self.comparisons)

    @property
    def finished(self) -> bool:
        compared = self.compare_error is not None or self.compared == len(self.steps)
        return self.error is not None or (self.done == len(self.steps) and self.quality_done and compared)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def cached(self, t: int) -> StepView | None:
        return self.steps[t]

    def step(self, t: int) -> StepView:
        """The view of step t: from the cache, or computed now and cached."""
        if not 0 <= t < len(self.steps):
            raise IndexError(f"step {t} outside episode {self.episode.name!r} of {len(self.steps)} frames")
        hit = self.steps[t]
        if hit is not None:
            return hit
        with self._lock:
            if self.steps[t] is None:
                self.steps[t] = make_step_view(
                    self.policy.predict(self.episode, t), self.thumbs, self.image_dir
                )
            return self.steps[t]  # type: ignore[return-value]

    def want(self, t: int) -> None:
        """Step t is on screen: the background compares its depth inputs next."""
        if 0 <= t < len(self.comparisons) and self.comparisons[t] is None:
            self._wanted = t

    def compare(self, t: int) -> StepComparison:
        """The depth-input comparison of step t: from the cache, or computed now and cached (its
        HTML also written as NNNNN_compare.html into image_dir)."""
        hit = self.comparisons[t]
        if hit is not None:
            return hit
        with self._lock:
            if self.comparisons[t] is None:
                preds = self.policy.predict_modes(self.episode, t, self.modes)
                reference = self.policy.config.trace.variant
                cmp = compare_step(preds, self.episode.actions, reference)
                # next to the step's pictures, for the browser to show it on the slider's input
                (self.image_dir / f"{t:05d}_compare.html").write_text(cmp.html, encoding="utf-8")
                self.comparisons[t] = cmp
            return self.comparisons[t]  # type: ignore[return-value]

    def errors(self) -> tuple[dict[str, Any], pd.DataFrame]:
        """The per-input action error chart and table for the steps compared so far (rebuilt only
        when that count grows)."""
        n = self.compared
        if self._errors is None or self._errors[0] != n:
            modes = list(self.modes)
            fig = errors_figure(step_errors(self.comparisons, modes), modes, MODE_LABELS)
            self._errors = (n, fig, error_table(self.comparisons, modes))
        return self._errors[1], self._errors[2]

    def traced_frame(self, t: int) -> TracedFrame:
        """The full-resolution traced frame of step t (for export; depth comes from the cache)."""
        assert self.policy.pipeline is not None
        with self._lock:
            return self.policy.pipeline.at(self.episode, t)

    def predicted_actions(self) -> np.ndarray:
        """(T, 7) float32, NaN for steps not computed yet."""
        out = np.full((len(self.steps), 7), np.nan, np.float32)
        for t, s in enumerate(self.steps):
            if s is not None:
                out[t] = s.action
        return out

    def figure(self) -> dict[str, Any]:
        """The actions chart for the steps computed so far (rebuilt only when that count grows)."""
        n = self.done
        if self._figure is None or self._figure[0] != n:
            self._figure = (n, actions_figure(self.episode.actions, self.predicted_actions()))
        return self._figure[1]

    # -- filling ----------------------------------------------------------------------------
    def start(self) -> None:
        if self.finished or (self._thread is not None and self._thread.is_alive()):
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._fill, name=f"precompute {self.episode.name}", daemon=True
        )
        self._thread.start()

    def stop(self, wait: bool = False) -> None:
        self._stop.set()
        if wait and self._thread is not None:
            self._thread.join()

    def discard(self) -> None:
        """Stop and delete the image files (an evicted run)."""
        self.stop(wait=True)
        shutil.rmtree(self.image_dir, ignore_errors=True)

    def _fill(self) -> None:
        try:
            for t in range(len(self.steps)):
                if self._stop.is_set():
                    return
                self._compare_wanted()
                self.step(t)
            self.figure()  # the finished chart, built here rather than on a slider move
            if not self.quality_done:
                self._compute_quality()
        except Exception as e:  # shown in the UI; the app keeps serving what is cached
            self.error = f"{type(e).__name__}: {e}"
            return
        for t in range(len(self.comparisons)):
            if self._stop.is_set() or self.compare_error:
                return
            self._compare_wanted()
            self._compare_or_note(t)
        self.errors()

    def _compare_wanted(self) -> None:
        t, self._wanted = self._wanted, None
        if t is not None:
            self._compare_or_note(t)

    def _compare_or_note(self, t: int) -> None:
        """A comparison that fails (a depth input this policy cannot take) stops the comparisons
        only, with the reason shown; the pictures keep coming."""
        if self.compare_error:
            return
        try:
            self.compare(t)
        except Exception as e:
            self.compare_error = f"{type(e).__name__}: {e}"

    def _compute_quality(self) -> None:
        ep, pipe = self.episode, self.policy.pipeline
        assert pipe is not None
        with self._lock:
            if ep.gt_points is None:
                self.quality["tracker"] = "no ground-truth points in this episode"
            else:
                try:
                    self.quality["tracker"] = tracker_quality(ep, pipe.tracker, self.view.buffer)
                except ValueError as e:
                    self.quality["tracker"] = str(e)
            if ep.depth is None:
                self.quality["depth"] = "no recorded depth in this episode"
            elif self.view.depth == "episode":
                self.quality["depth"] = "the depth source is the recorded depth itself (no estimate to judge)"
            else:
                self.quality["depth"] = depth_quality(ep, pipe.depth_estimator)
        self.quality_done = True


class FrameCache:
    """Bounded map (episode id, settings, backend generation) -> EpisodeRun. Only the run being
    viewed fills in the background (two cores: one precompute at a time); the others pause and
    keep what they have."""

    def __init__(self, capacity: int = 6) -> None:
        self.capacity = capacity
        self._runs: OrderedDict[tuple[Any, ...], EpisodeRun] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, ...]) -> EpisodeRun | None:
        with self._lock:
            return self._runs.get(key)

    def open(self, key: tuple[Any, ...], make: Any) -> EpisodeRun:
        """The run for key (made by `make()` when missing), now the one filling in the background."""
        with self._lock:
            run = self._runs.get(key)
        if run is None:
            made = make()  # outside the lock: building a depth model can take long
            with self._lock:
                run = self._runs.setdefault(key, made)
        with self._lock:
            self._runs.move_to_end(key)
            for k, other in list(self._runs.items()):
                if k != key:
                    other.stop()
            while len(self._runs) > self.capacity:
                _, old = self._runs.popitem(last=False)
                old.stop()
                threading.Thread(target=old.discard, daemon=True).start()
        run.start()
        return run

    def drop_episodes(self, episode_ids: list[str]) -> None:
        """Discard the runs of these episodes (forgotten uploads), in the background."""
        ids = set(episode_ids)
        with self._lock:  # a dataset's episode ids start with the dataset's id
            gone = [self._runs.pop(k) for k in list(self._runs) if k[0] in ids or k[0].split(SEP)[0] in ids]
        for run in gone:
            run.stop()
            threading.Thread(target=run.discard, daemon=True).start()

    def close(self) -> None:
        with self._lock:
            runs = list(self._runs.values())
        for r in runs:
            r.discard()
