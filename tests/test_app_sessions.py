"""Uploads belong to the browser session that made them (issue 14): invisible to other sessions,
limited per session, freed when the session ends. Handlers called with two session ids, then the
real Gradio app served in this process and driven by two gradio_client clients (two sessions)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from app_server import free_port
from conftest import translating_episode
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from test_jobs import wait_until

from app import AppContext, AppSettings, Inspector, build_app
from stvla_core.episodes import EpisodeError, save_episode

CONTROLS = (8, "lk", "episode", 5, 2)
NOT_HERE = "is not loaded in this browser session"


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """One bundled episode and four uploads (their names are the episodes' names)."""
    (tmp_path / "bundled").mkdir()
    save_episode(translating_episode(t=6, h=48, w=64, name="right"), tmp_path / "bundled" / "right.npz")
    out = {}
    for i, name in enumerate(("alpha", "beta", "gamma", "delta")):
        out[name] = tmp_path / f"{name}.npz"
        save_episode(translating_episode(t=4 + i, h=48, w=64, name=name), out[name])
    return out


@pytest.fixture
def ctx(files: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("STVLA_JOBS_DIR", str(tmp_path / "jobs"))
    c = AppContext.create(AppSettings(episodes_dir=str(tmp_path / "bundled"), policy="tiny"))
    yield c
    if getattr(c, "jobs", None) is not None:
        c.jobs.stop()
    c.close()


def uploaded(insp: Inspector, path: Path, session: str) -> str:
    dropdown, message = insp.upload(str(path), session=session)
    assert message == ""
    return dropdown.value


def test_an_upload_is_seen_only_by_the_session_that_made_it(ctx, files) -> None:
    insp = Inspector(ctx)
    mine = uploaded(insp, files["alpha"], "a")
    assert insp.episode_choices("a") == [("right", "bundled:right.npz"), ("alpha (uploaded)", mine)]
    assert insp.episode_choices("b") == [("right", "bundled:right.npz")]
    out = insp.select_episode(mine, *CONTROLS, session="a")
    assert out[1] == "" and "**alpha**" in out[2] and out[0].maximum == 3
    assert insp.plot_at(mine, 1, *CONTROLS, session="a") is not None
    # session b: even with a's id, and a's run in the shared frame cache, nothing of it is shown
    out = insp.select_episode(mine, *CONTROLS, session="b")
    assert NOT_HERE in out[1] and out[2] == "" and out[4] is None
    out = insp.render(mine, 1, *CONTROLS, session="b")
    assert NOT_HERE in out[0] and out[3] is None
    assert insp.plot_at(mine, 1, *CONTROLS, session="b") is None
    assert insp.poll(mine, 1, "", *CONTROLS, session="b") == ("", *insp.poll(None, 1, "")[1:])
    path, message = insp.export_csv(mine, *CONTROLS, session="b")
    assert path is None and NOT_HERE in message
    assert insp.tick(mine, 0, session="b")[1] is False  # nothing to play
    with pytest.raises(EpisodeError, match=NOT_HERE):
        ctx.store.get(mine, "b")
    assert insp.select_episode("bundled:right.npz", *CONTROLS, session="b")[1] == ""  # bundled: shared


def test_each_session_keeps_its_own_newest_uploads(ctx, files) -> None:
    ctx.store.keep_uploads = 2
    insp = Inspector(ctx)
    a = [uploaded(insp, files[n], "a") for n in ("alpha", "beta", "gamma")]
    b = [uploaded(insp, files[n], "b") for n in ("delta", "alpha")]
    assert ctx.store.uploads("a") == a[1:] and ctx.store.uploads("b") == b  # a's third pushed out a's first
    assert NOT_HERE in insp.select_episode(a[0], *CONTROLS, session="a")[1]
    assert [label for label, _ in insp.episode_choices("b")] == [
        "right",
        "delta (uploaded)",
        "alpha (uploaded)",
    ]


def test_ending_a_session_frees_its_uploads_and_their_cached_runs(ctx, files) -> None:
    insp = Inspector(ctx)
    mine, theirs = uploaded(insp, files["alpha"], "a"), uploaded(insp, files["beta"], "b")
    insp.render(mine, 0, *CONTROLS, session="a")
    insp.render(theirs, 0, *CONTROLS, session="b")
    view = insp.view_settings(*CONTROLS)
    run = ctx.cache.get(insp.key(mine, view))
    assert run is not None and run.image_dir.is_dir()
    insp.end_session("a")
    assert ctx.store.sessions() == ["b"] and ctx.cache.get(insp.key(mine, view)) is None
    wait_until(lambda: not run.image_dir.exists(), what="the run's pictures to be deleted")
    assert insp.render(theirs, 1, *CONTROLS, session="b")[0] == ""  # b is untouched


def test_a_session_idle_past_its_time_to_live_is_freed(ctx, files) -> None:
    ctx.store.session_ttl_s = 0.3
    insp = Inspector(ctx)
    uploaded(insp, files["alpha"], "a")
    time.sleep(0.5)
    uploaded(insp, files["beta"], "b")  # any upload sweeps idle sessions
    assert ctx.store.sessions() == ["b"] and ctx.store.uploads("a") == []


@pytest.fixture
def server(ctx, monkeypatch: pytest.MonkeyPatch):
    """The app built by build_app, served here (so the test can look inside its stores)."""
    monkeypatch.setenv("GRADIO_HEARTBEAT_INTERVAL", "0.25")  # a closed session is noticed quickly
    demo = build_app(ctx)
    demo.queue(default_concurrency_limit=4)
    port = free_port()
    demo.launch(
        server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, allowed_paths=[str(ctx.work_dir)]
    )
    yield f"http://127.0.0.1:{port}/"
    demo.close()


def upload_over_http(client: Client, path: Path) -> tuple[str, list[str]]:
    """(new id, the dropdown's values) after an upload through the API."""
    dropdown, message = client.predict(handle_file(str(path)), api_name="/upload")
    assert message == ""
    return dropdown["value"], [value for _, value in dropdown["choices"]]


def test_two_browser_sessions_over_http(ctx, files, server) -> None:
    ctx.store.keep_uploads = 2
    a, b = Client(server, verbose=False), Client(server, verbose=False)
    alpha, _ = upload_over_http(a, files["alpha"])
    delta, choices = upload_over_http(b, files["delta"])
    assert choices == ["bundled:right.npz", delta]  # b's list holds none of a's uploads
    out = a.predict(alpha, *CONTROLS, api_name="/select_episode")
    assert out[1] == "" and "**alpha**" in out[2]
    with pytest.raises(AppError, match=f"Value: {alpha} is not in the list of choices"):
        b.predict(alpha, 1, *CONTROLS, api_name="/render")  # a's id means nothing in b's session
    beta, _ = upload_over_http(a, files["beta"])
    gamma, choices = upload_over_http(a, files["gamma"])
    assert choices == ["bundled:right.npz", beta, gamma]  # a's limit of 2 pushed out alpha
    assert ctx.store.uploads(a.session_hash) == [beta, gamma]
    assert ctx.store.uploads(b.session_hash) == [delta]  # ... and nothing of b's
    a.close()  # the page is closed: Gradio's unload event frees a's uploads
    wait_until(lambda: a.session_hash not in ctx.store.sessions(), timeout=20, what="the unload event")
    assert ctx.store.sessions() == [b.session_hash]
    out = b.predict(delta, 2, *CONTROLS, api_name="/render")
    assert out[0] == "" and "frame 2" in out[1]
    b.close()
