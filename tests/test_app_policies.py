"""The Inspector shows any checkpoint folder (issue 16): listed or typed, loaded on first use,
traced with its own trace_config.json, for the same episode side by side with the default."""

from __future__ import annotations

import html
import json
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import translating_episode

from app import AppContext, AppSettings, Inspector
from app.backends import policy_choices, resolve_policy
from app.settings import REPO
from stvla_core.episodes import save_episode
from stvla_core.policy import TRACE_FILE, Policy
from stvla_core.traces import TraceConfig

CONTROLS = (8, "lk", "episode", 5, 2)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model saved as a checkpoint (seed 1: other weights than the app's tiny policy),
    trained, its trace_config.json says, with variant B, b = 6, K = 3."""
    root = tmp_path_factory.mktemp("runs") / "x" / "model"
    policy = Policy.tiny(seed=1)
    policy.model.save_pretrained(root)
    policy.processor.save_pretrained(root)
    trained = TraceConfig(
        buffer=6, variant="B", max_traces=3, line_thickness=3, tracker_options={"dense_stride": 4}
    )
    (root / TRACE_FILE).write_text(json.dumps(trained.to_dict()))
    return root


@pytest.fixture(scope="module")
def insp(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("episodes")
    save_episode(translating_episode(t=8, h=48, w=64, name="right"), root / "right.npz")
    ctx = AppContext.create(AppSettings(episodes_dir=str(root), policy="tiny"))
    yield Inspector(ctx)
    ctx.close()


def test_the_choices_list_the_shipped_models_and_keep_a_typed_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    values = [v for _, v in policy_choices("/somewhere/model")]
    assert values[:2] == ["stvla-s", "tiny"] and values[-1] == "/somewhere/model"
    monkeypatch.chdir(tmp_path)  # a relative folder of the checkout means the same from elsewhere
    assert resolve_policy("tiny") == "tiny"
    assert resolve_policy("assets/models/stvla-s") == str(REPO / "assets/models/stvla-s")
    (tmp_path / "runs" / "m").mkdir(parents=True)
    assert resolve_policy("runs/m") == "runs/m"  # the working directory's own comes first


def test_a_checkpoint_folder_is_inspected_with_its_own_trace_settings(
    insp: Inspector, checkpoint: Path
) -> None:
    path = str(checkpoint)
    assert insp.policy_traces(path) == (6, "lk", "episode", 3, 3, "")  # the controls follow it
    out = insp.render("bundled:right.npz", 5, 6, "lk", "episode", 3, 3, path)
    assert out[0] == "" and f"policy `{path}`" in out[1] and "depth: traced:B" in out[1]
    run = insp.run_for("bundled:right.npz", insp.view_settings(6, "lk", "episode", 3, 3, path))
    trace = run.policy.config.trace
    assert (trace.variant, trace.buffer, trace.max_traces, trace.tracker_options) == (
        "B",
        6,
        3,
        {"dense_stride": 4},
    )
    default = insp.run_for("bundled:right.npz", insp.view_settings(*CONTROLS))
    assert run is not default and run.policy.model is not default.policy.model
    assert default.policy.config.trace.variant == "C"
    # the comparison takes the checkpoint's own input (B) as its reference
    end = time.monotonic() + 60
    while run.comparisons[5] is None:
        assert time.monotonic() < end and run.compare_error is None
        time.sleep(0.05)
    assert run.comparisons[5].reference == "B"
    direct = Policy.from_pretrained(checkpoint).predict(run.episode, 5, depth="raw")
    np.testing.assert_array_equal(run.comparisons[5].token_ids["raw"], direct.token_ids)
    # a tracker other than the trained one does not get the trained tracker's options
    assert insp.ctx.backends.trace_config(6, "oracle", "episode", 3, 3, trace).tracker_options == {}


def test_a_missing_checkpoint_says_which(insp: Inspector, tmp_path: Path) -> None:
    missing = str(tmp_path / "runs" / "none" / "model")
    *controls, message = insp.policy_traces(missing)
    want = html.escape(f"could not load the policy: checkpoint {missing!r} is neither a folder nor a hub id")
    assert want in message and all(isinstance(c, dict) for c in controls)  # the controls stay
    out = insp.render("bundled:right.npz", 2, *CONTROLS, missing)
    assert html.escape(f"checkpoint {missing!r}") in out[0] and out[2] is None
