"""The Jobs tab: start a fine-tune or an evaluation from a form, watch the queue, progress and log,
cancel, open results (tables, plots, videos) and load a finished adapter into the Inspector.

The handlers are methods of `JobsTab`, which holds only a `JobManager` and a folder for files sent
to the browser, so tests call them without a browser. Jobs live in `STVLA_JOBS_DIR` (default
`<repo>/jobs`), not in the app's temporary work folder, so they outlive the app.

What the job store repaired when it opened (a damaged index moved aside and rebuilt from the job
folders) is shown at the top of the tab; a store this app cannot open (e.g. one written by a newer
version) leaves the tab with that message only, and the rest of the app works as usual."""

from __future__ import annotations

import dataclasses
import html
import json
import os
import re
import shutil
import sqlite3
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio

from app.inspector import error_box
from stvla_core.depth import DEPTH_ESTIMATORS
from stvla_core.evaluation.closed_loop import PANDA_TASKS, TASKS
from stvla_core.evaluation.executors import SHARD_EXECUTORS
from stvla_core.evaluation.policies import POLICIES
from stvla_core.jobs import (
    SUCCEEDED,
    JobConfigError,
    JobManager,
    JobNotFoundError,
    JobStoreVersionError,
)
from stvla_core.jobs.manager import TABLE_COLUMNS
from stvla_core.registry import UnknownNameError
from stvla_core.traces import VARIANTS
from stvla_core.tracking import TRACKERS

REPO = Path(__file__).resolve().parents[1]
JOBS_DIR_ENV = "STVLA_JOBS_DIR"
JOB_RUNNER_ENV = "STVLA_JOB_RUNNER"  # "local" (default) or "ray": where the app's jobs run
DEFAULT_JOBS_DIR = REPO / "jobs"  # ignored by git
LOG_TAIL_CHARS = 6000
REFRESH_S = 1.0
ANSI_CODES = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

CLOSED_LOOP = "Closed-loop evaluation (ManiSkill3)"
COMPARISON = "Comparison of policy settings (closed loop)"
OFFLINE = "Offline evaluation (recorded episodes)"
FINETUNE = "Fine-tune (LoRA)"
KINDS = {
    CLOSED_LOOP: "evaluate_closed_loop",
    COMPARISON: "evaluate_comparison",
    OFFLINE: "evaluate_offline",
    FINETUNE: "finetune",
}
SETTINGS_EXAMPLE = json.dumps(
    [
        {"label": "none", "policy": "stvla", "policy_kwargs": {"checkpoint": "runs/ablation/none/model"}},
        {"label": "C", "policy": "stvla", "policy_kwargs": {"checkpoint": "runs/ablation/C/model"}},
    ],
    indent=1,
)
RESULT_HEADERS = ["key", "value"]


def jobs_dir() -> Path:
    return Path(os.environ.get(JOBS_DIR_ENV) or DEFAULT_JOBS_DIR)


def jobs_manager(ctx: Any) -> JobManager:
    """The app's JobManager, kept on the context as `ctx.jobs` (created on first use, polled by a
    background thread so queued jobs start without a browser open)."""
    manager = getattr(ctx, "jobs", None)
    if manager is None:
        # Local jobs are bound to the app: killing the app fails its running jobs (their logs stay).
        manager = JobManager(
            jobs_dir(),
            default_runner=os.environ.get(JOB_RUNNER_ENV) or "local",
            runner_options={"local": {"bind_to_owner": True}},
        )
        manager.start_background(REFRESH_S)
        ctx.jobs = manager
    return manager


def store_notice(manager: JobManager) -> str:
    """The job store's repair warnings as HTML ("" when it opened cleanly)."""
    if not manager.store.warnings:
        return ""
    items = "".join(f"<li>{html.escape(w)}</li>" for w in manager.store.warnings)
    return (
        "<div class='stvla-warning' role='status'>⚠ The job store needed repair when the app "
        f"started; no job folder was lost:<ul>{items}</ul></div>"
    )


def finetune_config_class() -> type:
    """The fine-tune config dataclass (imported on use: the module pulls in the model code)."""
    from stvla_core.finetune.config import FinetuneConfig

    return FinetuneConfig


@dataclass(frozen=True)
class FormField:
    """One fine-tune config field as a form input: name, annotation, default (None = required)."""

    name: str
    kind: str  # "bool" | "int" | "float" | "str" | "json"
    default: Any


def form_fields(cls: type) -> list[FormField]:
    """The dataclass's fields as form inputs; types other than bool/int/float/str (lists, dicts,
    optionals of them) are edited as JSON text."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        is_union = typing.get_origin(tp) in (typing.Union, types.UnionType)
        base = args[0] if is_union and len(args) == 1 else tp  # `int | None` is edited as an int
        kind = {bool: "bool", int: "int", float: "float", str: "str"}.get(base, "json")
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            default = f.default_factory()  # type: ignore[misc]
        else:
            default = None
        out.append(FormField(f.name, kind, default))
    return out


def field_value(field: FormField, raw: Any) -> Any:
    """A form input's value as the JSON value of its config field; ValueError naming the field."""
    if field.kind == "bool":
        return bool(raw)
    if field.kind in ("int", "float"):
        if raw is None or raw == "":
            return None
        value = float(raw)
        if field.kind == "int":
            if value != int(value):
                raise ValueError(f"{field.name}: expected a whole number, found {raw!r}")
            return int(value)
        return value
    if field.kind == "str":
        return "" if raw is None else str(raw)
    if isinstance(raw, (list, dict)):  # a CheckboxGroup's choices
        return raw
    text = (raw or "").strip()
    if not text:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{field.name}: expected JSON, found {text!r} ({e.msg})") from None


def _int_or_none(raw: Any, name: str, allow_none: bool = True) -> int | None:
    """Numbers from gr.Number (floats, or None when empty) as ints; 0/empty -> None if allowed."""
    if raw is None or raw == "":
        if allow_none:
            return None
        raise ValueError(f"{name}: expected a number, found nothing")
    value = float(raw)
    if value != int(value):
        raise ValueError(f"{name}: expected a whole number, found {raw!r}")
    value = int(value)
    return None if allow_none and value == 0 else value


@dataclass
class JobView:
    """What the tab shows for the selected job."""

    status: str
    log: str
    table: pd.DataFrame | None
    plot: go.Figure | None
    video: str | None
    adapter: str | None  # folder of a finished fine-tune's LoRA adapter


class JobsTab:
    """Handlers of the Jobs tab over a `JobManager`. `media_dir` receives copies of videos so the
    browser may fetch them (Gradio serves only allowed folders)."""

    def __init__(self, manager: JobManager, media_dir: str | Path, episodes_dir: str | Path) -> None:
        self.jobs = manager
        self.media_dir = Path(media_dir)
        self.episodes_dir = Path(episodes_dir)

    # -- form ---------------------------------------------------------------------------------
    def episode_choices(self) -> list[str]:
        return sorted(p.name for p in self.episodes_dir.glob("*.npz"))

    def closed_loop_config(
        self,
        tasks: list[str],
        episodes: Any,
        max_steps: Any,
        policy: str,
        render_backend: str = "gpu",
        workers: Any = 0,
        executor: str = "local",
    ) -> dict[str, Any]:
        if not tasks:
            raise ValueError("tasks: choose at least one task")
        return {
            "tasks": list(tasks),
            "episodes_per_task": _int_or_none(episodes, "episodes per task", allow_none=False),
            "max_steps": _int_or_none(max_steps, "max steps"),
            "policy": policy,
            "record_video": True,
            "render_backend": render_backend,
            "workers": _int_or_none(workers, "workers") or 0,
            "executor": executor,
        }

    def comparison_config(
        self,
        tasks: list[str],
        episodes: Any,
        max_steps: Any,
        render_backend: str,
        workers: Any,
        executor: str,
        settings: str,
    ) -> dict[str, Any]:
        """The closed-loop fields shared by every setting, and the settings (a JSON list)."""
        config = self.closed_loop_config(
            tasks, episodes, max_steps, "zero", render_backend, workers, executor
        )
        del config["policy"]  # each setting names its own
        try:
            parsed = json.loads(settings or "")
        except json.JSONDecodeError as e:
            raise ValueError(
                f"policy settings: expected a JSON list of {{label, policy, policy_kwargs}}, found {settings!r} ({e.msg})"
            ) from None
        if not isinstance(parsed, list):
            raise ValueError(f"policy settings: expected a JSON list, found {type(parsed).__name__}")
        return {**config, "settings": parsed}

    def offline_config(self, episodes: list[str], policy: str, max_steps: Any) -> dict[str, Any]:
        if not episodes:
            raise ValueError(f"episodes: choose at least one episode from {self.episodes_dir}")
        return {
            "episodes": [str(self.episodes_dir / name) for name in episodes],
            "policy": policy,
            "max_steps": _int_or_none(max_steps, "max steps"),
        }

    def finetune_config(self, values: list[Any]) -> dict[str, Any]:
        cls = finetune_config_class()
        fields = form_fields(cls)
        if len(values) != len(fields):
            raise ValueError(f"fine-tune form: expected {len(fields)} values, found {len(values)}")
        config = {f.name: field_value(f, raw) for f, raw in zip(fields, values, strict=True)}
        if isinstance(config.get("episodes"), list):  # names ticked among the bundled episodes
            config["episodes"] = [str(self.episodes_dir / name) for name in config["episodes"]]
        return {k: v for k, v in config.items() if v is not None}  # empty inputs: the default

    def submit(self, kind_label: str, config: dict[str, Any]) -> tuple[str, str, pd.DataFrame]:
        """(job id or "" on error, error html, jobs table). A bad config submits nothing."""
        kind = KINDS.get(kind_label, kind_label)
        try:
            job = self.jobs.submit(kind, config)
        except (JobConfigError, UnknownNameError, ValueError) as e:
            return "", error_box(str(e)), self.table()
        return job.id, "", self.table()

    def submit_form(
        self,
        kind_label: str,
        cl_tasks: list[str],
        cl_episodes: Any,
        cl_max_steps: Any,
        cl_policy: str,
        cl_backend: str,
        cl_workers: Any,
        cl_executor: str,
        cl_settings: str,
        off_episodes: list[str],
        off_policy: str,
        off_max_steps: Any,
        *ft_values: Any,
    ) -> tuple[str, str, pd.DataFrame]:
        """The Submit button: builds the chosen kind's config from its part of the form."""
        try:
            if kind_label == CLOSED_LOOP:
                config = self.closed_loop_config(
                    cl_tasks, cl_episodes, cl_max_steps, cl_policy, cl_backend, cl_workers, cl_executor
                )
            elif kind_label == COMPARISON:
                config = self.comparison_config(
                    cl_tasks, cl_episodes, cl_max_steps, cl_backend, cl_workers, cl_executor, cl_settings
                )
            elif kind_label == OFFLINE:
                config = self.offline_config(off_episodes, off_policy, off_max_steps)
            elif kind_label == FINETUNE:
                config = self.finetune_config(list(ft_values))
            else:
                raise ValueError(f"job kind: expected one of {', '.join(KINDS)}, found {kind_label!r}")
        except ValueError as e:
            return "", error_box(str(e)), self.table()
        return self.submit(kind_label, config)

    # -- queue --------------------------------------------------------------------------------
    def table(self) -> pd.DataFrame:
        return self.jobs.table()

    def select_row(self, table: pd.DataFrame, evt: gr.SelectData) -> str:
        """A click anywhere in a row selects that row's job."""
        row = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        if isinstance(table, pd.DataFrame) and 0 <= row < len(table):
            return str(table.iloc[row]["id"])
        return gr.skip()

    def cancel(self, job_id: str) -> tuple[str, pd.DataFrame]:
        if not job_id:
            return error_box("select a job first (click its row)"), self.table()
        try:
            before = self.jobs.get(job_id)
            if before.done:
                return error_box(f"job {job_id} was already {before.state}; nothing to cancel"), self.table()
            self.jobs.cancel(job_id)  # a running job shows "cancelling" until its worker has stopped
        except JobNotFoundError as e:
            return error_box(str(e)), self.table()
        return "", self.table()

    # -- the selected job ---------------------------------------------------------------------
    def status(self, job_id: str) -> tuple[str, str, str]:
        """(status markdown, log tail, state key) of a job; the key changes when the job's state
        does, so results are read once per change, not every tick."""
        if not job_id:
            return "Select a job in the table.", "", ""
        try:
            job = self.jobs.get(job_id)
        except JobNotFoundError as e:
            return str(e), "", ""
        line = f"**{job.id}** · {job.kind} · **{job.state}** · {100 * job.progress:.0f}% · {job.message}"
        if job.error:
            line += f"\n\nerror: `{job.error}`"
        log = ANSI_CODES.sub("", self.jobs.log(job_id, LOG_TAIL_CHARS))  # ManiSkill colours its warnings
        return line, log, f"{job.id}:{job.state}"

    def view(self, job_id: str) -> JobView:
        status, log, _ = self.status(job_id)
        view = JobView(status, log, None, None, None, None)
        if not job_id:
            return view
        try:
            job = self.jobs.get(job_id)
        except JobNotFoundError:
            return view
        if job.state != SUCCEEDED:
            view.plot = loss_figure(job.dir)  # a fine-tune's curve so far
            return view
        result = self.jobs.result(job_id)
        view.table = result_table(job.dir, result)
        view.plot = result_plot(job.dir, result)
        video = first_video(job.dir)
        view.video = None if video is None else str(self.publish(job_id, video))
        adapter = adapter_dir(job.dir, result) if job.kind == "finetune" else None
        view.adapter = None if adapter is None else str(adapter)
        return view

    def publish(self, job_id: str, path: Path) -> Path:
        """A copy of a job's file in the media folder (served to the browser)."""
        dest = self.media_dir / "jobs" / job_id / path.name
        if not dest.exists():
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, dest)
        return dest

    def tick(self, job_id: str, shown: str) -> tuple[Any, ...]:
        """The timer: jobs table, status, log; results only when the selected job's state changed."""
        status, log, key = self.status(job_id)
        if key != shown:
            return (self.table(), status, log, key, *self._results(self.view(job_id)))
        skip = gr.skip()
        live = loss_figure(self.jobs.get(job_id).dir) if key.endswith(":running") else None
        return (self.table(), status, log, shown, skip, skip if live is None else live, skip, skip, skip)

    def show(self, job_id: str) -> tuple[Any, ...]:
        """Selecting a job: everything at once."""
        v = self.view(job_id)
        _, _, key = self.status(job_id)
        return (v.status, v.log, key, *self._results(v))

    @staticmethod
    def _results(v: JobView) -> tuple[Any, ...]:
        table = v.table if v.table is not None else pd.DataFrame(columns=RESULT_HEADERS)
        return (
            table,
            v.plot,
            v.video,
            v.adapter or "",
            gr.update(visible=v.adapter is not None),
        )


# -- results on disk --------------------------------------------------------------------------
def result_table(job_dir: Path, result: dict[str, Any]) -> pd.DataFrame:
    """The job's main table: success with 95 % intervals per setting and task (comparison), per
    task (closed loop), per-dimension error (offline), or the result's scalar entries."""
    if (job_dir / "comparison.csv").exists():
        from stvla_core.evaluation.results import comparison_cells

        return comparison_cells(pd.read_csv(job_dir / "comparison.csv")).reset_index()
    if (job_dir / "results.json").exists():
        summary = json.loads((job_dir / "results.json").read_text()).get("summary", result.get("summary", {}))
        return pd.DataFrame(
            [
                {
                    "task": task,
                    "episodes": s["episodes"],
                    "success (%)": round(100 * s["success_rate"], 1),
                    "mean length": round(s["mean_length"], 1),
                }
                for task, s in summary.items()
            ]
        )
    if (job_dir / "summary.csv").exists():
        return pd.read_csv(job_dir / "summary.csv").round(4)
    rows = [
        {"key": k, "value": v if isinstance(v, (int, float, str, bool)) else json.dumps(v)}
        for k, v in result.items()
    ]
    return pd.DataFrame(rows, columns=RESULT_HEADERS)


def result_plot(job_dir: Path, result: dict[str, Any]) -> go.Figure | None:
    """A loss curve, the first saved plotly figure, or closed-loop success bars."""
    curve = loss_figure(job_dir)
    if curve is not None:
        return curve
    figures = sorted(job_dir.glob("*.plotly.json"))
    if figures:
        return pio.from_json(figures[0].read_text())
    from stvla_core.evaluation.results import compare_runs, plot_success

    if (job_dir / "comparison.csv").exists():
        return plot_success(compare_runs([job_dir / run for run in result.get("runs", [])]))
    if (job_dir / "results.json").exists():
        return plot_success(compare_runs([job_dir]))
    return None


def read_losses(job_dir: Path) -> tuple[list[Any], list[float], str] | None:
    """(steps, losses, file name) from the first metrics file with a `loss` column: JSON lines
    (fine-tuning's metrics.jsonl, read while it grows: a half-written last line is skipped) or CSV."""
    for path in sorted(job_dir.rglob("*.jsonl")):
        rows = []
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict) and isinstance(row.get("loss"), (int, float)):
                rows.append(row)
        if rows:
            return [r.get("step", i) for i, r in enumerate(rows)], [r["loss"] for r in rows], path.name
    for path in sorted(job_dir.rglob("*.csv")):
        try:
            df = pd.read_csv(path)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
            continue
        if "loss" in df.columns:
            steps = df["step"] if "step" in df.columns else df.index
            return list(steps), [float(v) for v in df["loss"]], path.name
    return None


def loss_figure(job_dir: Path) -> go.Figure | None:
    series = read_losses(job_dir)
    if series is None:
        return None
    steps, loss, source = series
    fig = go.Figure(go.Scatter(x=steps, y=loss, mode="lines+markers", name="loss"))
    fig.update_layout(title=f"Training loss ({source})", xaxis_title="step", yaxis_title="loss")
    return fig


def first_video(job_dir: Path) -> Path | None:
    videos = sorted(job_dir.rglob("*.mp4"))
    return videos[0] if videos else None


def adapter_dir(job_dir: Path, result: dict[str, Any]) -> Path | None:
    """The LoRA adapter folder of a fine-tune: `result["adapter"]` (relative to the job folder or
    absolute), else the first folder holding `adapter_config.json` (PEFT's file)."""
    named = result.get("adapter")
    if isinstance(named, str) and named:
        path = Path(named) if Path(named).is_absolute() else job_dir / named
        if path.exists():
            return path
    found = sorted(job_dir.rglob("adapter_config.json"))
    return found[0].parent if found else None


def load_adapter(ctx: Any, adapter: str) -> str:
    """Point the Inspector's policy at a LoRA adapter, through the Settings tab's own handler."""
    from app.settings_panel import apply_settings

    if not adapter:
        return error_box("no adapter: select a finished fine-tune job")
    s = ctx.settings
    _, error = apply_settings(ctx, s.policy, adapter, s.depth_model, s.cotracker_checkpoint)
    return error or f"<div>LoRA adapter loaded into the Inspector: <code>{adapter}</code></div>"


# -- layout -----------------------------------------------------------------------------------
def build_jobs_tab(ctx: Any) -> dict[str, Any]:
    """The tab's components and events; call inside `with gr.Tab(...)`. A job store that cannot
    be opened leaves only its message here ("unavailable")."""
    try:
        manager = jobs_manager(ctx)
    except (JobStoreVersionError, OSError, sqlite3.Error) as e:
        text = f"Jobs are unavailable: {e} (job folder {jobs_dir()}, set by {JOBS_DIR_ENV})."
        return {"tab": None, "unavailable": gr.HTML(error_box(text), elem_id="jobs-unavailable")}
    tab = JobsTab(manager, ctx.export_dir, ctx.settings.episodes_dir)
    notice = gr.HTML(store_notice(manager), elem_id="job-store-notice")
    policies = POLICIES.names()
    with gr.Row():
        with gr.Column(scale=2):
            kind = gr.Radio(list(KINDS), value=CLOSED_LOOP, label="Job", elem_id="job-kind")
            with gr.Group(visible=True) as cl_group:
                cl_tasks = gr.CheckboxGroup(list(TASKS), value=[PANDA_TASKS[0]], label="Tasks")
                with gr.Row():
                    cl_eps = gr.Number(3, precision=0, label="Episodes per task", elem_id="cl-episodes")
                    cl_steps = gr.Number(50, precision=0, label="Max steps (0 = task's own)")
                    cl_policy = gr.Dropdown(policies, value="zero", label="Policy")
                    cl_backend = gr.Dropdown(["gpu", "cpu"], value="gpu", label="Render backend")
                    cl_workers = gr.Number(0, precision=0, label="Workers (0 = CPU count)")
                    cl_executor = gr.Dropdown(SHARD_EXECUTORS.names(), value="local", label="Shards run on")
                cl_settings = gr.Code(
                    SETTINGS_EXAMPLE,
                    language="json",
                    label="Policy settings to compare (comparison job: one table row each, same seeds)",
                    elem_id="cl-settings",
                    visible=False,
                )
            with gr.Group(visible=False) as off_group:
                off_eps = gr.CheckboxGroup(tab.episode_choices(), label="Episodes")
                with gr.Row():
                    off_policy = gr.Dropdown(policies, value="zero", label="Policy")
                    off_steps = gr.Number(0, precision=0, label="Max steps per episode (0 = all)")
            with gr.Group(visible=False) as ft_group:
                ft_inputs = _finetune_inputs(tab)
            submit = gr.Button("Submit", variant="primary", elem_id="job-submit")
            form_error = gr.HTML(elem_id="job-error")
        with gr.Column(scale=3):
            table = gr.Dataframe(
                value=tab.table(),
                headers=TABLE_COLUMNS,
                interactive=False,
                label="Jobs (click a row to open it)",
                elem_id="jobs-table",
            )
            with gr.Row():
                job_id = gr.Textbox(label="Selected job", elem_id="job-id", scale=3)
                cancel = gr.Button("Cancel job", variant="stop", elem_id="job-cancel", scale=1)
    status = gr.Markdown(elem_id="job-status")
    log = gr.Textbox(label="Log (tail)", lines=12, max_lines=12, autoscroll=True, elem_id="job-log")
    with gr.Row():
        res_table = gr.Dataframe(
            headers=RESULT_HEADERS, label="Results", interactive=False, elem_id="job-results"
        )
        res_plot = gr.Plot(label="Loss / errors / success", elem_id="job-plot")
    video = gr.Video(label="First episode video", interactive=False, height=360, elem_id="job-video")
    adapter = gr.Textbox(visible=False)
    with gr.Row():
        load = gr.Button("Load adapter into Inspector", visible=False, elem_id="job-load-adapter")
        load_msg = gr.HTML()
    shown = gr.State("")
    timer = gr.Timer(REFRESH_S)

    def pick(label: str) -> tuple[Any, ...]:
        """The chosen kind's part of the form; a comparison takes its policies from the settings."""
        closed_loop, comparison = label in (CLOSED_LOOP, COMPARISON), label == COMPARISON
        return (
            gr.update(visible=closed_loop),
            gr.update(visible=not comparison),
            gr.update(visible=comparison),
            *(gr.update(visible=label == k) for k in (OFFLINE, FINETUNE)),
        )

    kind.change(pick, [kind], [cl_group, cl_policy, cl_settings, off_group, ft_group])
    form = [
        kind,
        cl_tasks,
        cl_eps,
        cl_steps,
        cl_policy,
        cl_backend,
        cl_workers,
        cl_executor,
        cl_settings,
        off_eps,
        off_policy,
        off_steps,
        *ft_inputs,
    ]
    submit.click(tab.submit_form, form, [job_id, form_error, table])
    table.select(tab.select_row, [table], [job_id])
    results = [res_table, res_plot, video, adapter, load]
    job_id.change(tab.show, [job_id], [status, log, shown, *results], show_progress="hidden")
    cancel.click(tab.cancel, [job_id], [form_error, table])
    timer.tick(tab.tick, [job_id, shown], [table, status, log, shown, *results], show_progress="hidden")
    load.click(lambda a: load_adapter(ctx, a), [adapter], [load_msg])
    return {
        "tab": tab,
        "notice": notice,
        "table": table,
        "job_id": job_id,
        "log": log,
        "results": res_table,
    }


def _finetune_inputs(tab: JobsTab) -> list[Any]:
    """One input per FinetuneConfig field: episodes as ticks among the bundled ones, names with a
    registry as dropdowns, lists and dicts as JSON text."""
    cls = finetune_config_class()
    choices = {
        "variant": list(VARIANTS),
        "tracker": TRACKERS.names(),
        "depth": DEPTH_ESTIMATORS.names(),
        "dtype": ["float32", "bfloat16", "float16"],
        "device": ["cpu", "cuda"],
    }
    inputs = []
    for f in form_fields(cls):
        if f.name == "episodes":
            names = tab.episode_choices()
            inputs.append(gr.CheckboxGroup(names, value=names[:1], label="episodes"))
        elif f.name in choices:
            inputs.append(
                gr.Dropdown(choices[f.name], value=f.default, label=f.name, allow_custom_value=True)
            )
        elif f.kind == "bool":
            inputs.append(gr.Checkbox(bool(f.default), label=f.name))
        elif f.kind in ("int", "float"):
            inputs.append(gr.Number(f.default, precision=0 if f.kind == "int" else None, label=f.name))
        elif f.kind == "str":
            inputs.append(gr.Textbox("" if f.default is None else f.default, label=f.name))
        else:
            text = "" if f.default is None else json.dumps(f.default)
            inputs.append(gr.Textbox(text, label=f"{f.name} (JSON)"))
    return inputs
