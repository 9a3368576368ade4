"""The depth-input comparison: what none / raw / A / B / C do to the policy's actions at a step and
over the episode, computed in the background (the step on screen first) and cached."""

from __future__ import annotations

import html
import json
import time
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import pytest
from conftest import translating_episode

from app import AppContext, AppSettings, Inspector
from app.cache import EpisodeRun, ViewSettings
from app.compare import COMPARE_MODES, MODE_LABELS, compare_step, error_table, recorded_chunk, step_errors
from stvla_core.episodes import save_episode
from stvla_core.policy import Policy, PolicyConfig
from stvla_core.traces import TraceConfig

CONTROLS = (8, "lk", "episode", 5, 2)
T = 12


@pytest.fixture(scope="module")
def ctx(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("episodes")
    save_episode(translating_episode(t=T, h=48, w=64, name="right"), root / "right.npz")
    c = AppContext.create(AppSettings(episodes_dir=str(root), policy="tiny"))
    yield c
    c.close()


@pytest.fixture(scope="module")
def insp(ctx: AppContext) -> Inspector:
    return Inspector(ctx)


def tiny_policy() -> Policy:
    return Policy.tiny(PolicyConfig(trace=TraceConfig(buffer=8, max_traces=5)))


@pytest.fixture(scope="module")
def policy() -> Policy:
    return tiny_policy()


def test_predict_modes_equals_one_prediction_per_mode(policy: Policy) -> None:
    ep = translating_episode(t=10, h=48, w=64)
    preds = policy.predict_modes(ep, 6, COMPARE_MODES)
    assert list(preds) == list(COMPARE_MODES)
    for mode in COMPARE_MODES:
        one = policy.predict(ep, 6, depth=mode)
        np.testing.assert_array_equal(preds[mode].token_ids, one.token_ids)
        np.testing.assert_allclose(preds[mode].chunk, one.chunk, rtol=1e-6)
    assert preds["model"].depth_source == "model" and preds["B"].depth_source == "traced:B"
    with pytest.raises(ValueError, match="depth mode 'D' unknown"):
        policy.predict_modes(ep, 6, ("raw", "D"))


def test_step_comparison_numbers_by_hand(policy: Policy) -> None:
    ep = translating_episode(t=10, h=48, w=64)
    preds = policy.predict_modes(ep, 8, COMPARE_MODES)
    cmp = compare_step(preds, ep.actions, "C")
    k = preds["C"].chunk.shape[0]
    rec = recorded_chunk(ep.actions, 8, k)
    assert rec.shape == (k, 7) and np.isnan(rec[2:]).all()  # steps 10, 11 are past the end
    np.testing.assert_array_equal(rec[:2], ep.actions[8:10])
    for mode in COMPARE_MODES:
        want = np.abs(preds[mode].chunk[0] - ep.actions[8]).mean()
        assert cmp.error(mode) == pytest.approx(want, rel=1e-6)
        np.testing.assert_array_equal(cmp.changed(mode), preds[mode].token_ids != preds["C"].token_ids)
    assert not cmp.changed("C").any()
    # the table highlights exactly the changed tokens and marks the closest input
    changed = sum(int(cmp.changed(m).sum()) for m in COMPARE_MODES)
    assert cmp.html.count("class='stvla-changed'") == changed
    best = min(COMPARE_MODES, key=cmp.error)
    assert f"data-mode='{best}'" in cmp.html.split("◀ closest")[0].rsplit("<tr", 1)[-1]
    assert all(html.escape(MODE_LABELS[m]) in cmp.html for m in COMPARE_MODES) and "recorded" in cmp.html
    no_actions = compare_step(preds, None, "C")
    assert np.isnan(no_actions.error("raw")) and "closest" not in no_actions.html


def test_the_run_compares_every_step_and_tables_the_errors(insp: Inspector) -> None:
    run = insp.run_for("bundled:right.npz", insp.view_settings(*CONTROLS))
    end = time.monotonic() + 600  # generous: CI machines may be busy
    while not run.finished:
        assert time.monotonic() < end, "the background comparison did not finish"
        time.sleep(0.05)
    assert run.error is None and run.compare_error is None and run.compared == T
    ep = run.episode
    for t in (0, 5, T - 1):
        c = run.comparisons[t]
        np.testing.assert_allclose(c.chunks["C"][0], run.steps[t].action, rtol=1e-6)  # the policy's input
        assert c.reference == "C"
    table = error_table(run.comparisons, list(COMPARE_MODES))
    c_row = table[table["depth input"] == MODE_LABELS["C"]].iloc[0]
    per_step = np.stack([np.abs(run.comparisons[t].chunks["C"][0] - ep.actions[t]) for t in range(T)])
    assert c_row["steps"] == T and c_row["all axes"] == pytest.approx(per_step.mean(), rel=1e-5)
    assert c_row["dx"] == pytest.approx(per_step[:, 0].mean(), rel=1e-5)
    # poll: the progress bars, this step's comparison, the table and one chart line per input
    progress, _, _, _, compare, errors, plot, _ = insp.poll("bundled:right.npz", 5, "", *CONTROLS)
    assert f"depth inputs compared: {T}/{T}" in progress
    assert compare == run.comparisons[5].html and "◀ closest" in errors and f"over {T} of {T} steps" in errors
    fig = json.loads(plot.plot)
    go.Figure(fig)
    assert [d["name"] for d in fig["data"]] == [MODE_LABELS[m] for m in COMPARE_MODES]
    np.testing.assert_allclose(
        fig["data"][4]["y"], step_errors(run.comparisons, list(COMPARE_MODES))[:, 4], rtol=1e-6
    )
    # a step's comparison arrives with its pictures, and changes with the step
    a, b = insp.render("bundled:right.npz", 3, *CONTROLS), insp.render("bundled:right.npz", 4, *CONTROLS)
    assert "data-step='3'" in a[-1] and "data-step='4'" in b[-1]


def test_the_step_on_screen_is_compared_first(tmp_path: Path, policy: Policy) -> None:
    ep = translating_episode(t=T, h=48, w=64)
    run = EpisodeRun(("x",), ep, policy, ViewSettings(8, "lk", "episode", 5, 2), tmp_path)
    order: list[int] = []
    compare = run.compare

    def recording(t: int):
        if run.comparisons[t] is None:
            order.append(t)
        return compare(t)

    run.compare = recording  # type: ignore[method-assign]
    run.want(9)
    run._fill()  # the background thread's work, here in the test's thread
    assert order == [9, *(t for t in range(T) if t != 9)]
    assert run.finished and run.compared == T


def test_progress_offers_the_comparisons_only_once_all_are_compared(tmp_path: Path, policy: Policy) -> None:
    from app.inspector import progress_html

    ep = translating_episode(t=4, h=48, w=64)
    run = EpisodeRun(("bundled:x.npz", ViewSettings(8)), ep, policy, ViewSettings(8), tmp_path)
    for t in range(4):
        run.step(t)
    run.compare(1)
    assert "data-dir=" in progress_html(run) and "data-compared" not in progress_html(run)
    assert sorted(p.name for p in run.image_dir.glob("*.html")) == ["00001_compare.html"]
    for t in range(4):
        run.compare(t)
    assert "data-compared='1'" in progress_html(run) and "depth inputs compared: 4/4" in progress_html(run)


def test_a_comparison_that_fails_stops_comparisons_only(tmp_path: Path, policy: Policy) -> None:
    ep = translating_episode(t=6, h=48, w=64)
    run = EpisodeRun(("y",), ep, policy, ViewSettings(8, "lk", "episode", 5, 2), tmp_path)
    run.modes = ("raw", "E")  # a depth input the policy does not know
    run._fill()
    assert run.error is None and run.done == 6 and run.finished
    assert run.compare_error is not None and "depth mode 'E' unknown" in run.compare_error
    from app.inspector import comparison_at

    assert "depth inputs cannot be compared" in comparison_at(run, 2)


def test_an_episode_without_depth_is_compared_on_the_policys_own_estimate(
    insp: Inspector, tmp_path: Path
) -> None:
    from stvla_core.depth import DEPTH_ESTIMATORS, DepthUnavailableError
    from stvla_core.depth.policy_depth import PolicyDepth

    ep = translating_episode(t=6, h=48, w=64, name="bare")
    save_episode(ep.replace(depth=None), tmp_path / "bare.npz")
    dropdown, _ = insp.upload(str(tmp_path / "bare.npz"))
    assert html.escape("policy (the policy's own estimate)") in insp.render(dropdown.value, 2, *CONTROLS)[0]
    controls = (8, "lk", "policy", 5, 2)
    out = insp.render(dropdown.value, 2, *controls)
    assert out[0] == "" and "depth: traced:C" in out[1]
    run = insp.run_for(dropdown.value, insp.view_settings(*controls))
    cmp = run.compare(2)
    assert list(cmp.chunks) == list(COMPARE_MODES)
    estimate = PolicyDepth(run.policy.model, run.policy.processor).estimate(ep.frames[2])
    assert estimate.shape == (48, 64) and (estimate > 0).all()
    np.testing.assert_allclose(run.traced_frame(2).depth, estimate, rtol=1e-6)  # raw = the estimate
    with pytest.raises(DepthUnavailableError, match="available where a policy runs"):
        DEPTH_ESTIMATORS.create("policy")
