"""The Gradio layout, built by one function; handlers live in app/inspector.py and
app/settings_panel.py."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from functools import partial
from typing import Any

import gradio as gr

from app.backends import policy_choices
from app.inspector import POLL_OUTPUTS, STEP_OUTPUTS, AppContext, Inspector
from app.jobs_tab import build_jobs_tab
from app.settings import env_vars
from app.settings_panel import STATUS_HEADERS, apply_settings, status_table
from stvla_core.depth import DEPTH_ESTIMATORS
from stvla_core.traces import VARIANTS
from stvla_core.tracking import TRACKERS

CSS = """
.stvla-error {background:#fde8e8;border:1px solid #e02424;color:#9b1c1c;padding:6px 10px;border-radius:6px}
.stvla-warning {background:#fdf6e3;border:1px solid #c27803;color:#723b13;padding:6px 10px;border-radius:6px}
.stvla-progress progress {width: 60%; vertical-align: middle}
.stvla-tokens table {font-family: monospace; font-size: 12px; border-collapse: collapse}
.stvla-tokens th, .stvla-tokens td {padding: 2px 8px; text-align: left; border-bottom: 1px solid #ddd}
.stvla-compare table, .stvla-compare-errors table {font-family: monospace; font-size: 12px; border-collapse: collapse; margin-bottom: 6px}
.stvla-compare th, .stvla-compare td, .stvla-compare-errors th, .stvla-compare-errors td {padding: 2px 6px; text-align: left; border-bottom: 1px solid #ddd}
.stvla-compare td.stvla-changed {background: #ffe08a; font-weight: bold}
.stvla-compare tr.stvla-recorded {background: #e8f0fe}
"""
VARIANT_NOTES = {
    "A": "A: each trace pixel = depth of its point at its own time",
    "B": "B: constant, farthest valid depth of frame t",
    "C": "C: constant, nearest valid depth of frame t (paper's best)",
}
# Moves the action chart's step marker in the browser (a full redraw of seven subplots from the
# server would hold up the pictures). A relayout costs ~50 ms of the page's main thread on a small
# CPU, so moves are coalesced: one relayout after the next paint, for the newest step only.
MARK_STEP_JS = """(t) => {
    window.stvlaMarkAt = t;
    if (window.stvlaMarkPending) return;
    window.stvlaMarkPending = true;
    requestAnimationFrame(() => setTimeout(() => {
        window.stvlaMarkPending = false;
        const gd = document.querySelector('#actions .js-plotly-plot');
        const x = window.stvlaMarkAt;
        if (window.Plotly && gd && gd.layout && gd.layout.shapes && gd.layout.shapes.length
            && gd.layout.shapes[0].x0 !== x) {
            window.Plotly.relayout(gd, {'shapes[0].x0': x, 'shapes[0].x1': x});
        }
    }, 0));
}"""
# Image element ids -> the file-name part of each step's PNG (app/cache.py writes NNNNN_<part>.png).
STEP_IMAGES = {"buffer-strip": "buffer", "overlay": "overlay", "depth-map": "depth"}
STEP_IMAGES |= {f"variant-{v}": v for v in VARIANTS} | {"legend": "legend"}
# Stepping in the browser. Once every step of the shown episode is cached, the progress bar carries
# the folder of its pictures (app/inspector.py: progress_html); the browser then loads them all
# once, and a slider move swaps the pictures itself, on the input event, before Gradio's event
# machinery (~50 ms) and the server's answer. `Inspector.render` is told through the hidden `shown`
# input and then sends no pictures, so an answer for an older slider position cannot overwrite a
# newer one. Changing a control or the episode forgets the folder until the next one is ready.
# The step's depth-input comparison (NNNNN_compare.html, same folder) goes the same way once every
# step is compared (`data-compared`; the hidden `compared` input): the browser fetches them all and
# sets the comparison component's value through the setter COMPARE_JS registers.
STEPPING_JS = """() => {
    if (window.stvlaSwap) return;
    const parts = __PARTS__;
    const url = (dir, t, part, ext = '.png') => ((window.gradio_config && window.gradio_config.root) || '')
        + '/gradio_api/file=' + encodeURI(dir + String(t).padStart(5, '0') + '_' + part + ext);
    const ready = (t, key) => {
        const p = document.querySelector('#progress .stvla-progress');
        if (!p || !p.dataset.dir || window.stvlaForgotten) return null;
        if (key !== undefined && p.dataset.key !== key) return null;
        return t >= 0 && t < Number(p.dataset.steps) ? p : null;
    };
    window.stvlaSwap = (t, key) => {
        t = Math.round(Number(t));
        const p = ready(t, key);
        if (!p) return '';
        const imgs = Object.entries(parts).map(([id, part]) => [document.querySelector('#' + id + ' img'), part]);
        if (!imgs.every(([img]) => img)) return '';
        for (const [img, part] of imgs) {
            const u = url(p.dataset.dir, t, part);
            if (img.getAttribute('src') !== u) img.src = u;
        }
        return p.dataset.dir;
    };
    window.stvlaShowCompare = (t, key) => {
        t = Math.round(Number(t));
        const p = ready(t, key), c = window.stvlaCompares;
        if (!p || !c || c.dir !== p.dataset.dir || c.html[t] === undefined || !window.stvlaSetCompare) return '';
        window.stvlaSetCompare(c.html[t]);
        return c.dir;
    };
    window.stvlaForget = () => { window.stvlaForgotten = true; };
    window.stvlaPreload = () => {
        const p = document.querySelector('#progress .stvla-progress');
        if (p && p.dataset.dir) window.stvlaForgotten = false;
        if (!p || !p.dataset.dir) return;
        const dir = p.dataset.dir, steps = Number(p.dataset.steps);
        if (window.stvlaPreloaded !== dir) {
            window.stvlaPreloaded = dir;
            window.stvlaImages = [];
            for (let t = 0; t < steps; t++) {
                for (const part of Object.values(parts)) {
                    const img = new Image();
                    img.src = url(dir, t, part);
                    window.stvlaImages.push(img);
                }
            }
        }
        if (p.dataset.compared && (!window.stvlaCompares || window.stvlaCompares.dir !== dir)) {
            const c = {dir, html: new Array(steps), loaded: 0};
            window.stvlaCompares = c;
            for (let t = 0; t < steps; t++) {
                fetch(url(dir, t, 'compare', '.html'))
                    .then((r) => (r.ok ? r.text() : undefined))
                    .then((h) => { if (h !== undefined) { c.html[t] = h; c.loaded += 1; } })
                    .catch(() => {});  // that step's comparison keeps coming from the server
            }
        }
    };
    document.addEventListener('input', (e) => {
        if (e.target && e.target.closest && e.target.closest('#frame')) {
            window.stvlaSwap(e.target.value);
            window.stvlaShowCompare(e.target.value);
        }
    }, true);
    window.stvlaPreload();
}""".replace("__PARTS__", json.dumps(STEP_IMAGES))
# The comparison component's own setter: its value changes as if the server had sent it.
COMPARE_JS = "window.stvlaSetCompare = (html) => { props.value = html; };"
SWAP_IMAGES_JS = """(episode, t, buffer, tracker, depth, k, thickness, policy, shown, compared) => {
    const key = [episode, buffer, tracker, depth, k, thickness, policy].join('|');
    shown = window.stvlaSwap ? window.stvlaSwap(t, key) : '';
    compared = window.stvlaShowCompare ? window.stvlaShowCompare(t, key) : '';
    (__MARK__)(t);  // the marker, after the pictures are painted
    return [episode, t, buffer, tracker, depth, k, thickness, policy, shown, compared];
}""".replace("__MARK__", MARK_STEP_JS)
# A comparison sent by the server for an older step (a poll in flight) catches up with the slider.
COMPARE_CATCH_UP_JS = "(t) => { if (window.stvlaShowCompare) window.stvlaShowCompare(t); }"
FORGET_JS = "() => { if (window.stvlaForget) window.stvlaForget(); }"
PRELOAD_JS = "() => { if (window.stvlaPreload) window.stvlaPreload(); }"
PLAY_INTERVAL_S = 0.1
POLL_INTERVAL_S = 1.0


def session_id(request: gr.Request | None) -> str:
    """The browser session's id (Gradio's session hash); a request without one gets an id of its
    own, so it shares uploads with nobody."""
    return (request.session_hash if request is not None else None) or f"no-session-{uuid.uuid4()}"


def per_session(method: Callable[..., Any]) -> Callable[..., Any]:
    """An Inspector handler as a Gradio event function that passes the browser session's id as
    `session=` (Gradio fills a leading `gr.Request` parameter). Named after the method, which
    names its API endpoint."""

    def handler(request: gr.Request, *args: Any) -> Any:
        return method(*args, session=session_id(request))

    handler.__name__ = handler.__qualname__ = method.__name__
    handler.__doc__ = method.__doc__
    return handler


def build_app(ctx: AppContext) -> gr.Blocks:
    insp = Inspector(ctx)
    s = ctx.settings

    def end_session(request: gr.Request) -> None:
        insp.end_session(session_id(request))

    with gr.Blocks(title="ST-VLA Studio", delete_cache=(1800, 3600)) as demo:
        gr.Markdown("## ST-VLA Studio · spatial traces on depth for vision-language-action policies")
        with gr.Tabs():
            with gr.Tab("Inspector", id="inspector"):
                c = _inspector(insp, s.tracker, s.depth)
            with gr.Tab("Settings", id="settings"):
                _settings(ctx)
            with gr.Tab("Jobs", id="jobs"):
                build_jobs_tab(ctx)
        demo.load(None, None, None, js=STEPPING_JS)
        demo.load(
            per_session(insp.select_episode), [c["episode"], *c["controls"]], [c["slider"], *c["step"]]
        ).then(per_session(insp.plot_at), [c["episode"], c["slider"], *c["controls"]], [c["plot"]])
        demo.unload(end_session)  # the page was closed: its uploads are freed
    return demo


def _inspector(insp: Inspector, tracker: str, depth: str) -> dict:
    choices = insp.episode_choices()
    with gr.Row():
        episode = gr.Dropdown(
            choices=choices,
            value=choices[0][1] if choices else None,
            label="Episode",
            elem_id="episode",
            scale=3,
        )
        upload = gr.File(
            label=f"Upload an episode: .npz, video, or a .zip of a LeRobot dataset / frames folder (max {insp.ctx.settings.max_upload_mb} MB per episode)",
            file_count="single",
            type="filepath",
            elem_id="upload",
            scale=2,
            height=110,
        )
    with gr.Row():
        local = gr.Textbox(
            label="…or open a path on this machine (episode file, LeRobot dataset or frames folder)",
            placeholder="/data/my_lerobot_dataset",
            elem_id="local-path",
            scale=4,
        )
        open_btn = gr.Button("Open", elem_id="open-path", scale=0, min_width=90)
    with gr.Row():
        ds_episode = gr.Dropdown(label="Dataset episode", elem_id="dataset-episode", visible=False, scale=2)
        ds_camera = gr.Dropdown(label="Camera", elem_id="dataset-camera", visible=False, scale=1)
    ds_info = gr.Markdown(elem_id="dataset-info", visible=False)
    message = gr.HTML(elem_id="message")
    with gr.Row():
        play = gr.Button("▶ Play", elem_id="play", scale=0, min_width=110)
        slider = gr.Slider(
            0, insp.last_step(episode.value), value=0, step=1, label="Frame", elem_id="frame", scale=8
        )
    progress = gr.HTML(elem_id="progress")
    info = gr.Markdown(elem_id="info")
    with gr.Accordion("Controls", open=True):
        with gr.Row():
            buffer = gr.Slider(2, 60, value=30, step=1, label="Buffer length b", elem_id="buffer")
            trk = gr.Dropdown(TRACKERS.names(), value=tracker, label="Tracker", elem_id="tracker")
            dep = gr.Dropdown(DEPTH_ESTIMATORS.names(), value=depth, label="Depth source", elem_id="depth")
            k = gr.Slider(0, 20, value=5, step=1, label="K traces", elem_id="k")
            thick = gr.Slider(1, 6, value=2, step=1, label="Line thickness", elem_id="thickness")
        policy = gr.Dropdown(
            policy_choices(insp.ctx.settings.policy),
            value=insp.ctx.settings.policy,
            allow_custom_value=True,
            label="Policy checkpoint (pick, or type a folder such as runs/ablation/C/model); b, tracker, "
            "depth, K and thickness follow its trace_config.json",
            elem_id="policy",
        )
    controls = [buffer, trk, dep, k, thick, policy]
    # No per-picture download button: it would save the server's last picture, not the one the
    # browser swapped in (right-click saves what is shown; the Export buttons save every step).
    img = partial(gr.Image, type="numpy", interactive=False, buttons=[], format="png")
    buf = img(
        label="Buffer: the b frames feeding this step (oldest first, frame t framed)", elem_id="buffer-strip"
    )
    with gr.Row():
        overlay = img(label="RGB frame t with traces", elem_id="overlay")
        depth_img = img(label="Depth of frame t", elem_id="depth-map")
    with gr.Row():
        variants = [img(label=f"Variant {VARIANT_NOTES[v]}", elem_id=f"variant-{v}") for v in VARIANTS]
    legend = img(
        label="Shared colour scale (depth and A, B, C; black = invalid; traces outlined in white, their pixels keep their depth colour)",
        elem_id="legend",
        height=70,
    )
    quality = gr.Markdown(elem_id="quality")
    with gr.Row():
        plot = gr.Plot(
            label="Actions: predicted (red) vs recorded (blue); dotted line = current step", elem_id="actions"
        )
    gr.Markdown(
        "**Current prediction: action tokens** (grid cell = bin per axis; probability over the vocabulary; top-k alternatives)"
    )
    tokens = gr.HTML(elem_id="tokens")
    gr.Markdown(
        "**Depth inputs compared: what each one does to the policy's actions** (this step; computed in "
        "the background, the step on screen first)"
    )
    compare = gr.HTML(elem_id="compare", js_on_load=COMPARE_JS)
    variant_errors = gr.HTML(elem_id="variant-errors")
    errors_plot = gr.Plot(
        label="Action error per step and depth input (mean |predicted − recorded| of the executed action)",
        elem_id="errors-plot",
    )
    with gr.Row():
        zip_btn = gr.Button("Export traced maps + overlays (zip: npz, png, mp4, csv)", elem_id="export-zip")
        csv_btn = gr.Button("Export actions table (CSV)", elem_id="export-csv")
    download = gr.File(label="Download", elem_id="download", interactive=False)

    step = [message, info, buf, overlay, depth_img, *variants, legend, tokens, compare]
    assert len(step) == len(STEP_OUTPUTS)
    playing = gr.State(False)
    seen = gr.State("")
    player = gr.Timer(PLAY_INTERVAL_S, active=False)
    poller = gr.Timer(POLL_INTERVAL_S)

    inputs = [episode, slider, *controls]
    select, render, plot_at = (per_session(m) for m in (insp.select_episode, insp.render, insp.plot_at))
    episode.change(select, [episode, *controls], [slider, *step], show_progress="hidden").then(
        plot_at, inputs, [plot], show_progress="hidden"
    )
    shown = gr.Textbox("", visible=False, label="shown")  # see STEPPING_JS; "" for API callers
    compared = gr.Textbox("", visible=False, label="compared")  # the same for the comparison
    progress.change(None, None, None, js=PRELOAD_JS)
    for source in (episode, *controls):
        source.change(None, None, None, js=FORGET_JS)
    slider.change(
        render,
        [*inputs, shown, compared],
        step,
        js=SWAP_IMAGES_JS,
        show_progress="hidden",
        trigger_mode="always_last",
        queue=False,
    )
    plot.change(None, [slider], None, js=MARK_STEP_JS)  # a chart sent for an older step catches up
    compare.change(None, [slider], None, js=COMPARE_CATCH_UP_JS)
    for ctl in controls:
        ctl.change(render, inputs, step, show_progress="hidden", trigger_mode="always_last").then(
            plot_at, inputs, [plot], show_progress="hidden", trigger_mode="always_last"
        )
    upload.upload(per_session(insp.upload), [upload], [episode, message])
    policy.input(insp.policy_traces, [policy], [buffer, trk, dep, k, thick, message])
    open_btn.click(per_session(insp.open_path), [local], [episode, message])
    local.submit(per_session(insp.open_path), [local], [episode, message])
    episode.change(per_session(insp.dataset_controls), [episode], [ds_episode, ds_camera, ds_info])
    for picker in (ds_episode, ds_camera):  # .input: the user's choice, not dataset_controls' update
        picker.input(per_session(insp.pick_episode), [episode, ds_episode, ds_camera], [episode, message])
    play.click(insp.toggle_play, [playing], [playing, player, play])
    player.tick(
        per_session(insp.tick), [episode, slider], [slider, playing, player, play], show_progress="hidden"
    )
    poll_out = [progress, plot, quality, message, compare, variant_errors, errors_plot, seen]
    assert len(poll_out) == len(POLL_OUTPUTS)
    poller.tick(per_session(insp.poll), [episode, slider, seen, *controls], poll_out, show_progress="hidden")
    zip_btn.click(per_session(insp.export_zip), [episode, *controls], [download, message])
    csv_btn.click(per_session(insp.export_csv), [episode, *controls], [download, message])
    return {"episode": episode, "slider": slider, "controls": controls, "step": step, "plot": plot}


def _settings(ctx) -> None:
    s = ctx.settings
    gr.Markdown(
        "Backends in use. The defaults run offline (tiny untrained policy, `lk` tracker, the episodes' "
        "own depth). Set them here, with CLI flags (`python app.py --help`) or environment variables: "
        + ", ".join(f"`{v}`" for v in env_vars().values())
    )
    status = gr.Dataframe(
        value=status_table(ctx),
        headers=STATUS_HEADERS,
        interactive=False,
        elem_id="backend-status",
        wrap=True,
    )
    with gr.Row():
        policy = gr.Textbox(s.policy, label="SpatialVLA / ST-VLA checkpoint (folder or hub id; 'tiny')")
        lora = gr.Textbox(s.lora, label="LoRA adapter folder")
    with gr.Row():
        depth_model = gr.Textbox(s.depth_model, label="ZoeDepth / Depth Anything model (folder or hub id)")
        cotracker = gr.Textbox(s.cotracker_checkpoint, label="CoTracker3 checkpoint (local .pth)")
    apply = gr.Button("Apply", variant="primary")
    error = gr.HTML()
    apply.click(partial(apply_settings, ctx), [policy, lora, depth_model, cotracker], [status, error])
    apply.click(None, None, None, js=FORGET_JS)  # pictures of the old backends are not swapped in
