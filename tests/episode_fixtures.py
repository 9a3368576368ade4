"""Tiny synthetic episode files for the format tests: videos written with PyAV, LeRobot v2.1 and
v3.0 folders written with pandas + PyAV, each episode and camera with its own distinct content."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pandas as pd

FPS = 10
H, W = 48, 64
LENGTHS = (4, 6, 5)  # three episodes of distinct lengths
CAMERAS = {"observation.images.top": 0, "observation.images.wrist": 2}  # camera -> bright channel
TASKS = ("pick up the red block", "open the drawer", "push the can left")


def write_video(frames: np.ndarray, path: Path, fps: int = FPS, codec: str = "libx264") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=fps)
        stream.pix_fmt = "yuv420p"
        stream.height, stream.width = frames.shape[1:3]
        if codec == "libx264":
            stream.options = {"crf": "10"}
        for rgb in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        out.mux(stream.encode(None))


def episode_frames(episode: int, camera: str) -> np.ndarray:
    """(T, H, W, 3): the camera's channel bright, the other two encoding episode and step."""
    t = LENGTHS[episode]
    f = np.zeros((t, H, W, 3), np.uint8)
    f[..., CAMERAS[camera]] = 220
    f[..., 1] = 40 + 60 * episode  # green tells the episode apart
    other = 2 - CAMERAS[camera]
    f[..., other] = (np.arange(t) * 12)[:, None, None]  # the step, for ordering checks
    return f


def episode_actions(episode: int) -> np.ndarray:
    t = LENGTHS[episode]
    a = np.zeros((t, 7), np.float32)
    a[:, 0] = episode  # dx tells the episode apart
    a[:, 1] = np.arange(t) / 10
    a[:, 6] = 1.0
    return a


def _features(extra_action_dim: int = 7) -> dict:
    feats = {
        cam: {
            "dtype": "video",
            "shape": [H, W, 3],
            "names": ["height", "width", "channels"],
            "info": {"video.fps": FPS, "video.codec": "h264", "video.pix_fmt": "yuv420p"},
        }
        for cam in CAMERAS
    }
    feats["action"] = {"dtype": "float32", "shape": [extra_action_dim], "names": None}
    for k in ("timestamp",):
        feats[k] = {"dtype": "float32", "shape": [1], "names": None}
    for k in ("frame_index", "episode_index", "index", "task_index"):
        feats[k] = {"dtype": "int64", "shape": [1], "names": None}
    return feats


def _rows(episode: int, start_index: int) -> pd.DataFrame:
    t = LENGTHS[episode]
    return pd.DataFrame(
        {
            "action": list(episode_actions(episode)),
            "timestamp": (np.arange(t) / FPS).astype(np.float32),
            "frame_index": np.arange(t),
            "episode_index": np.full(t, episode),
            "index": start_index + np.arange(t),
            "task_index": np.full(t, episode),
        }
    )


def make_lerobot_v21(root: Path) -> Path:
    (root / "meta").mkdir(parents=True)
    info = {
        "codebase_version": "v2.1",
        "robot_type": "synthetic",
        "total_episodes": len(LENGTHS),
        "total_frames": sum(LENGTHS),
        "total_tasks": len(TASKS),
        "total_videos": len(LENGTHS) * len(CAMERAS),
        "total_chunks": 1,
        "chunks_size": 1000,
        "fps": FPS,
        "splits": {"train": f"0:{len(LENGTHS)}"},
        "data_path": "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
        "video_path": "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4",
        "features": _features(),
    }
    (root / "meta" / "info.json").write_text(json.dumps(info))
    episodes = [{"episode_index": e, "tasks": [TASKS[e]], "length": n} for e, n in enumerate(LENGTHS)]
    (root / "meta" / "episodes.jsonl").write_text("\n".join(map(json.dumps, episodes)) + "\n")
    tasks = [{"task_index": i, "task": t} for i, t in enumerate(TASKS)]
    (root / "meta" / "tasks.jsonl").write_text("\n".join(map(json.dumps, tasks)) + "\n")
    start = 0
    for e in range(len(LENGTHS)):
        data = root / f"data/chunk-000/episode_{e:06d}.parquet"
        data.parent.mkdir(parents=True, exist_ok=True)
        _rows(e, start).to_parquet(data)
        start += LENGTHS[e]
        for cam in CAMERAS:
            write_video(episode_frames(e, cam), root / f"videos/chunk-000/{cam}/episode_{e:06d}.mp4")
    return root


def make_lerobot_v30(root: Path, codec: str = "libsvtav1") -> Path:
    """All three episodes in one data file and one video file per camera (AV1 by default)."""
    (root / "meta" / "episodes" / "chunk-000").mkdir(parents=True)
    feats = _features()
    for cam in CAMERAS:
        feats[cam]["info"]["video.codec"] = "av1"
    info = {
        "codebase_version": "v3.0",
        "robot_type": "synthetic",
        "total_episodes": len(LENGTHS),
        "total_frames": sum(LENGTHS),
        "total_tasks": len(TASKS),
        "chunks_size": 1000,
        "data_files_size_in_mb": 100,
        "video_files_size_in_mb": 500,
        "fps": FPS,
        "splits": {"train": f"0:{len(LENGTHS)}"},
        "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
        "video_path": "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4",
        "features": feats,
    }
    (root / "meta" / "info.json").write_text(json.dumps(info))
    starts = np.concatenate([[0], np.cumsum(LENGTHS)])
    rows = pd.concat([_rows(e, int(starts[e])) for e in range(len(LENGTHS))], ignore_index=True)
    (root / "data" / "chunk-000").mkdir(parents=True)
    rows.to_parquet(root / "data/chunk-000/file-000.parquet")
    episodes = {
        "episode_index": list(range(len(LENGTHS))),
        "tasks": [[t] for t in TASKS],
        "length": list(LENGTHS),
        "data/chunk_index": [0] * len(LENGTHS),
        "data/file_index": [0] * len(LENGTHS),
        "dataset_from_index": [int(s) for s in starts[:-1]],
        "dataset_to_index": [int(s) for s in starts[1:]],
    }
    for cam in CAMERAS:
        write_video(
            np.concatenate([episode_frames(e, cam) for e in range(len(LENGTHS))]),
            root / f"videos/{cam}/chunk-000/file-000.mp4",
            codec=codec,
        )
        episodes[f"videos/{cam}/chunk_index"] = [0] * len(LENGTHS)
        episodes[f"videos/{cam}/file_index"] = [0] * len(LENGTHS)
        episodes[f"videos/{cam}/from_timestamp"] = [float(s) / FPS for s in starts[:-1]]
        episodes[f"videos/{cam}/to_timestamp"] = [float(s) / FPS for s in starts[1:]]
    pd.DataFrame(episodes).to_parquet(root / "meta/episodes/chunk-000/file-000.parquet")
    pd.DataFrame({"task_index": range(len(TASKS))}, index=pd.Index(TASKS, name="task")).to_parquet(
        root / "meta/tasks.parquet"
    )
    return root
