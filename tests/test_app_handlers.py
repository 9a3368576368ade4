"""The app's event handlers called directly on synthetic episodes saved as bundled files."""

from __future__ import annotations

import csv
import io
import json
import time
import zipfile
from pathlib import Path

import av
import cv2
import numpy as np
import plotly.graph_objects as go
import pytest
from conftest import translating_episode

from app import AppContext, AppSettings, Inspector
from app.backends import Backends
from app.cache import ViewSettings
from app.episodes import EpisodeStore
from app.panels import buffer_strip, legend
from app.settings import from_env, parse_args
from app.settings_panel import apply_settings
from stvla_core.episodes import EpisodeError, save_episode
from stvla_core.traces import VARIANTS, TraceConfig, TracePipeline, colorize_depth, depth_range, draw_traced

CONTROLS = (8, "lk", "episode", 5, 2)  # buffer, tracker, depth, K, thickness
T = 14


@pytest.fixture(scope="module")
def episodes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("episodes")
    save_episode(translating_episode(t=T, h=48, w=64, name="right"), root / "right.npz")
    save_episode(translating_episode(t=10, h=48, w=64, dx=0.0, dy=1.0, name="down"), root / "down.npz")
    return root


@pytest.fixture(scope="module")
def ctx(episodes: Path):
    c = AppContext.create(AppSettings(episodes_dir=str(episodes), policy="tiny"))
    yield c
    c.close()


@pytest.fixture(scope="module")
def insp(ctx: AppContext) -> Inspector:
    return Inspector(ctx)


def finished(insp: Inspector, episode_id: str, controls=CONTROLS, timeout: float = 60.0):
    run = insp.run_for(episode_id, insp.view_settings(*controls))
    end = time.monotonic() + timeout
    while not run.finished:
        assert time.monotonic() < end, "background precompute did not finish"
        time.sleep(0.05)
    assert run.error is None, run.error
    return run


def read_png(path: str) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(path, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


# -- settings ---------------------------------------------------------------------------------
def test_settings_defaults_env_and_flags_in_order_of_precedence() -> None:
    s = parse_args([], env={})
    assert (s.host, s.port, s.share, s.tracker, s.depth, s.policy) == (
        "127.0.0.1",
        7860,
        False,
        "lk",
        "episode",
        "stvla-s",  # the shipped trained model
    )
    env = {"STVLA_PORT": "9000", "STVLA_TRACKER": "oracle", "STVLA_SHARE": "yes", "STVLA_LORA": "/a"}
    s = parse_args([], env=env)
    assert (s.port, s.tracker, s.share, s.lora) == (9000, "oracle", True, "/a")
    s = parse_args(["--port", "9100", "--no-share", "--depth", "zoedepth", "--depth-model", "/m"], env=env)
    assert (s.port, s.share, s.tracker, s.depth) == (9100, False, "oracle", "zoedepth")
    assert s.depth_options("zoedepth") == {"model": "/m"} and s.depth_options("episode") == {}
    assert s.tracker_options("cotracker3") == {}


def test_settings_errors_name_the_variable_and_the_value() -> None:
    with pytest.raises(ValueError, match=r"STVLA_PORT: expected an integer, found 'x'"):
        from_env({"STVLA_PORT": "x"})
    with pytest.raises(ValueError, match=r"STVLA_SHARE: expected true/false, found 'maybe'"):
        from_env({"STVLA_SHARE": "maybe"})
    with pytest.raises(ValueError, match=r"port: expected 1..65535, found 0"):
        from_env({"STVLA_PORT": "0"})
    with pytest.raises(KeyError, match=r"unknown tracker 'sift'; expected one of .*lk"):
        parse_args(["--tracker", "sift"], env={})


def test_backends_report_what_is_active_and_fall_back_to_tiny(tmp_path: Path) -> None:
    b = Backends(AppSettings(policy=str(tmp_path / "missing"), lora=str(tmp_path / "adapter")))
    states = {s.component: s for s in b.states}
    assert states["policy"].state == "failed" and "using the tiny policy" in states["policy"].detail
    lora = states["LoRA adapter"]
    assert lora.state == "failed" and "no adapter_config.json in" in lora.detail
    assert "running without it" in lora.detail
    assert states["tracker (default)"].setting == "lk"
    gen = b.generation
    b.apply(AppSettings())
    assert b.generation == gen + 1 and {s.component: s for s in b.states}["policy"].state == "active"


# -- episodes ---------------------------------------------------------------------------------
def test_store_lists_bundled_files_and_loads_each_once(episodes: Path) -> None:
    store = EpisodeStore(episodes, 10**9)
    assert store.bundled() == [("down", "bundled:down.npz"), ("right", "bundled:right.npz")]
    assert store.get("bundled:right.npz") is store.get("bundled:right.npz")
    with pytest.raises(EpisodeError, match="bundled episode '../x.npz' not found"):
        store.get("bundled:../x.npz")


def test_upload_accepts_a_good_file_and_refuses_bad_and_oversized_ones(
    episodes: Path, tmp_path: Path
) -> None:
    store = EpisodeStore(episodes, max_upload_bytes=10**9)
    eid = store.upload(episodes / "down.npz")
    assert store.get(eid).num_frames == 10 and eid in [v for _, v in store.choices()]
    corrupt = tmp_path / "broken.npz"
    corrupt.write_bytes(b"PK\x03\x04 this is not a zip archive")
    with pytest.raises(Exception, match="broken.npz"):
        store.upload(corrupt)
    small = EpisodeStore(episodes, max_upload_bytes=1000)
    with pytest.raises(EpisodeError, match="over the limit of 1000 bytes"):
        small.upload(episodes / "down.npz")


# -- inspector ----------------------------------------------------------------------------------
def test_select_episode_resets_the_slider_and_renders_step_0(insp: Inspector) -> None:
    out = insp.select_episode("bundled:right.npz", *CONTROLS)
    slider, message, info = out[0], out[1], out[2]
    assert slider.maximum == T - 1 and slider.value == 0
    assert message == ""
    assert "right" in info and "follow the texture" in info and "frame 0" in info
    buffer, overlay = read_png(out[3]), read_png(out[4])
    assert overlay.shape == (48, 64, 3) and buffer.shape[0] > 0


def test_step_images_match_the_trace_pipeline_on_one_shared_scale(insp: Inspector) -> None:
    ep = insp.ctx.store.get("bundled:right.npz")
    t = 9
    out = insp.render("bundled:right.npz", t, *CONTROLS)
    ref = TracePipeline(TraceConfig(buffer=8, tracker="lk", depth="episode", max_traces=5)).at(ep, t)
    vmin, vmax = depth_range(ref.depth, *ref.traced.values())
    for v, path in zip(VARIANTS, out[5:8], strict=True):
        np.testing.assert_array_equal(read_png(path), draw_traced(ref.traced[v], ref.masks[v], vmin, vmax))
    np.testing.assert_array_equal(read_png(out[3]), ref.overlay)
    np.testing.assert_array_equal(read_png(out[4]), colorize_depth(ref.depth, vmin, vmax))
    np.testing.assert_array_equal(read_png(out[8]), legend(vmin, vmax))
    run = insp.run_for("bundled:right.npz", insp.view_settings(*CONTROLS))
    np.testing.assert_array_equal(read_png(out[2]), buffer_strip(run.thumbs, np.arange(2, 10)))
    assert "frame 9" in out[1] and "frames 2–9 (8)" in out[1]


def test_tokens_and_action_plot_describe_the_prediction(insp: Inspector) -> None:
    run = finished(insp, "bundled:right.npz")
    out = insp.render("bundled:right.npz", 4, *CONTROLS)
    assert out[9].count("</tr>") == 13 and "translation" in out[9]  # header + one row per token
    tokens = run.steps[4].tokens
    assert len(tokens) == 12 and list(tokens["kind"][:3]) == ["translation", "rotation", "gripper"]
    assert ((tokens["prob"] >= 0) & (tokens["prob"] <= 1)).all()
    fig = json.loads(insp.plot_at("bundled:right.npz", 4, *CONTROLS).plot)
    go.Figure(fig)  # a valid plotly spec
    assert len(fig["data"]) == 14  # recorded + predicted for each of 7 dimensions
    assert [s["x0"] for s in fig["layout"]["shapes"]] == [4]
    predicted = [d for d in fig["data"] if d["name"] == "predicted"]
    got = [predicted[d]["y"][4] for d in range(7)]
    np.testing.assert_allclose(got, run.steps[4].action, rtol=1e-5)
    recorded = [d for d in fig["data"] if d["name"] == "recorded"]
    assert recorded[0]["y"][4] == pytest.approx(0.01)


def test_cached_steps_answer_without_recomputing(insp: Inspector) -> None:
    run = finished(insp, "bundled:right.npz")
    calls = run.policy.pipeline.depth_calls
    first = [insp.render("bundled:right.npz", t, *CONTROLS) for t in range(T)]
    again = [insp.render("bundled:right.npz", t, *CONTROLS) for t in range(T)]
    assert run.policy.pipeline.depth_calls == calls  # a recomputed step would ask for depth again
    assert [o[5] for o in first] == [o[5] for o in again]  # the same cached files
    assert len({o[7] for o in first}) == T  # a new C picture each step


def test_new_settings_are_a_new_cache_entry(insp: Inspector) -> None:
    a = insp.render("bundled:right.npz", 6, *CONTROLS)
    b = insp.render("bundled:right.npz", 6, 8, "lk", "episode", 5, 4)
    assert not np.array_equal(read_png(a[3]), read_png(b[3]))  # thicker lines on the overlay
    assert insp.run_for("bundled:right.npz", ViewSettings(8, "lk", "episode", 5, 4)) is not insp.run_for(
        "bundled:right.npz", ViewSettings(8, "lk", "episode", 5, 2)
    )


def test_poll_reports_progress_then_quality_against_ground_truth(insp: Inspector) -> None:
    run = finished(insp, "bundled:right.npz")
    progress, plot, quality, message, compare, errors, errors_plot, seen = insp.poll(
        "bundled:right.npz", 3, "", *CONTROLS
    )
    assert f"value='{T}' max='{T}'" in progress and "all steps cached" in progress
    assert f"depth inputs compared: {T}/{T}" in progress and "data-step='3'" in compare
    assert "median_px" in quality and "recorded depth itself" in quality
    assert run.quality["tracker"].iloc[-1]["step"] == "all"
    again = insp.poll("bundled:right.npz", 3, seen, *CONTROLS)
    assert all(isinstance(o, dict) and o.get("__type__") == "update" for o in again[:7])  # nothing new


def test_a_cached_run_hands_its_picture_folder_to_the_browser(insp: Inspector) -> None:
    from app.layout import STEP_IMAGES

    run = finished(insp, "bundled:right.npz")
    progress = insp.poll("bundled:right.npz", 3, "", *CONTROLS)[0]
    folder = f"{run.image_dir.as_posix()}/"
    assert f"data-dir='{folder}'" in progress and f"data-steps='{T}'" in progress
    assert "data-key='bundled:right.npz|8|lk|episode|5|2|tiny'" in progress  # as the browser joins its inputs
    for t in range(T):  # every picture the browser will ask for exists
        assert all((run.image_dir / f"{t:05d}_{part}.png").is_file() for part in STEP_IMAGES.values())
    # the browser already shows this folder's pictures: the answer carries text and tokens only
    out = insp.render("bundled:right.npz", 3, *CONTROLS, shown=folder)
    assert out[0] == "" and "frame 3" in out[1] and "<table" in out[9] and "data-step='3'" in out[10]
    assert all(isinstance(o, dict) and o.get("__type__") == "update" and len(o) == 1 for o in out[2:9])
    # a folder of other settings (stale in the browser) gets the pictures
    full = insp.render("bundled:right.npz", 3, *CONTROLS, shown="/tmp/run-older/")
    assert full == insp.render("bundled:right.npz", 3, *CONTROLS)
    assert full[7] == str(run.image_dir / "00003_C.png")


def test_a_compared_run_hands_each_steps_comparison_to_the_browser(insp: Inspector) -> None:
    run = finished(insp, "bundled:right.npz")
    folder = f"{run.image_dir.as_posix()}/"
    assert "data-compared='1'" in insp.poll("bundled:right.npz", 3, "", *CONTROLS)[0]
    for t in range(T):  # the comparison the browser fetches is the one the server would send
        html = (run.image_dir / f"{t:05d}_compare.html").read_text(encoding="utf-8")
        assert html == run.comparisons[t].html and f"data-step='{t}'" in html
    # the browser already shows this folder's comparison of step 5: the answer leaves it alone
    out = insp.render("bundled:right.npz", 5, *CONTROLS, shown=folder, compared=folder)
    assert out[-1] == {"__type__": "update"} and "frame 5" in out[1] and "<table" in out[9]
    # a stale folder (other settings), or none (API callers), gets the comparison
    for stale in ("/tmp/run-older/", ""):
        assert insp.render("bundled:right.npz", 5, *CONTROLS, compared=stale)[-1] == run.comparisons[5].html


def test_unbuildable_backends_and_bad_uploads_show_errors(insp: Inspector, tmp_path: Path) -> None:
    out = insp.render("bundled:right.npz", 2, 8, "cotracker3", "episode", 5, 2)
    assert "stvla-error" in out[0] and "cotracker3" in out[0] and out[3] is None
    bad = tmp_path / "corrupt.npz"
    bad.write_bytes(b"\x00garbage")
    dropdown, message = insp.upload(str(bad))
    assert dropdown == {"__type__": "update"} and "could not load" in message and "corrupt.npz" in message
    assert insp.render("bundled:right.npz", 2, *CONTROLS)[0] == ""  # still working


def test_upload_selects_the_new_episode(insp: Inspector, episodes: Path) -> None:
    dropdown, message = insp.upload(str(episodes / "down.npz"))
    assert message == "" and dropdown.value.startswith("upload:")
    out = insp.select_episode(dropdown.value, *CONTROLS)
    assert out[0].maximum == 9 and "down" in out[2]


def test_play_advances_and_stops_at_the_last_frame(insp: Inspector) -> None:
    playing, timer, button = insp.toggle_play(False)
    assert playing is True and timer.active is True and "Pause" in button.value
    assert insp.tick("bundled:right.npz", 3)[0] == 4
    t, playing, timer, _ = insp.tick("bundled:right.npz", T - 1)
    assert playing is False and timer.active is False


def test_export_csv_holds_recorded_and_predicted_actions(insp: Inspector) -> None:
    run = finished(insp, "bundled:right.npz")
    path, message = insp.export_csv("bundled:right.npz", *CONTROLS)
    assert message == ""
    rows = list(csv.DictReader(open(path)))
    assert len(rows) == T and rows[0]["recorded_dx"] == "0.01"
    assert float(rows[5]["predicted_dyaw"]) == pytest.approx(float(run.steps[5].action[5]), rel=1e-5)


def test_export_zip_holds_maps_pictures_video_and_table(insp: Inspector) -> None:
    path, message = insp.export_zip("bundled:right.npz", *CONTROLS)
    assert message == ""
    with zipfile.ZipFile(path) as z:
        names = set(z.namelist())
        assert {
            "traced_depth.npz",
            "panel.mp4",
            "actions.csv",
            "png/0000_overlay.png",
            f"png/{T - 1:04d}_C.png",
        } <= names
        maps = np.load(io.BytesIO(z.read("traced_depth.npz")))
        assert maps["A"].shape == (T, 48, 64) and maps["A"].dtype == np.float32
        ep = insp.ctx.store.get("bundled:right.npz")
        ref = TracePipeline(TraceConfig(buffer=8)).at(ep, 7)
        np.testing.assert_array_equal(maps["C"][7], ref.traced["C"])
        with av.open(io.BytesIO(z.read("panel.mp4"))) as video:
            frames = list(video.decode(video=0))
        assert len(frames) == T and (frames[0].width, frames[0].height) == (4 * 64, 48)


def test_settings_panel_applies_and_reports(ctx: AppContext) -> None:
    rows, error = apply_settings(ctx, "tiny", "", "/models/zoe", "")
    assert error == ""
    table = {r[0]: r for r in rows}
    assert table["depth model (ZoeDepth / Depth Anything)"][1:3] == ["/models/zoe", "active"]
    assert ctx.settings.depth_model == "/models/zoe"


def test_an_upload_without_depth_or_actions_says_what_is_missing(insp: Inspector, tmp_path: Path) -> None:
    ep = translating_episode(t=6, h=48, w=64, name="bare")
    save_episode(ep.replace(depth=None, actions=None, instruction=""), tmp_path / "bare.npz")
    dropdown, message = insp.upload(str(tmp_path / "bare.npz"))
    assert message == ""
    out = insp.render(dropdown.value, 2, *CONTROLS)
    assert "has no recorded depth" in out[0] and "zoedepth" in out[0]


def test_the_action_chart_without_recorded_actions_shows_predictions_only() -> None:
    from app.plots import actions_figure, with_step

    pred = np.full((5, 7), np.nan, np.float32)
    pred[:2] = 0.5
    fig = json.loads(with_step(actions_figure(None, pred), 1).plot)
    assert [d["name"] for d in fig["data"]] == ["predicted"] * 7
    assert fig["data"][6]["y"] == [0.5, 0.5, None, None, None]  # not computed yet: a gap
    go.Figure(fig)


def test_legend_ticks_sit_where_colorize_depth_puts_their_depth() -> None:
    from app.panels import legend_ticks

    vmin, vmax, width = 0.4, 20.0, 320
    bar = legend(vmin, vmax, width)
    ticks = dict((d, x) for x, d in legend_ticks(vmin, vmax, width))
    assert set(ticks) == {0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0}
    for d in (0.5, 1.0, 2.0):
        want = colorize_depth(np.float32([[d]]), vmin, vmax)[0, 0].astype(int)
        assert np.abs(bar[5, ticks[d]].astype(int) - want).max() <= 12  # one pixel of ramp
    assert (bar[5, 0] == colorize_depth(np.float32([[vmin]]), vmin, vmax)[0, 0]).all()


def test_a_zipped_folder_format_uploads(episodes: Path, tmp_path: Path) -> None:
    ep = translating_episode(t=5, h=48, w=64, name="framed")
    folder = save_episode(ep, tmp_path / "framed", format="frames")
    archive = tmp_path / "framed.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for f in sorted(folder.iterdir()):
            z.write(f, f"framed/{f.name}")
    store = EpisodeStore(episodes, max_upload_bytes=10**9)
    loaded = store.get(store.upload(archive))
    assert loaded.num_frames == 5
    np.testing.assert_array_equal(loaded.frames, ep.frames)  # PNG frames are lossless


def test_a_zip_escaping_its_folder_is_refused(episodes: Path, tmp_path: Path) -> None:
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as z:
        z.writestr("../outside.png", b"x")
    store = EpisodeStore(episodes, max_upload_bytes=10**6, unpack_dir=tmp_path / "u")
    with pytest.raises(EpisodeError, match="outside the archive: '../outside.png'"):
        store.upload(evil)
    assert not any((tmp_path / "u").iterdir())  # nothing kept on failure


def test_a_lora_adapter_goes_into_a_fresh_model_not_the_shared_tiny_one(tmp_path: Path) -> None:
    from peft import LoraConfig

    from stvla_core.finetune.adapter import add_lora, save_adapter
    from stvla_core.policy import Policy

    donor = Policy.tiny()
    config = LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj"])
    add_lora(donor.model, config)
    save_adapter(donor.model, config, tmp_path / "adapter")
    b = Backends(AppSettings(policy="tiny"))
    b.apply(AppSettings(policy="tiny", lora=str(tmp_path / "adapter")))
    states = {s.component: s for s in b.states}
    assert states["LoRA adapter"].state == "active", states["LoRA adapter"].detail
    lora_params = lambda m: [n for n, _ in m.named_parameters() if "lora_" in n]  # noqa: E731
    assert lora_params(b.policy_for(b.trace_config(4, "lk", "episode", 5, 2)).model)
    assert not lora_params(b._base.model)
    b.apply(AppSettings(policy="tiny", lora=str(tmp_path / "missing")))
    assert {s.component: s for s in b.states}["LoRA adapter"].state == "failed"
    assert not lora_params(b.policy_for(b.trace_config(4, "lk", "episode", 5, 2)).model)
