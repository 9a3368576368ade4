"""Episode formats: round trips through every format, detection from the path, LeRobot v2.1 and
v3.0 folders, SimplerEnv rollout names, and clear errors for every kind of bad input."""

from __future__ import annotations

import io
import json
import os
import stat
from pathlib import Path

import av
import cv2
import numpy as np
import pandas as pd
import pytest
from episode_fixtures import (
    CAMERAS,
    LENGTHS,
    TASKS,
    episode_actions,
    episode_frames,
    make_lerobot_v21,
    make_lerobot_v30,
    write_video,
)
from PIL import Image

from stvla_core.episodes import (
    EPISODE_FORMATS,
    Episode,
    EpisodeError,
    LoadLimits,
    detect_format,
    load_episode,
    save_episode,
)
from stvla_core.episodes.formats import native, video
from stvla_core.episodes.formats.simplerenv import parse_simplerenv_path

T, H, W = 6, 33, 41  # odd sizes on purpose: H.264 needs even ones


def moving_frames(t: int = T, h: int = H, w: int = W) -> np.ndarray:
    """Smooth backgrounds with a bright square moving right: easy for a codec, easy to check."""
    f = np.zeros((t, h, w, 3), np.uint8)
    f[..., 0] = np.linspace(30, 200, w, dtype=np.uint8)[None, None, :]
    f[..., 2] = 90
    for i in range(t):
        f[i, 10:18, 4 + 4 * i : 12 + 4 * i] = 255
    return f


def rich_episode(t: int = T) -> Episode:
    rng = np.random.default_rng(0)
    return Episode(
        frames=moving_frames(t),
        instruction="put the spoon on the towel",
        fps=7.5,
        depth=rng.uniform(0.3, 2.0, (t, H, W)).astype(np.float32),
        segmentation=rng.integers(0, 4, (t, H, W)).astype(np.int32),
        segmentation_names={0: "table", 3: "spoon"},
        actions=rng.normal(size=(t, 7)).astype(np.float32),
        intrinsics=np.array([[50, 0, 20.5], [0, 50, 16.5], [0, 0, 1]], np.float32),
        extrinsics=rng.normal(size=(t, 4, 4)).astype(np.float32),
        gt_points=rng.uniform(0, 30, (t, 2, 2)).astype(np.float32),
        gt_visible=rng.random((t, 2)) > 0.3,
        gt_point_names=["left_finger", "right_finger"],
        name="spoon",
        source="unit test",
        metadata={"success": True, "nested": {"seed": 3, "list": [1, 2.5, "x"]}},
    )


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def assert_same(a: Episode, b: Episode) -> None:
    for key in (
        "frames",
        "depth",
        "segmentation",
        "actions",
        "intrinsics",
        "extrinsics",
        "gt_points",
        "gt_visible",
    ):
        x, y = getattr(a, key), getattr(b, key)
        assert (x is None) == (y is None), key
        if x is not None:
            assert x.dtype == y.dtype and np.array_equal(x, y), key
    for key in ("instruction", "fps", "segmentation_names", "gt_point_names", "name", "source", "metadata"):
        assert getattr(a, key) == getattr(b, key), key


# -- the project's own .npz -------------------------------------------------------------------
def test_npz_round_trip_is_lossless(tmp_path: Path) -> None:
    ep = rich_episode()
    path = save_episode(ep, tmp_path / "spoon.npz")
    assert path == tmp_path / "spoon.npz" and detect_format(path) == "npz"
    assert_same(ep, load_episode(path))
    with np.load(path) as z:
        assert str(z["format"]) == "stvla-episode" and int(z["format_version"]) == 1


def test_npz_minimal_episode_round_trip(tmp_path: Path) -> None:
    ep = Episode(frames=moving_frames(2))
    assert_same(ep, load_episode(save_episode(ep, tmp_path / "a.npz")))


def test_npz_save_is_atomic_and_uses_the_usual_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = save_episode(rich_episode(), tmp_path / "ep.npz")
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~_umask()

    def crash(file: str, **arrays: object) -> None:
        Path(file).write_bytes(b"half an archive")
        raise KeyboardInterrupt

    monkeypatch.setattr(native.np, "savez_compressed", crash)
    with pytest.raises(KeyboardInterrupt):
        save_episode(Episode(frames=moving_frames(1)), path)
    assert listing(tmp_path) == ["ep.npz"]  # no temporary left, the old file untouched
    assert load_episode(path).num_frames == T


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_npz_that_is_not_an_episode(tmp_path: Path) -> None:
    np.savez(tmp_path / "weights.npz", w=np.zeros(3))
    with pytest.raises(EpisodeError, match="weights.npz.*not an episode"):
        load_episode(tmp_path / "weights.npz")


def test_npz_from_a_newer_version(tmp_path: Path) -> None:
    np.savez(
        tmp_path / "new.npz",
        format=np.array("stvla-episode"),
        format_version=np.array(2),
        meta=np.array("{}"),
    )
    with pytest.raises(EpisodeError, match="version 2; this tool reads up to 1"):
        load_episode(tmp_path / "new.npz")


def test_npz_with_invalid_field_names_file_and_field(tmp_path: Path) -> None:
    np.savez(
        tmp_path / "bad.npz",
        format=np.array("stvla-episode"),
        format_version=np.array(1),
        meta=np.array("{}"),
        frames=np.zeros((2, 4, 4, 3), np.uint8),
        actions=np.zeros((2, 6), np.float32),
    )
    with pytest.raises(EpisodeError, match=r"bad\.npz.*'actions': expected shape \(2, 7\)"):
        load_episode(tmp_path / "bad.npz")


# -- video + sidecar --------------------------------------------------------------------------
def test_mp4_round_trip_keeps_shape_pixels_and_sidecar(tmp_path: Path) -> None:
    ep = rich_episode()
    path = save_episode(ep, tmp_path / "clip.mp4")
    assert listing(tmp_path) == ["clip.json", "clip.mp4"]
    back = load_episode(path)
    assert back.frames.shape == ep.frames.shape  # odd size padded for H.264, cropped back
    assert np.abs(back.frames.astype(int) - ep.frames).mean() < 3.0
    assert np.array_equal(back.actions, ep.actions) and np.array_equal(back.intrinsics, ep.intrinsics)
    assert (back.instruction, back.fps, back.name, back.metadata) == (
        ep.instruction,
        7.5,
        "spoon",
        ep.metadata,
    )
    assert back.depth is None  # a video keeps only what the sidecar can hold
    with av.open(str(path)) as c:
        assert c.streams.video[0].codec_context.name == "h264"


@pytest.mark.parametrize("fail_in", ["encode_video", "sidecar"])
def test_mp4_save_replaces_video_and_sidecar_together(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fail_in: str
) -> None:
    old = rich_episode()
    path = save_episode(old, tmp_path / "clip.mp4")
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~_umask()

    def crash(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    if fail_in == "encode_video":
        monkeypatch.setattr(video, "encode_video", crash)
    else:  # the video is fully written to its temporary, then the sidecar fails
        monkeypatch.setattr(video, "episode_sidecar", crash)
    with pytest.raises(KeyboardInterrupt):
        save_episode(old.replace(instruction="new", actions=None), path)
    assert listing(tmp_path) == ["clip.json", "clip.mp4"]  # no temporaries left
    back = load_episode(path)
    assert back.instruction == old.instruction and np.array_equal(back.actions, old.actions)


def test_video_without_sidecar_takes_fps_from_the_stream(tmp_path: Path) -> None:
    frames = moving_frames(5, 32, 48)
    write_video(frames, tmp_path / "plain.mp4", fps=12)
    ep = load_episode(tmp_path / "plain.mp4")
    assert (ep.num_frames, ep.size, ep.fps, ep.name, ep.actions) == (5, (32, 48), 12.0, "plain", None)
    assert np.abs(ep.frames.astype(int) - frames).mean() < 3.0


def test_video_with_a_sidecar_elsewhere(tmp_path: Path) -> None:
    write_video(moving_frames(3, 16, 16), tmp_path / "clip.mp4")
    (tmp_path / "labels.json").write_text(json.dumps({"instruction": "wave", "fps": 3}))
    ep = load_episode(tmp_path / "clip.mp4", sidecar=tmp_path / "labels.json")
    assert (ep.instruction, ep.fps) == ("wave", 3.0)
    with pytest.raises(EpisodeError, match=r"sidecar .*missing\.json' does not exist"):
        load_episode(tmp_path / "clip.mp4", sidecar=tmp_path / "missing.json")


def test_gif_is_read(tmp_path: Path) -> None:
    frames = np.zeros((3, 16, 20, 3), np.uint8)
    frames[1] = 255
    with av.open(str(tmp_path / "g.gif"), "w") as out:
        s = out.add_stream("gif", rate=4)
        s.pix_fmt, s.width, s.height = "rgb8", 20, 16
        for f in frames:
            out.mux(s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        out.mux(s.encode(None))
    ep = load_episode(tmp_path / "g.gif")
    assert detect_format(tmp_path / "g.gif") == "video"
    assert ep.frames.shape == (3, 16, 20, 3) and ep.frames[1].min() > 200 and ep.frames[0].max() < 50


def test_sidecar_with_wrong_action_count_names_sidecar_and_field(tmp_path: Path) -> None:
    write_video(moving_frames(4, 32, 48), tmp_path / "clip.mp4")
    (tmp_path / "clip.json").write_text(
        json.dumps({"actions": np.zeros((3, 7)).tolist(), "instruction": "go"})
    )
    with pytest.raises(EpisodeError, match=r"clip\.json.*'actions': expected shape \(4, 7\)"):
        load_episode(tmp_path / "clip.mp4")


@pytest.mark.parametrize(
    ("sidecar", "problem"),
    [
        ("{not json", "is not valid JSON"),
        ("[1, 2]", "expected a JSON object, found list"),
        ('{"instruction": 5}', "field 'instruction': expected a string, found int"),
        ('{"fps": "fast"}', "field 'fps': expected a number"),
        ('{"intrinsics": [[1, 2], [3]]}', "field 'intrinsics': expected a numeric array"),
    ],
)
def test_bad_sidecar(tmp_path: Path, sidecar: str, problem: str) -> None:
    write_video(moving_frames(2, 16, 16), tmp_path / "clip.mp4")
    (tmp_path / "clip.json").write_text(sidecar)
    with pytest.raises(EpisodeError, match="clip.json") as info:
        load_episode(tmp_path / "clip.mp4")
    assert problem in str(info.value)


# -- SimplerEnv rollout videos ----------------------------------------------------------------
SIMPLER_DIR = (
    "rt_1_x/google_pick_coke_can_1_v4/arm_pd_ee_delta_pose_align_interpolate_by_planner"
    "/GraspSingleOpenedCokeCanInScene-v0_urdf_version_recolor_tabletop_gray"
    "/rob_0.35_0.2_rot_0.000_0.000_3.142_rgb_overlay_None"
)


def test_simplerenv_success_video(tmp_path: Path) -> None:
    path = tmp_path / SIMPLER_DIR / "success_obj_episode_3_is_src_obj_grasped_True_consecutive_grasp_True.mp4"
    write_video(moving_frames(4, 32, 48), path, fps=5)
    assert detect_format(path) == "simplerenv"
    ep = load_episode(path)
    assert ep.metadata["success"] is True and ep.instruction == "pick coke can" and ep.fps == 5.0
    info = ep.metadata["simplerenv"]
    assert info["obj_episode_id"] == 3
    assert info["episode_stats"] == {"is_src_obj_grasped": True, "consecutive_grasp": True}
    assert info["env_name"] == "GraspSingleOpenedCokeCanInScene-v0"
    assert info["scene_name"] == "google_pick_coke_can_1_v4"
    assert info["control_mode"] == "arm_pd_ee_delta_pose_align_interpolate_by_planner"


def test_simplerenv_failure_video_in_xy_mode(tmp_path: Path) -> None:
    path = tmp_path / "failure_obj_-0.12_0.3_moved_correct_obj_False_moved_wrong_obj_False.mp4"
    write_video(moving_frames(3, 16, 16), path, fps=5)
    ep = load_episode(path)
    assert ep.metadata["success"] is False and ep.instruction == ""
    assert ep.metadata["simplerenv"]["obj_init_xy"] == [-0.12, 0.3]
    assert ep.metadata["simplerenv"]["episode_stats"] == {
        "moved_correct_obj": False,
        "moved_wrong_obj": False,
    }


def test_simplerenv_format_named_for_another_video(tmp_path: Path) -> None:
    write_video(moving_frames(2, 16, 16), tmp_path / "clip.mp4")
    with pytest.raises(EpisodeError, match="not named like a SimplerEnv rollout.*found 'clip.mp4'"):
        load_episode(tmp_path / "clip.mp4", format="simplerenv")
    with pytest.raises(EpisodeError, match="video file .*: expected a regular file, found a folder"):
        load_episode(tmp_path, format="video")


def test_other_mp4_names_are_plain_videos(tmp_path: Path) -> None:
    assert parse_simplerenv_path(Path("successful_run.mp4")) == {}
    write_video(moving_frames(2, 16, 16), tmp_path / "successful_run.mp4")
    assert detect_format(tmp_path / "successful_run.mp4") == "video"
    assert "success" not in load_episode(tmp_path / "successful_run.mp4").metadata


# -- a folder of frames -----------------------------------------------------------------------
def test_frames_folder_round_trip_is_lossless(tmp_path: Path) -> None:
    ep = rich_episode().replace(
        depth=None, segmentation=None, extrinsics=None, gt_points=None, gt_visible=None
    )
    ep = ep.replace(gt_point_names=[], segmentation_names={})
    path = save_episode(ep, tmp_path / "frames_out")
    assert detect_format(path) == "frames"
    assert listing(path)[:2] == ["episode.json", "frame_000000.png"] and len(listing(path)) == T + 1
    back = load_episode(path)
    assert_same(ep, back)


def test_frames_are_sorted_naturally(tmp_path: Path) -> None:
    for i in (10, 2, 1):
        Image.fromarray(np.full((8, 10, 3), i * 20, np.uint8)).save(tmp_path / f"f_{i}.png")
    Image.fromarray(np.full((8, 10, 3), 99, np.uint8)).save(tmp_path / "f_3.jpg", quality=100)
    (tmp_path / "._f_0.png").write_bytes(b"resource fork")  # hidden: left out, not "corrupt"
    ep = load_episode(tmp_path)
    assert [int(f[0, 0, 0]) for f in ep.frames[:2]] + [int(ep.frames[3, 0, 0, 0])] == [20, 40, 200]
    assert abs(int(ep.frames[2, 0, 0, 0]) - 99) <= 2
    assert (ep.name, ep.fps) == (tmp_path.name, 10.0)


def test_frames_of_mixed_sizes(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((8, 10, 3), np.uint8)).save(tmp_path / "a_0.png")
    Image.fromarray(np.zeros((9, 10, 3), np.uint8)).save(tmp_path / "a_1.png")
    with pytest.raises(EpisodeError, match=r"a_1\.png.* is 10x9, expected 10x8"):
        load_episode(tmp_path)


def test_corrupt_frame(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((8, 10, 3), np.uint8)).save(tmp_path / "a_0.png")
    (tmp_path / "a_1.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(EpisodeError, match=r"a_1\.png.*not a readable PNG/JPEG image"):
        load_episode(tmp_path)


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_truncated_frame(tmp_path: Path, suffix: str) -> None:
    Image.fromarray(moving_frames(1)[0]).save(tmp_path / f"a_0{suffix}")
    Image.fromarray(moving_frames(2)[1]).save(tmp_path / f"a_1{suffix}")
    whole = (tmp_path / f"a_1{suffix}").read_bytes()
    (tmp_path / f"a_1{suffix}").write_bytes(whole[: len(whole) * 2 // 3])
    with pytest.raises(EpisodeError, match=rf"frame .*a_1\{suffix}' is not a readable PNG/JPEG image"):
        load_episode(tmp_path)


def test_grey_and_16_bit_frames_become_8_bit_rgb(tmp_path: Path) -> None:
    Image.fromarray(np.full((8, 10), 77, np.uint8)).save(tmp_path / "a_0.png")
    cv2.imwrite(str(tmp_path / "a_1.png"), np.full((8, 10), 200 * 256 + 99, np.uint16))
    Image.fromarray(np.full((8, 10, 4), [10, 20, 30, 128], np.uint8)).save(tmp_path / "a_2.png")
    ep = load_episode(tmp_path)
    assert ep.frames.dtype == np.uint8 and ep.frames.shape == (3, 8, 10, 3)
    assert ep.frames[0, 0, 0].tolist() == [77, 77, 77]
    assert ep.frames[1, 0, 0].tolist() == [200, 200, 200]  # 16-bit scaled down, not clipped
    assert ep.frames[2, 0, 0].tolist() == [10, 20, 30]


def test_frames_sidecar_with_wrong_action_shape(tmp_path: Path) -> None:
    for i in range(3):
        Image.fromarray(moving_frames(3)[i]).save(tmp_path / f"f_{i}.png")
    (tmp_path / "episode.json").write_text(json.dumps({"actions": np.zeros((3, 6)).tolist()}))
    with pytest.raises(EpisodeError, match=r"episode\.json.*'actions': expected shape \(3, 7\)"):
        load_episode(tmp_path)


def test_frames_save_refuses_a_non_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("keep me")
    with pytest.raises(EpisodeError, match="exists and is not empty"):
        save_episode(Episode(frames=moving_frames(1)), tmp_path / "out")
    assert listing(tmp_path / "out") == ["notes.txt"]


# -- LeRobot ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lerobot_v21(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_lerobot_v21(tmp_path_factory.mktemp("v21") / "synthetic_v21")


@pytest.fixture(scope="module")
def lerobot_v30(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_lerobot_v30(tmp_path_factory.mktemp("v30") / "synthetic_v30")


@pytest.mark.parametrize("version", ["v21", "v30"])
@pytest.mark.parametrize("camera", list(CAMERAS))
@pytest.mark.parametrize("index", [0, 1, 2])
def test_lerobot_loads_the_chosen_episode_and_camera(
    request: pytest.FixtureRequest, version: str, camera: str, index: int
) -> None:
    root = request.getfixturevalue(f"lerobot_{version}")
    assert detect_format(root) == "lerobot"
    ep = load_episode(root, episode_index=index, camera=camera)
    assert ep.num_frames == LENGTHS[index] and ep.size == (48, 64)
    assert np.abs(ep.frames.astype(int) - episode_frames(index, camera)).max() <= 6
    assert np.array_equal(ep.actions, episode_actions(index))
    assert ep.instruction == TASKS[index] and ep.fps == 10.0
    assert ep.metadata["lerobot"]["camera"] == camera and ep.metadata["lerobot"]["episode_index"] == index
    assert ep.name == f"{root.name}_episode_{index}"


def test_lerobot_v30_video_is_av1(lerobot_v30: Path) -> None:
    with av.open(str(lerobot_v30 / "videos/observation.images.top/chunk-000/file-000.mp4")) as c:
        assert c.streams.video[0].codec_context.codec.id == av.codec.Codec("av1").id


def test_lerobot_v30_episode_in_a_second_file(tmp_path: Path) -> None:
    """Episode 2 moved to data file-001, video file-001 (H.264 this time) and a second metadata
    file: the loader must follow the episode's chunk/file indices, not assume file-000."""
    root = make_lerobot_v30(tmp_path / "ds", codec="libx264")
    data_file = root / "data/chunk-000/file-000.parquet"
    rows = pd.read_parquet(data_file)
    rows[rows["episode_index"] < 2].to_parquet(data_file)
    rows[rows["episode_index"] == 2].to_parquet(root / "data/chunk-000/file-001.parquet")
    meta_file = root / "meta/episodes/chunk-000/file-000.parquet"
    meta = pd.read_parquet(meta_file)
    meta.loc[2, "data/file_index"] = 1
    for cam in CAMERAS:
        write_video(episode_frames(2, cam), root / f"videos/{cam}/chunk-000/file-001.mp4")
        meta.loc[2, [f"videos/{cam}/file_index", f"videos/{cam}/from_timestamp"]] = [1, 0.0]
        meta.loc[2, f"videos/{cam}/to_timestamp"] = LENGTHS[2] / 10
    meta["stats/action/mean"] = [np.zeros(7)] * len(meta)  # per-episode statistics, not needed
    meta.iloc[:2].to_parquet(meta_file)
    meta.iloc[2:].to_parquet(root / "meta/episodes/chunk-000/file-001.parquet")
    for index in (1, 2):
        ep = load_episode(root, episode_index=index, camera="observation.images.wrist")
        assert ep.num_frames == LENGTHS[index] and ep.instruction == TASKS[index]
        assert np.abs(ep.frames.astype(int) - episode_frames(index, "observation.images.wrist")).max() <= 6
        assert np.array_equal(ep.actions, episode_actions(index))
    with pytest.raises(EpisodeError, match=r"has no episode 3; it has episodes 0\.\.2"):
        load_episode(root, episode_index=3)


def test_lerobot_default_camera_is_the_first_listed(lerobot_v21: Path) -> None:
    assert load_episode(lerobot_v21).metadata["lerobot"]["camera"] == "observation.images.top"


@pytest.mark.parametrize("version", ["v21", "v30"])
def test_lerobot_missing_episode_and_camera(request: pytest.FixtureRequest, version: str) -> None:
    root = request.getfixturevalue(f"lerobot_{version}")
    with pytest.raises(EpisodeError, match=r"has no episode 7; it has episodes 0\.\.2"):
        load_episode(root, episode_index=7)
    with pytest.raises(EpisodeError, match="has no camera 'front'; expected one of observation.images.top, "):
        load_episode(root, camera="front")
    with pytest.raises(EpisodeError, match="episode_index: expected an integer, found '1'"):
        load_episode(root, episode_index="1")
    assert load_episode(root, episode_index=np.int64(1)).num_frames == LENGTHS[1]


def test_lerobot_unknown_version(tmp_path: Path) -> None:
    (tmp_path / "meta").mkdir()
    (tmp_path / "meta" / "info.json").write_text(
        json.dumps({"codebase_version": "v1.6", "fps": 10, "features": {"cam": {"dtype": "video"}}})
    )
    with pytest.raises(EpisodeError, match="codebase_version 'v1.6': expected v2.0, v2.1 or v3.0"):
        load_episode(tmp_path)


def test_lerobot_actions_of_other_size_are_left_out(tmp_path: Path) -> None:
    root = make_lerobot_v21(tmp_path / "ds")
    data = root / "data/chunk-000/episode_000001.parquet"
    df = pd.read_parquet(data)
    df["action"] = [np.zeros(14, np.float32)] * len(df)
    df.to_parquet(data)
    ep = load_episode(root, episode_index=1)
    assert ep.actions is None and ep.metadata["lerobot"]["action_dim"] == 14


def test_lerobot_missing_video_names_it(tmp_path: Path) -> None:
    root = make_lerobot_v21(tmp_path / "ds")
    (root / "videos/chunk-000/observation.images.wrist/episode_000002.mp4").unlink()
    with pytest.raises(
        EpisodeError, match=r"observation\.images\.wrist/episode_000002\.mp4.* does not exist"
    ):
        load_episode(root, episode_index=2, camera="observation.images.wrist")


def test_lerobot_image_features_stored_in_parquet(tmp_path: Path) -> None:
    root = make_lerobot_v21(tmp_path / "ds")
    info = json.loads((root / "meta/info.json").read_text())
    info["features"]["observation.image"] = {"dtype": "image", "shape": [8, 10, 3], "names": None}
    (root / "meta/info.json").write_text(json.dumps(info))
    data = root / "data/chunk-000/episode_000001.parquet"
    df = pd.read_parquet(data)
    cells = []
    for i in range(len(df)):
        buf = io.BytesIO()
        Image.fromarray(np.full((8, 10, 3), 10 * i, np.uint8)).save(buf, format="PNG")
        cells.append({"bytes": buf.getvalue(), "path": f"frame_{i}.png"})
    df["observation.image"] = cells
    df.to_parquet(data)
    ep = load_episode(root, episode_index=1, camera="observation.image")
    assert ep.frames.shape == (LENGTHS[1], 8, 10, 3)
    assert [int(f[0, 0, 0]) for f in ep.frames] == [10 * i for i in range(LENGTHS[1])]
    assert np.array_equal(ep.actions, episode_actions(1))


def test_lerobot_byte_limit_counts_only_the_episode_files(lerobot_v21: Path) -> None:
    episode_files = [
        lerobot_v21 / "data/chunk-000/episode_000000.parquet",
        lerobot_v21 / "videos/chunk-000/observation.images.top/episode_000000.mp4",
    ]
    need = sum(f.stat().st_size for f in episode_files)
    whole = sum(f.stat().st_size for f in lerobot_v21.rglob("*") if f.is_file())
    assert whole > need
    assert load_episode(lerobot_v21, limits=LoadLimits(max_bytes=need)).num_frames == LENGTHS[0]
    with pytest.raises(EpisodeError, match=f"is {need} bytes, over the limit of {need - 1} bytes"):
        load_episode(lerobot_v21, limits=LoadLimits(max_bytes=need - 1))


def test_lerobot_corrupt_parquet(tmp_path: Path) -> None:
    root = make_lerobot_v21(tmp_path / "ds")
    (root / "data/chunk-000/episode_000000.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(EpisodeError, match=r"episode_000000\.parquet.*not a readable parquet file"):
        load_episode(root)


# -- bad input of every kind ------------------------------------------------------------------
def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(EpisodeError, match="nowhere.npz.* does not exist"):
        load_episode(tmp_path / "nowhere.npz")


@pytest.mark.parametrize("name", ["empty.npz", "empty.mp4"])
def test_empty_file(tmp_path: Path, name: str) -> None:
    (tmp_path / name).touch()
    with pytest.raises(EpisodeError, match=f"{name}' is empty"):
        load_episode(tmp_path / name)


def test_unsupported_suffix(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(
        EpisodeError, match=r"notes\.txt.* is not an episode format this tool reads; expected one of: npz"
    ):
        load_episode(tmp_path / "notes.txt")


def test_empty_folder_is_not_an_episode(tmp_path: Path) -> None:
    with pytest.raises(EpisodeError, match="is not an episode format"):
        load_episode(tmp_path)


@pytest.mark.parametrize("name", ["ep.npz", "clip.mp4"])
def test_truncated_file(tmp_path: Path, name: str) -> None:
    path = save_episode(rich_episode(), tmp_path / name)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(EpisodeError, match=r"corrupt or truncated"):
        load_episode(path)


@pytest.mark.parametrize("name", ["ep.npz", "clip.mp4", "clip.webm"])
def test_corrupt_file(tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_bytes(np.random.default_rng(1).bytes(4096))
    with pytest.raises(EpisodeError, match=rf"{name}.*corrupt or truncated"):
        load_episode(tmp_path / name)


def test_oversized_in_bytes(tmp_path: Path) -> None:
    path = save_episode(rich_episode(), tmp_path / "ep.npz")
    with pytest.raises(EpisodeError, match=r"ep\.npz' is \d+ bytes, over the limit of 1000 bytes"):
        load_episode(path, limits=LoadLimits(max_bytes=1000))


@pytest.mark.parametrize("kind", ["ep.npz", "clip.mp4", "frames", "lerobot"])
def test_oversized_in_frames(tmp_path: Path, kind: str) -> None:
    if kind == "lerobot":
        path = make_lerobot_v21(tmp_path / "ds")  # episode 0 has 4 frames
    else:
        path = save_episode(Episode(frames=moving_frames(5)), tmp_path / kind)
    with pytest.raises(EpisodeError, match="limit of 3|more than 3 frames"):
        load_episode(path, limits=LoadLimits(max_frames=3))


@pytest.mark.parametrize("kind", ["ep.npz", "clip.mp4", "frames", "lerobot"])
def test_oversized_when_decoded(tmp_path: Path, kind: str) -> None:
    """Small files can decode to huge arrays: the decoded-size limit is exact at the boundary."""
    if kind == "lerobot":
        path, need = make_lerobot_v21(tmp_path / "ds"), LENGTHS[0] * 48 * 64 * 3
    else:
        path, need = save_episode(Episode(frames=moving_frames(5, 32, 48)), tmp_path / kind), 5 * 32 * 48 * 3
    assert load_episode(path, limits=LoadLimits(max_decoded_bytes=need)).frames.nbytes == need
    with pytest.raises(
        EpisodeError, match=rf"decodes to {need} bytes or more, over the limit of {need - 1} "
    ):
        load_episode(path, limits=LoadLimits(max_decoded_bytes=need - 1))


def test_npz_limits_are_checked_from_headers_before_decompressing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = save_episode(Episode(frames=moving_frames(5)), tmp_path / "ep.npz")

    getitem = np.lib.npyio.NpzFile.__getitem__

    def no_decompression(self: np.lib.npyio.NpzFile, key: str) -> np.ndarray:
        if key in native.ARRAYS:
            raise AssertionError(f"decompressed {key!r} before checking the limits")
        return getitem(self, key)

    monkeypatch.setattr(np.lib.npyio.NpzFile, "__getitem__", no_decompression)
    for limits in (LoadLimits(max_frames=4), LoadLimits(max_decoded_bytes=100)):
        with pytest.raises(EpisodeError, match="over the limit"):
            load_episode(path, limits=limits)


def test_format_override(tmp_path: Path) -> None:
    path = save_episode(Episode(frames=moving_frames(2)), tmp_path / "ep.npz")
    renamed = path.rename(tmp_path / "ep.bin")
    with pytest.raises(EpisodeError, match="not an episode format"):
        load_episode(renamed)
    assert load_episode(renamed, format="npz").num_frames == 2
    with pytest.raises(EpisodeError, match="unknown episode format 'zip'; expected one of npz, simplerenv"):
        load_episode(renamed, format="zip")


def test_option_the_format_does_not_take(tmp_path: Path) -> None:
    path = save_episode(Episode(frames=moving_frames(2)), tmp_path / "ep.npz")
    with pytest.raises(EpisodeError, match=r"format 'npz' takes options none, not \['camera'\]"):
        load_episode(path, camera="top")


def test_save_errors(tmp_path: Path) -> None:
    ep = Episode(frames=moving_frames(1))
    with pytest.raises(EpisodeError, match=r"no episode format writes '\.txt' files"):
        save_episode(ep, tmp_path / "ep.txt")
    with pytest.raises(EpisodeError, match="episode format 'lerobot' is read-only"):
        save_episode(ep, tmp_path / "ds", format="lerobot")
    assert listing(tmp_path) == []


def test_registry_lists_every_format() -> None:
    assert EPISODE_FORMATS.names() == ["frames", "lerobot", "npz", "simplerenv", "video"]


def test_loading_never_writes_next_to_the_input(tmp_path: Path, lerobot_v30: Path) -> None:
    ep = rich_episode().replace(
        depth=None, segmentation=None, extrinsics=None, gt_points=None, gt_visible=None
    )
    ep = ep.replace(gt_point_names=[], segmentation_names={})
    for name in ("a.npz", "b.mp4", "frames"):
        save_episode(ep, tmp_path / name)
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    before_ds = sorted(str(p) for p in lerobot_v30.rglob("*"))
    for name in ("a.npz", "b.mp4", "frames"):
        load_episode(tmp_path / name)
    load_episode(lerobot_v30, episode_index=2)
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before
    assert sorted(str(p) for p in lerobot_v30.rglob("*")) == before_ds
