"""Evaluation: hand-computed action errors, the action mapping, result tables, the clear error
for absent Bridge assets, and a short closed-loop run in a real ManiSkill3 Panda task."""

from __future__ import annotations

import functools
import json

import numpy as np
import pandas as pd
import pytest
from conftest import translating_episode

from stvla_core.episodes import ACTION_NAMES
from stvla_core.evaluation import (
    BRIDGE_TASKS,
    ActionMapping,
    ClosedLoopConfig,
    MissingAssetsError,
    PolicyOutputError,
    action_errors,
    check_task_assets,
    compare_runs,
    error_by_step,
    error_summary,
    evaluate_closed_loop,
    load_results,
    make_policy,
    plot_actions,
    plot_error_per_dim,
    plot_error_per_step,
    to_markdown,
)
from stvla_core.evaluation.closed_loop import EVAL_SEED_START, TASKS, missing_assets
from stvla_core.evaluation.offline import OfflineConfig
from stvla_core.evaluation.results import ResultsError, plot_success, write_results
from stvla_core.jobs import FAILED, JobConfigError, JobManager
from stvla_core.jobs.kinds import config_from_dict

PANDA = ActionMapping(True, -0.1, 0.1, -0.1, True, -0.01, 0.04)
WIDOWX = ActionMapping(False, -1.0, 1.0, -np.pi / 2, True, 0.014, 0.038)


# -- action mapping --------------------------------------------------------------------------
def test_panda_mapping_normalises_and_undoes_the_rotation_sign():
    a = PANDA(np.float32([0.01, -0.05, 0.2, 0.02, 0.0, -0.01, 1.0]))
    np.testing.assert_allclose(a, [0.1, -0.5, 1.0, -0.2, 0.0, 0.1, 1.0], atol=1e-6)
    assert a.dtype == np.float32
    assert PANDA(np.float32([0, 0, 0, 0, 0, 0, 0.0]))[6] == -1.0
    assert PANDA(np.float32([0, 0, 0, 0, 0, 0, 0.25]))[6] == -0.5
    assert PANDA(np.float32([0, 0, 0, 0, 0, 0, 7.0]))[6] == 1.0  # gripper clipped to [0, 1] first


def test_unnormalised_arm_passes_metres_and_radians_through_with_scale():
    m = ActionMapping(**{**WIDOWX.__dict__, "scale": 0.5})
    np.testing.assert_allclose(
        m(np.float32([0.02, 0, -0.04, 0.1, 0, 0, 0.5])), [0.01, 0, -0.02, 0.05, 0, 0, 0.0], atol=1e-6
    )
    np.testing.assert_allclose(WIDOWX(np.float32([0.3, 0, 0, 0, 0, 0, 1]))[[0, 6]], [0.3, 1.0], atol=1e-6)


# -- offline ---------------------------------------------------------------------------------
def test_zero_policy_errors_are_minus_the_recorded_actions():
    ep = translating_episode(t=6, dx=2.0, name="ep")  # recorded dx = 0.02 m, gripper 0
    errors = action_errors(make_policy("zero"), [ep], policy_name="zero")
    assert list(errors.columns) == ["episode", "step", "dim", "predicted", "target", "error", "abs_error"]
    assert len(errors) == 6 * 7
    dx = errors[errors["dim"] == "dx"]
    np.testing.assert_allclose(dx["error"], -0.02, atol=1e-7)
    summary = error_summary(errors)
    assert list(summary.index) == list(ACTION_NAMES)
    assert summary.loc["dx", "mae"] == pytest.approx(0.02)
    assert summary.loc["dx", "bias"] == pytest.approx(-0.02)
    assert summary.loc["gripper", "mae"] == pytest.approx(1.0)  # zero holds the gripper open (1)
    assert summary.loc["dy", "rmse"] == 0.0 and summary.loc["dx", "n"] == 6
    by_step = error_by_step(errors)
    assert by_step.shape == (6, 7) and by_step["gripper"].tolist() == [1.0] * 6


def test_replay_of_the_recorded_actions_has_zero_error_and_max_steps():
    eps = [translating_episode(t=8, name="a"), translating_episode(t=5, name="b")]
    replay = make_policy("replay", actions=eps[0].actions)
    errors = action_errors(replay, eps[:1], policy_name="replay", max_steps=4)
    assert len(errors) == 4 * 7 and errors["abs_error"].max() == 0.0
    errors = action_errors(make_policy("random", seed=3), eps, policy_name="random")
    assert errors.groupby("episode").size().to_dict() == {"a": 8 * 7, "b": 5 * 7}
    again = action_errors(make_policy("random", seed=3), eps, policy_name="random")
    pd.testing.assert_frame_equal(errors, again)
    twice = action_errors(make_policy("zero"), [eps[1], eps[1]])
    assert twice.groupby("episode").size().to_dict() == {"b": 5 * 7, "b#2": 5 * 7}


class _BadPolicy:
    def __init__(self, out):
        self.out = out

    def reset(self, instruction):
        pass

    def step(self, rgb, depth):
        return self.out


class _RecordingPolicy:
    """Stands still and records what the evaluation hands it (reset with intrinsics, like ST-VLA)."""

    def __init__(self):
        self.instructions, self.intrinsics, self.seen = [], [], []

    def reset(self, instruction, intrinsics=None):
        self.instructions.append(instruction)
        self.intrinsics.append(intrinsics)

    def step(self, rgb, depth):
        self.seen.append(
            (rgb.shape, rgb.dtype, *((None, None) if depth is None else (depth.shape, depth.dtype)))
        )
        return np.float32([0, 0, 0, 0, 0, 0, 1])


def test_offline_passes_the_episode_intrinsics_to_policies_that_take_them():
    k = np.float32([[50, 0, 40], [0, 50, 32], [0, 0, 1]])
    ep = translating_episode(t=3).replace(intrinsics=k)
    policy = _RecordingPolicy()
    action_errors(policy, [ep, ep.replace(intrinsics=None)])
    assert policy.intrinsics[0] is k and policy.intrinsics[1] is None
    assert policy.seen[0] == ((64, 80, 3), np.uint8, (64, 80), np.float32) and len(policy.seen) == 6
    action_errors(policy, [ep], use_depth=False)
    assert policy.seen[-1][2] is None


def test_bad_policy_output_and_missing_actions_are_named():
    ep = translating_episode(t=3)
    with pytest.raises(
        PolicyOutputError, match=r"policy 'bad' at step 0: expected an action of shape \(7,\), found \(6,\)"
    ):
        action_errors(_BadPolicy(np.zeros(6)), [ep], policy_name="bad")
    with pytest.raises(PolicyOutputError, match="NaN/inf"):
        action_errors(_BadPolicy(np.full(7, np.nan)), [ep], policy_name="bad")
    with pytest.raises(ValueError, match="episode 'silent' has no recorded actions"):
        action_errors(make_policy("zero"), [ep.replace(actions=None, name="silent")])


def test_plots_show_every_dimension():
    ep = translating_episode(t=4, name="ep")
    errors = action_errors(make_policy("zero"), [ep])
    per_step = plot_error_per_step(errors)
    assert [t.name for t in per_step.data] == list(ACTION_NAMES)
    assert list(per_step.data[0].x) == [0, 1, 2, 3]
    per_dim = plot_error_per_dim(errors)
    np.testing.assert_allclose(per_dim.data[0].y, error_summary(errors)["mae"])
    assert len(plot_actions(errors, "ep").data) == 14
    with pytest.raises(ValueError, match="no episode 'other' in the error table; it has ep"):
        plot_actions(errors, "other")


def test_offline_config_refuses_missing_episodes_and_unknown_policy(tmp_path):
    with pytest.raises(JobConfigError, match=r"1 file\(s\) do not exist: .*gone\.npz"):
        config_from_dict(OfflineConfig, {"episodes": [str(tmp_path / "gone.npz")]})
    (tmp_path / "e.npz").write_bytes(b"")
    with pytest.raises(
        JobConfigError, match="policy: expected one of random, replay, stvla, zero, found 'stlva'"
    ):
        config_from_dict(OfflineConfig, {"episodes": [str(tmp_path / "e.npz")], "policy": "stlva"})
    with pytest.raises(JobConfigError, match=r"field 'episodes' expected list\[str\], found \[1\]"):
        config_from_dict(OfflineConfig, {"episodes": [1]})
    with pytest.raises(JobConfigError, match="at least one episode"):
        config_from_dict(OfflineConfig, {"episodes": []})


# -- results ---------------------------------------------------------------------------------
def _run(labels, episodes):
    eps = [
        {
            "task": t,
            "episode": i,
            "seed": i,
            "success": s,
            "success_at_end": s,
            "length": 10,
            "seconds": 1.0,
            "video": "",
            "instruction": "x",
        }
        for i, (t, s) in enumerate(episodes)
    ]
    return {"labels": {"policy": "stvla", **labels}, "episodes": eps}


def test_compare_runs_gives_success_rates_per_task_and_average(tmp_path):
    a = _run(
        {"run": "a", "variant": "C", "buffer": 30, "checkpoint": "ckpt-1000"},
        [("PickCube-v1", True), ("PickCube-v1", False), ("PushCube-v1", False)],
    )
    b = _run({"run": "b", "variant": "A", "buffer": 10, "checkpoint": ""}, [("PickCube-v1", True)] * 2)
    write_results(tmp_path / "a", a)
    table = compare_runs([tmp_path / "a", b])
    assert list(table.columns) == ["PickCube-v1", "PushCube-v1", "average"]
    assert table.index.names == ["run", "policy", "variant", "buffer", "checkpoint"]
    assert table.iloc[0].tolist() == [50.0, 0.0, 25.0]
    assert table.iloc[1, 0] == 100.0 and np.isnan(table.iloc[1, 1]) and table.iloc[1, 2] == 100.0
    md = to_markdown(table)
    assert "| a | stvla | C | 30 | ckpt-1000 | 50.0 | 0.0 | 25.0 |" in md
    assert "| b | stvla | A | 10 |  | 100.0 | - | 100.0 |" in md
    fig = plot_success(table)
    assert [t.name for t in fig.data] == [
        "a (stvla, variant C, buffer 30, ckpt-1000)",
        "b (stvla, variant A, buffer 10)",
    ]
    assert list(fig.data[0].x) == ["PickCube-v1", "PushCube-v1"] and list(fig.data[0].y) == [50.0, 0.0]
    csv = pd.read_csv(tmp_path / "a" / "results.csv")
    assert csv["success"].tolist() == [True, False, False] and len(csv.columns) == 9
    with pytest.raises(ResultsError, match="no results.json in .*nothing"):
        load_results(tmp_path / "nothing")


# -- closed loop -----------------------------------------------------------------------------
def test_step_limits_come_from_the_task_setup():
    from stvla_core.evaluation.closed_loop import default_step_limit

    # Panda tasks: the shared setup's 80 policy steps at 10 Hz; Bridge: ManiSkill's registered 60
    assert default_step_limit("PickCube-v1") == 80 and default_step_limit("StackCube-v1") == 100
    assert default_step_limit("PutCarrotOnPlateInScene-v1") == 60


def test_closed_loop_config_errors():
    with pytest.raises(JobConfigError, match="unknown task 'PickCub-v1'; expected one of PickCube-v1"):
        config_from_dict(ClosedLoopConfig, {"tasks": ["PickCub-v1"]})
    with pytest.raises(JobConfigError, match="episodes_per_task: expected >= 1, found 0"):
        config_from_dict(ClosedLoopConfig, {"episodes_per_task": 0})
    labels = ClosedLoopConfig(policy_kwargs={"variant": "B", "buffer": 20}).labels()
    assert labels == {"run": "zero", "policy": "zero", "variant": "B", "buffer": 20, "checkpoint": ""}


bridge_absent = pytest.mark.skipif(
    bool(not missing_assets(BRIDGE_TASKS[0])), reason="the Bridge assets are downloaded here"
)


@bridge_absent
def test_bridge_tasks_without_assets_say_what_to_download(tmp_path):
    assert set(BRIDGE_TASKS) == {
        "PutSpoonOnTableClothInScene-v1",
        "PutCarrotOnPlateInScene-v1",
        "StackGreenCubeOnYellowCubeBakedTexInScene-v1",
        "PutEggplantInBasketScene-v1",
    }
    with pytest.raises(MissingAssetsError) as e:
        check_task_assets("PutCarrotOnPlateInScene-v1")
    msg = str(e.value)
    assert "task 'PutCarrotOnPlateInScene-v1' cannot run" in msg
    assert "tasks/bridge_v2_real2sim_dataset" in msg
    assert "python -m mani_skill.utils.download_asset bridge_v2_real2sim" in msg
    # checked for every task before any environment is built: nothing runs, nothing is written
    config = ClosedLoopConfig(tasks=["PickCube-v1", "PutSpoonOnTableClothInScene-v1"], episodes_per_task=1)
    with pytest.raises(MissingAssetsError, match="PutSpoonOnTableClothInScene-v1"):
        evaluate_closed_loop(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_closed_loop_without_maniskill_says_how_to_install_it(tmp_path, monkeypatch):
    import importlib.util

    from stvla_core.evaluation.closed_loop import SimulatorUnavailableError

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "mani_skill" else real(name, *a)
    )
    config = ClosedLoopConfig(tasks=["PickCube-v1"], episodes_per_task=1)
    with pytest.raises(SimulatorUnavailableError, match=r"needs ManiSkill3.*pip install mani-skill==3.0.1"):
        evaluate_closed_loop(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()


@bridge_absent
def test_closed_loop_job_without_assets_fails_with_the_reason(tmp_path):
    m = JobManager(tmp_path / "jobs")
    job = m.submit("evaluate_closed_loop", {"tasks": ["PutEggplantInBasketScene-v1"], "episodes_per_task": 1})
    job = m.wait(job.id, timeout=60)
    assert job.state == FAILED
    assert job.error.startswith("MissingAssetsError: task 'PutEggplantInBasketScene-v1' cannot run")
    assert "download_asset bridge_v2_real2sim" in m.log(job.id)


@functools.cache
def vulkan_problem() -> str | None:
    try:
        import sapien

        sapien.render.RenderSystem()
    except Exception as e:  # no driver: sapien raises RuntimeError from its C++ core
        return f"no Vulkan device for SAPIEN ({e}); install mesa-vulkan-drivers (lavapipe)"
    return None


requires_vulkan = pytest.mark.skipif(vulkan_problem() is not None, reason=str(vulkan_problem()))


@pytest.mark.sim
@requires_vulkan
def test_closed_loop_panda_run_writes_results_and_video(tmp_path):
    import av

    config = ClosedLoopConfig(tasks=["PickCube-v1"], episodes_per_task=1, max_steps=10, run_name="smoke")
    progress = []
    policy = _RecordingPolicy()
    results = evaluate_closed_loop(config, tmp_path, policy, progress=lambda f, m: progress.append((f, m)))
    assert policy.instructions == [TASKS["PickCube-v1"].instruction]
    k = policy.intrinsics[0]
    assert k.shape == (3, 3) and k.dtype == np.float32 and k[0, 2] == pytest.approx(112, abs=1)
    assert len(policy.seen) == 10 and policy.seen[0] == ((224, 224, 3), np.uint8, (224, 224), np.float32)
    assert progress == [(1.0, "PickCube-v1 episode 1/1, step 10"), (1.0, "PickCube-v1 episode 1/1")]
    ep = results["episodes"][0]
    assert ep["length"] == 10 and ep["success"] is False and ep["seed"] == EVAL_SEED_START  # held-out seeds
    assert ep["instruction"] == TASKS["PickCube-v1"].instruction
    assert results["summary"] == {
        "PickCube-v1": {
            "episodes": 1,
            "successes": 0,
            "success_rate": 0.0,
            "success_ci95": [0.0, pytest.approx(1.96**2 / (1 + 1.96**2))],  # Wilson upper bound at 0/1
            "mean_length": 10.0,
        }
    }
    assert json.loads((tmp_path / "results.json").read_text())["labels"]["run"] == "smoke"
    with av.open(str(tmp_path / ep["video"])) as video:
        frames = [f.to_ndarray(format="rgb24") for f in video.decode(video=0)]
    assert len(frames) == 11 and frames[0].shape == (224, 224, 3)  # the first view + one per step
    assert frames[0].std() > 10  # a rendered scene, not a blank image
    assert compare_runs([tmp_path]).loc[("smoke", "zero", "", "", "")].tolist() == [0.0, 0.0]


@pytest.fixture(scope="module")
def push_env():
    from stvla_core.evaluation.closed_loop import make_env

    env = make_env(TASKS["PushCube-v1"], ClosedLoopConfig(image_size=64))
    yield env
    env.close()


@pytest.mark.sim
@requires_vulkan
@pytest.mark.filterwarnings("ignore:__array_wrap__ must accept context")  # ManiSkill 3.0.1 on NumPy 2
def test_mapped_deltas_move_the_panda_gripper_by_the_same_metres(push_env):
    from stvla_core.evaluation.closed_loop import observation

    mapping = ActionMapping.from_env(push_env)
    assert mapping == ActionMapping(True, -0.1, 0.1, -0.1, True, -0.01, 0.04)
    obs, _ = push_env.reset(seed=0)
    rgb, depth = observation(obs, "base_camera")
    assert rgb.shape == (64, 64, 3) and depth.dtype == np.float32
    assert 0.1 < float(np.median(depth[depth > 0])) < 3.0  # metres, not millimetres
    start = obs["extra"]["tcp_pose"][0, :3].numpy().copy()
    for k in range(10):  # 5 steps of dz = -0.01 m, then hold so the controller settles
        obs, *_ = push_env.step(mapping(np.float32([0, 0, -0.01 if k < 5 else 0.0, 0, 0, 0, 1])))
    moved = obs["extra"]["tcp_pose"][0, :3].numpy() - start
    np.testing.assert_allclose(moved, [0, 0, -0.05], atol=0.005)


class _ScriptedPusher:
    """Reads the true cube and goal poses (privileged): goes behind the cube, down, and pushes it
    along +x in steps of at most 2 cm. Shows that mapped actions can solve the task and that
    success is detected."""

    def __init__(self, env):
        self.u = env.unwrapped

    def reset(self, instruction):
        self.phase = 0

    def step(self, rgb, depth):
        base = self.u.agent.robot.pose.p[0].numpy()
        tcp, cube = self.u.agent.tcp.pose.p[0].numpy() - base, self.u.obj.pose.p[0].numpy() - base
        goal = self.u.goal_region.pose.p[0].numpy() - base
        targets = (
            cube + [-0.05, 0, 0.05],
            cube + [-0.05, 0, 0],
            np.array([goal[0] - 0.02, cube[1], cube[2]]),
        )
        delta = targets[self.phase] - tcp
        if np.linalg.norm(delta) < 0.01 and self.phase < 2:
            self.phase += 1
        return np.float32([*np.clip(delta, -0.02, 0.02), 0, 0, 0, 0])


@pytest.mark.sim
@requires_vulkan
def test_scripted_pusher_succeeds_where_standing_still_fails(push_env):
    from stvla_core.evaluation.closed_loop import run_episode

    spec, mapping = TASKS["PushCube-v1"], ActionMapping.from_env(push_env)
    for seed in (0, 1):
        _, success, at_end, length = run_episode(
            push_env, spec, _ScriptedPusher(push_env), mapping, seed=seed, max_steps=50, policy_name="pusher"
        )
        assert success and at_end and length < 50  # the task ends on success
        _, success, _, length = run_episode(
            push_env, spec, make_policy("zero"), mapping, seed=seed, max_steps=15, policy_name="zero"
        )
        assert not success and length == 15


@pytest.mark.sim
@requires_vulkan
def test_closed_loop_as_a_job_writes_results_into_the_job_folder(tmp_path):
    m = JobManager(tmp_path / "jobs")
    config = {"tasks": ["PushCube-v1"], "episodes_per_task": 2, "max_steps": 3, "record_video": False}
    job = m.wait(m.submit("evaluate_closed_loop", config).id, timeout=300)  # two shard processes
    assert job.state == "succeeded", m.log(job.id)
    result = m.result(job.id)
    summary = result["summary"]["PushCube-v1"]
    assert (summary["episodes"], summary["successes"], summary["mean_length"]) == (2, 0, 3.0)
    assert result["results"] == "results.json"
    assert [e["seed"] for e in load_results(job.dir)["episodes"]] == [EVAL_SEED_START, EVAL_SEED_START + 1]
    assert "PushCube-v1: success 0% over 2 episode(s)" in m.log(job.id)


def test_offline_evaluation_job_on_saved_episodes(tmp_path):
    import plotly.io

    from stvla_core.episodes import save_episode

    paths = []
    for name, t in (("a", 6), ("b", 4)):
        paths.append(str(tmp_path / f"{name}.npz"))
        save_episode(translating_episode(t=t, dx=2.0, name=name), paths[-1])
    (tmp_path / "broken.npz").write_bytes(b"not an episode")
    m = JobManager(tmp_path / "jobs")
    job = m.wait(m.submit("evaluate_offline", {"episodes": paths, "policy": "zero"}).id, timeout=60)
    assert job.state == "succeeded", m.log(job.id)
    result = m.result(job.id)
    assert result["episodes"] == ["a", "b"] and result["steps"] == 10
    assert result["mae"]["dx"] == pytest.approx(0.02) and result["mae"]["gripper"] == pytest.approx(1.0)
    errors = pd.read_csv(job.dir / "errors.csv")
    assert len(errors) == 10 * 7
    fig = plotly.io.from_json((job.dir / "error_per_step.plotly.json").read_text())
    assert len(fig.data) == 7
    replay = {"episodes": paths[:1], "policy": "replay", "policy_kwargs": {"episode": paths[0]}}
    replayed = m.wait(m.submit("evaluate_offline", replay).id, timeout=60)
    assert set(m.result(replayed.id)["mae"].values()) == {0.0}
    broken = m.wait(m.submit("evaluate_offline", {"episodes": [str(tmp_path / "broken.npz")]}).id, timeout=60)
    assert (
        broken.state == FAILED and broken.error.startswith("EpisodeError: ") and "broken.npz" in broken.error
    )
    assert m.result(job.id) == result  # the earlier job is untouched


def test_stvla_policy_registered_and_runs_closed_loop_steps() -> None:
    from stvla_core.evaluation.policies import POLICIES, check_action, make_policy, reset_policy

    assert "stvla" in POLICIES
    policy = make_policy("stvla", buffer=4, variant="A")
    reset_policy(policy, "pick up the cube", np.array([[200, 0, 112], [0, 200, 112], [0, 0, 1]], np.float32))
    rng = np.random.default_rng(0)
    for t in range(3):
        a = check_action(
            policy.step(rng.integers(0, 255, (224, 224, 3), dtype=np.uint8), np.ones((224, 224), np.float32)),
            "stvla",
            t,
        )
        assert 0.0 <= a[6] <= 1.0
    with pytest.raises(ValueError, match="unknown variant 'Z'"):
        make_policy("stvla", variant="Z")


def test_stvla_policy_ensembling_settings_reach_the_policy() -> None:
    from stvla_core.evaluation.policies import make_policy

    plain = make_policy("stvla", checkpoint="tiny", action_ensemble=False)
    assert plain.config.action_ensemble is False and plain.config.ensemble_temp == -0.8
    flat = make_policy("stvla", checkpoint="tiny", ensemble_temp=0.0)
    assert flat.config.action_ensemble is True and flat.ensembler.temp == 0.0
    first, second = np.zeros((4, 7)), np.ones((4, 7))
    first[1] = 3.0  # what the older chunk predicted for the second step
    flat.ensembler(first)
    assert np.allclose(flat.ensembler(second), 2.0)  # (3 + 1) / 2: equal weights at temp 0
    newer = make_policy("stvla", checkpoint="tiny")  # SimplerEnv's -0.8: weights 1 (old), e^0.8 (new)
    newer.ensembler(first)
    w = np.exp(0.8)
    assert np.allclose(newer.ensembler(second), (3.0 + w) / (1 + w))


def test_wilson_interval_hand_computed():
    from stvla_core.evaluation.results import wilson_interval

    lo, hi = wilson_interval(0, 50)
    assert lo == 0.0 and hi == pytest.approx(0.0713, abs=1e-4)  # 3.84 / 53.84
    lo, hi = wilson_interval(25, 50)
    assert (lo, hi) == (pytest.approx(0.3664, abs=1e-4), pytest.approx(0.6336, abs=1e-4))
    with pytest.raises(ValueError, match="0 <= successes <= n"):
        wilson_interval(3, 2)
