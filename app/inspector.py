"""The inspector's event handlers as plain methods (no layout here): each takes component values
and returns component values, so tests call them directly. Every computation is stvla_core's,
reached through the frame cache.

Handlers that touch an episode take `session`, the browser session's id (app/layout.py passes
Gradio's session hash): a session sees the bundled episodes and its own uploads only."""

from __future__ import annotations

import html
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
import pandas as pd

from app.backends import Backends
from app.cache import EpisodeRun, FrameCache, StepView, ViewSettings
from app.compare import error_table_html, pending_html
from app.episodes import EpisodeStore
from app.export import write_actions_csv, write_episode_zip
from app.plots import plot_data, with_step
from app.settings import AppSettings
from stvla_core.episodes import ACTION_NAMES, Episode
from stvla_core.traces import VARIANTS

STEP_OUTPUTS = ("message", "info", "buffer", "overlay", "depth", *VARIANTS, "legend", "tokens", "compare")
IMAGE_OUTPUTS = slice(2, 2 + 4 + len(VARIANTS))  # buffer .. legend: the pictures the browser swaps itself
POLL_OUTPUTS = ("progress", "plot", "quality", "message", "compare", "variant_errors", "errors_plot", "seen")


@dataclass
class AppContext:
    """What the handlers share: settings, loaded backends, the episode store and frame cache."""

    settings: AppSettings
    backends: Backends
    store: EpisodeStore
    cache: FrameCache
    work_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="stvla-app-")))

    def __post_init__(self) -> None:
        self.store.on_forget = self.cache.drop_episodes  # a forgotten upload's cached runs go too
        (self.work_dir / "frames").mkdir(parents=True, exist_ok=True)
        (self.work_dir / "export").mkdir(parents=True, exist_ok=True)

    @property
    def export_dir(self) -> Path:
        return self.work_dir / "export"

    def close(self) -> None:
        """Stop the background threads and delete the app's files."""
        self.cache.close()
        shutil.rmtree(self.work_dir, ignore_errors=True)

    @classmethod
    def create(cls, settings: AppSettings) -> AppContext:
        settings.validate()
        work_dir = Path(tempfile.mkdtemp(prefix="stvla-app-"))
        return cls(
            settings=settings,
            backends=Backends(settings),
            store=EpisodeStore(
                settings.episodes_dir, settings.max_upload_bytes, unpack_dir=work_dir / "uploads"
            ),
            cache=FrameCache(settings.cache_episodes),
            work_dir=work_dir,
        )


def error_box(text: str) -> str:
    return f"<div class='stvla-error' role='alert'>⚠ {html.escape(text)}</div>" if text else ""


def describe(e: BaseException) -> str:
    return str(e) or type(e).__name__


class Inspector:
    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    # -- runs -------------------------------------------------------------------------------
    def view_settings(
        self, buffer: float, tracker: str, depth: str, max_traces: float, thickness: float, policy: str = ""
    ) -> ViewSettings:
        policy = (policy or "").strip() or self.ctx.settings.policy
        return ViewSettings(int(buffer), tracker, depth, int(max_traces), int(thickness), policy)

    def key(self, episode_id: str, view: ViewSettings) -> tuple[Any, ...]:
        return (episode_id, view, self.ctx.backends.generation)

    def run_for(self, episode_id: str, view: ViewSettings, session: str = "") -> EpisodeRun:
        """The cached run (opening it, and starting its precompute, when new). Raises when the
        episode cannot be loaded (or is another session's upload) or the tracker/depth source
        cannot be built."""
        episode = self.ctx.store.get(episode_id, session)  # first: the cache is shared by sessions
        key = self.key(episode_id, view)
        run = self.ctx.cache.get(key)
        if run is not None:
            # a run paused while another episode was viewed resumes its precompute
            return run if run.finished or run.running else self.ctx.cache.open(key, lambda: run)
        b = self.ctx.backends
        _, trained = b.policy_named(view.policy)
        trace = b.trace_config(
            view.buffer, view.tracker, view.depth, view.max_traces, view.line_thickness, trained
        )
        if view.depth == "episode" and episode.depth is None:
            raise ValueError(
                f"episode {episode.name!r} has no recorded depth; choose a depth source that estimates "
                "it: policy (the policy's own estimate), zoedepth, depth_anything"
            )
        if view.tracker == "oracle" and episode.gt_points is None:
            raise ValueError(f"episode {episode.name!r} has no ground-truth points for the oracle tracker")
        root = self.ctx.work_dir / "frames"
        return self.ctx.cache.open(
            key, lambda: EpisodeRun(key, episode, b.policy_for(trace, view.policy), view, root)
        )

    # -- handlers ---------------------------------------------------------------------------
    def episode_choices(self, session: str = "") -> list[tuple[str, str]]:
        return self.ctx.store.choices(session)

    def last_step(self, episode_id: str | None, session: str = "") -> int:
        """The slider's maximum for an episode (1 when there is none to show)."""
        try:
            return max(self.ctx.store.get(episode_id, session).num_frames - 1, 1) if episode_id else 1
        except Exception:
            return 1

    def select_episode(self, episode_id: str | None, *controls: Any, session: str = "") -> tuple[Any, ...]:
        """A new episode: reset the slider to step 0 of its length, then render step 0."""
        if not episode_id:
            return (gr.Slider(maximum=1, value=0), *self.blank("choose or upload an episode"))
        try:
            n = self.ctx.store.get(episode_id, session).num_frames
        except Exception as e:
            return (gr.Slider(maximum=1, value=0), *self.blank(describe(e)))
        slider = gr.Slider(minimum=0, maximum=max(n - 1, 1), value=0, step=1)
        return (slider, *self.render(episode_id, 0, *controls, session=session))

    def end_session(self, session: str) -> None:
        """The browser session ended: its uploads, and what was cached for them, are freed."""
        self.ctx.store.end_session(session)

    def render(
        self,
        episode_id: str | None,
        t: float,
        buffer: float,
        tracker: str,
        depth: str,
        max_traces: float,
        thickness: float,
        policy: str = "",
        shown: str = "",
        compared: str = "",
        session: str = "",
    ) -> tuple[Any, ...]:
        """Outputs STEP_OUTPUTS for step t. Reads the cache; computes only a step not cached yet.

        `shown` is the image folder from which the browser already put this step's pictures on
        screen (app/layout.py: STEPPING_JS, once every step is cached); when it is this run's folder the
        pictures are not sent again, so an answer to an older slider position cannot overwrite a
        newer one. Any other value (a stale folder after new settings) gets the pictures.
        `compared` is the same for the step's depth-input comparison (once every step is compared)."""
        if not episode_id:
            return self.blank("choose or upload an episode")
        try:
            view = self.view_settings(buffer, tracker, depth, max_traces, thickness, policy)
            run = self.run_for(episode_id, view, session)
            t = int(np.clip(int(t), 0, len(run.steps) - 1))
            run.want(t)
            view = run.cached(t) or run.step(t)
        except Exception as e:
            return self.blank(describe(e))
        out = list(self.present(run, view))
        if shown and shown == image_url_dir(run):
            out[IMAGE_OUTPUTS] = [gr.skip()] * len(out[IMAGE_OUTPUTS])
        if compared and compared == image_url_dir(run):
            out[-1] = gr.skip()
        return tuple(out)

    def present(self, run: EpisodeRun, view: StepView) -> tuple[Any, ...]:
        ep = run.episode
        return (
            error_box(run.error or ""),
            info_text(ep, view, run.view.policy),
            view.files["buffer"],
            view.files["overlay"],
            view.files["depth"],
            *(view.files[v] for v in VARIANTS),
            view.files["legend"],
            view.tokens_html,
            comparison_at(run, view.index),
        )

    def blank(self, message: str) -> tuple[Any, ...]:
        return (error_box(message), "", *(None for _ in STEP_OUTPUTS[2:-2]), "", "")

    def plot_at(self, episode_id: str | None, t: float, *controls: Any, session: str = "") -> Any:
        """The actions chart with step t marked. Apart from `render` (chained after it) because
        the browser needs ~0.2 s to redraw seven subplots; the pictures must not wait for that."""
        if not episode_id or not self.ctx.store.visible(episode_id, session):
            return None
        run = self.ctx.cache.get(self.key(episode_id, self.view_settings(*controls)))
        if run is None:
            return gr.skip()
        return with_step(run.figure(), int(np.clip(int(t), 0, len(run.steps) - 1)))

    def poll(
        self, episode_id: str | None, t: float, seen: str, *controls: Any, session: str = ""
    ) -> tuple[Any, ...]:
        """Progress of the background precompute; the chart and quality tables when it moved on.
        `seen` is this session's last reported state, so an idle poll sends nothing large."""
        idle = (*(gr.skip() for _ in POLL_OUTPUTS[1:-1]), seen)
        if not episode_id or not self.ctx.store.visible(episode_id, session):
            return ("", *idle)
        run = self.ctx.cache.get(self.key(episode_id, self.view_settings(*controls)))
        if run is None:
            return ("", *idle)
        state = f"{run.key}|{run.done}|{run.compared}|{run.finished}|{run.error}|{run.compare_error}"
        if state == seen:
            return (gr.skip(), *idle)
        t = int(np.clip(int(t), 0, len(run.steps) - 1))
        figure, table = run.errors()
        return (
            progress_html(run),
            with_step(run.figure(), t),
            quality_text(run),
            # only a run's own error: "" would wipe a message of another handler (a bad upload)
            error_box(run.error) if run.error else gr.skip(),
            comparison_at(run, t),
            error_table_html(table, len(run.steps)),
            plot_data(figure),
            state,
        )

    def upload(self, path: str | None, session: str = "") -> tuple[Any, str]:
        """Load an uploaded episode (or dataset) into this session and select it; a bad file only
        shows its error."""
        if not path:
            return gr.skip(), ""
        try:
            episode_id = self.ctx.store.upload(path, session)
        except Exception as e:
            # the upload's temporary folder means nothing to the user: name the file only
            text = describe(e).replace(str(Path(path)), Path(path).name)
            text = text.replace(str(self.ctx.store.unpack_dir) + "/", "")
            return gr.skip(), error_box(f"could not load {Path(path).name!r}: {text}")
        return gr.Dropdown(choices=self.episode_choices(session), value=episode_id), ""

    def open_path(self, path: str | None, session: str = "") -> tuple[Any, str]:
        """Load an episode file or folder (a LeRobot dataset: listed, episodes decoded when
        picked) from a path on the server's machine into this session and select it."""
        if not path or not path.strip():
            return gr.skip(), error_box(
                "type the path of an episode file, a LeRobot dataset or a frames folder"
            )
        try:
            episode_id = self.ctx.store.open(path.strip(), session)
        except Exception as e:
            return gr.skip(), error_box(f"could not load {path.strip()!r}: {describe(e)}")
        return gr.Dropdown(choices=self.episode_choices(session), value=episode_id), ""

    def dataset_controls(self, episode_id: str | None, session: str = "") -> tuple[Any, Any, Any]:
        """The dataset's episode and camera pickers and its summary, shown only while an episode
        of a dataset is selected."""
        d = self.ctx.store.dataset(episode_id, session)
        if d is None:
            hidden = gr.update(visible=False)
            return hidden, hidden, gr.update(value="", visible=False)
        episodes = [
            (
                f"{e.index}: {'?' if e.length is None else e.length} frames · {'; '.join(e.tasks) or '(no task)'}",
                e.index,
            )
            for e in d.listing.episodes
        ]
        return (
            gr.Dropdown(choices=episodes, value=d.index, visible=True),
            gr.Dropdown(choices=list(d.listing.cameras), value=d.camera, visible=True),
            gr.update(value=d.describe(), visible=True),
        )

    def pick_episode(
        self, episode_id: str | None, index: float | None, camera: str | None, session: str = ""
    ) -> tuple[Any, str]:
        """Another episode or camera of the selected dataset: select it (decoded on first use)."""
        if not episode_id or index is None or not camera:
            return gr.skip(), ""
        try:
            picked = self.ctx.store.pick(episode_id, int(index), camera, session)
        except Exception as e:
            return gr.skip(), error_box(describe(e))
        return gr.Dropdown(choices=self.episode_choices(session), value=picked), ""

    def policy_traces(self, policy: str | None) -> tuple[Any, ...]:
        """A checkpoint was picked: set b, tracker, depth, K and line thickness to the trace
        settings it was trained with (its trace_config.json), or say why it cannot be loaded."""
        try:
            _, t = self.ctx.backends.policy_named((policy or "").strip())
        except Exception as e:
            return (*(gr.skip() for _ in range(5)), error_box(f"could not load the policy: {describe(e)}"))
        return (t.buffer, t.tracker, t.depth, t.max_traces, t.line_thickness, "")

    def toggle_play(self, playing: bool) -> tuple[bool, gr.Timer, gr.Button]:
        playing = not playing
        return playing, gr.Timer(active=playing), gr.Button(value="⏸ Pause" if playing else "▶ Play")

    def tick(self, episode_id: str | None, t: float, session: str = "") -> tuple[Any, ...]:
        """One frame forward while playing; stops at the last frame."""
        try:
            n = self.ctx.store.get(episode_id, session).num_frames if episode_id else 0
        except Exception:
            n = 0
        if int(t) + 1 >= n:
            return gr.skip(), False, gr.Timer(active=False), gr.Button(value="▶ Play")
        return int(t) + 1, gr.skip(), gr.skip(), gr.skip()

    def export_zip(self, episode_id: str | None, *controls: Any, session: str = "") -> tuple[Any, str]:
        return self._export(episode_id, controls, "traced.zip", write_episode_zip, session)

    def export_csv(self, episode_id: str | None, *controls: Any, session: str = "") -> tuple[Any, str]:
        return self._export(episode_id, controls, "actions.csv", write_actions_csv, session)

    def _export(
        self, episode_id: str | None, controls: Any, suffix: str, write: Any, session: str
    ) -> tuple[Any, str]:
        if not episode_id:
            return None, error_box("choose an episode to export")
        try:
            run = self.run_for(episode_id, self.view_settings(*controls), session)
            safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in run.episode.name)
            out = self.ctx.export_dir / f"{safe}_{suffix}"
            return str(write(run, out)), ""
        except Exception as e:
            return None, error_box(f"export failed: {describe(e)}")


def info_text(ep: Episode, view: StepView, policy: str = "") -> str:
    w = view.window
    act = ", ".join(f"{n} {a:+.3f}" for n, a in zip(ACTION_NAMES, view.action, strict=True))
    return (
        f"**{html.escape(ep.name)}** · instruction: *{html.escape(ep.instruction or '(none)')}*  \n"
        f"**frame {view.index}** of {ep.num_frames - 1} · buffer: frames {int(w[0])}–{int(w[-1])} "
        f"({len(w)}) · traces drawn: {view.active} of {view.tracked} tracked · "
        f"depth scale {view.vmin:.2f}–{view.vmax:.2f} m · policy `{html.escape(policy)}`, depth: {view.depth_source}  \n"
        f"predicted action: {act}"
    )


def comparison_at(run: EpisodeRun, t: int) -> str:
    """The depth-input comparison of step t once cached, else a note that it is on its way."""
    cmp = run.comparisons[t]
    if cmp is not None:
        return cmp.html
    if run.compare_error:
        return error_box(f"depth inputs cannot be compared: {run.compare_error}")
    return pending_html(t)


def image_url_dir(run: EpisodeRun) -> str:
    return f"{run.image_dir.as_posix()}/"


def view_key(episode_id: str, view: ViewSettings) -> str:
    """The inspector inputs as SWAP_IMAGES_JS spells them (episode|b|tracker|depth|K|thickness|policy)."""
    return "|".join(
        str(v)
        for v in (
            episode_id,
            view.buffer,
            view.tracker,
            view.depth,
            view.max_traces,
            view.line_thickness,
            view.policy,
        )
    )


def progress_html(run: EpisodeRun) -> str:
    """Progress bar of the precompute. Once every step's pictures are on disk it also carries
    their folder and the inputs they belong to, for the browser to step through on its own; and
    `data-compared` once every step's comparison is there too."""
    n, total = run.done, len(run.steps)
    if run.error:
        state = "stopped by an error"
    elif n == total and run.quality_done:
        state = "all steps cached"
    elif n == total:
        state = "steps cached; quality vs ground truth..."
    else:
        state = "precomputing in the background"
    ready = ""
    if n == total and not run.error:
        key = html.escape(view_key(run.key[0], run.key[1]), quote=True)
        ready = (
            f" data-dir='{html.escape(image_url_dir(run), quote=True)}' data-key='{key}' data-steps='{total}'"
        )
        if run.compared == total:
            ready += " data-compared='1'"
    compared = "stopped" if run.compare_error else f"{run.compared}/{total}"
    return (
        f"<div class='stvla-progress'{ready}><progress value='{n}' max='{total}'></progress> "
        f"<span>{n}/{total} steps · {state}</span><br><progress value='{run.compared}' max='{total}'>"
        f"</progress> <span>depth inputs compared: {compared}</span></div>"
    )


def _summary(df: pd.DataFrame, cols: list[str]) -> str:
    row = df.iloc[-1]
    return " · ".join(f"{c} {row[c]:.3f}" if isinstance(row[c], float) else f"{c} {row[c]}" for c in cols)


def quality_text(run: EpisodeRun) -> str:
    if not run.quality:
        return "*quality vs ground truth: computed after the steps*"
    parts = []
    tr = run.quality.get("tracker")
    if isinstance(tr, pd.DataFrame):
        cols = ["points", "median_px", "within_2px", "within_4px", "within_8px", "visibility_agreement"]
        parts.append(f"**tracker `{run.view.tracker}` vs oracle points** (all steps): " + _summary(tr, cols))
    elif tr:
        parts.append(f"**tracker vs oracle:** {tr}")
    dq = run.quality.get("depth")
    if isinstance(dq, pd.DataFrame):
        parts.append(
            f"**depth `{run.view.depth}` vs recorded depth**: "
            + _summary(dq, ["abs_rel", "delta_1.25", "pixels"])
        )
    elif dq:
        parts.append(f"**depth vs ground truth:** {dq}")
    return "  \n".join(parts)
