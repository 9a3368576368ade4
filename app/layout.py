"""The Gradio layout, built by one function; handlers live in app/inspector.py and
app/settings_panel.py."""

from __future__ import annotations

from functools import partial

import gradio as gr

from app.inspector import POLL_OUTPUTS, STEP_OUTPUTS, AppContext, Inspector
from app.jobs_tab import build_jobs_tab
from app.settings import env_vars
from app.settings_panel import STATUS_HEADERS, apply_settings, status_table
from stvla_core.depth import DEPTH_ESTIMATORS
from stvla_core.traces import VARIANTS
from stvla_core.tracking import TRACKERS

CSS = """
.stvla-error {background:#fde8e8;border:1px solid #e02424;color:#9b1c1c;padding:6px 10px;border-radius:6px}
.stvla-progress progress {width: 60%; vertical-align: middle}
.stvla-tokens table {font-family: monospace; font-size: 12px; border-collapse: collapse}
.stvla-tokens th, .stvla-tokens td {padding: 2px 8px; text-align: left; border-bottom: 1px solid #ddd}
"""
VARIANT_NOTES = {
    "A": "A: each trace pixel = depth of its point at its own time",
    "B": "B: constant, farthest valid depth of frame t",
    "C": "C: constant, nearest valid depth of frame t (paper's best)",
}
MARK_STEP_JS = """(t) => {
    const gd = document.querySelector('#actions .js-plotly-plot');
    if (window.Plotly && gd && gd.layout && gd.layout.shapes && gd.layout.shapes.length) {
        window.Plotly.relayout(gd, {'shapes[0].x0': t, 'shapes[0].x1': t});
    }
}"""
PLAY_INTERVAL_S = 0.1
POLL_INTERVAL_S = 1.0


def build_app(ctx: AppContext) -> gr.Blocks:
    insp = Inspector(ctx)
    s = ctx.settings
    with gr.Blocks(title="ST-VLA Studio", delete_cache=(1800, 3600)) as demo:
        gr.Markdown("## ST-VLA Studio · spatial traces on depth for vision-language-action policies")
        with gr.Tabs():
            with gr.Tab("Inspector", id="inspector"):
                c = _inspector(insp, s.tracker, s.depth)
            with gr.Tab("Settings", id="settings"):
                _settings(ctx)
            with gr.Tab("Jobs", id="jobs"):
                build_jobs_tab(ctx)
        demo.load(insp.select_episode, [c["episode"], *c["controls"]], [c["slider"], *c["step"]]).then(
            insp.plot_at, [c["episode"], c["slider"], *c["controls"]], [c["plot"]]
        )
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
            label=f"Upload an episode: .npz, video, or a .zip of a LeRobot / frames folder (max {insp.ctx.settings.max_upload_mb} MB)",
            file_count="single",
            type="filepath",
            elem_id="upload",
            scale=2,
            height=110,
        )
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
    controls = [buffer, trk, dep, k, thick]
    img = partial(gr.Image, type="numpy", interactive=False, buttons=["download"], format="png")
    buf = img(
        label="Buffer: the b frames feeding this step (oldest first, frame t framed)", elem_id="buffer-strip"
    )
    with gr.Row():
        overlay = img(label="RGB frame t with traces", elem_id="overlay")
        depth_img = img(label="Depth of frame t", elem_id="depth-map")
    with gr.Row():
        variants = [img(label=f"Variant {VARIANT_NOTES[v]}", elem_id=f"variant-{v}") for v in VARIANTS]
    legend = img(
        label="Shared colour scale (depth and A, B, C; black = invalid)", elem_id="legend", height=70
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
    with gr.Row():
        zip_btn = gr.Button("Export traced maps + overlays (zip: npz, png, mp4, csv)", elem_id="export-zip")
        csv_btn = gr.Button("Export actions table (CSV)", elem_id="export-csv")
    download = gr.File(label="Download", elem_id="download", interactive=False)

    step = [message, info, buf, overlay, depth_img, *variants, legend, tokens]
    assert len(step) == len(STEP_OUTPUTS)
    playing = gr.State(False)
    seen = gr.State("")
    player = gr.Timer(PLAY_INTERVAL_S, active=False)
    poller = gr.Timer(POLL_INTERVAL_S)

    inputs = [episode, slider, *controls]
    episode.change(insp.select_episode, [episode, *controls], [slider, *step], show_progress="hidden").then(
        insp.plot_at, inputs, [plot], show_progress="hidden"
    )
    slider.change(insp.render, inputs, step, show_progress="hidden", trigger_mode="always_last", queue=False)
    # the step marker moves in the browser: a full redraw of seven subplots would hold up the pictures
    slider.change(None, [slider], None, js=MARK_STEP_JS)
    plot.change(None, [slider], None, js=MARK_STEP_JS)  # a chart sent for an older step catches up
    for ctl in controls:
        ctl.change(insp.render, inputs, step, show_progress="hidden", trigger_mode="always_last").then(
            insp.plot_at, inputs, [plot], show_progress="hidden", trigger_mode="always_last"
        )
    upload.upload(insp.upload, [upload], [episode, message])
    play.click(insp.toggle_play, [playing], [playing, player, play])
    player.tick(insp.tick, [episode, slider], [slider, playing, player, play], show_progress="hidden")
    poll_out = [progress, plot, quality, message, seen]
    assert len(poll_out) == len(POLL_OUTPUTS)
    poller.tick(insp.poll, [episode, slider, seen, *controls], poll_out, show_progress="hidden")
    zip_btn.click(insp.export_zip, [episode, *controls], [download, message])
    csv_btn.click(insp.export_csv, [episode, *controls], [download, message])
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
