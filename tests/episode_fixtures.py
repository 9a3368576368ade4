"""Tiny synthetic episode files for the format tests: videos written with PyAV, LeRobot v2.1 and
v3.0 folders written with pandas + PyAV, each episode and camera with its own distinct content."""

from __future__ import annotations

import json
from pathlib import Path

import av
import cv2
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


def episode_frames(episode: int, camera: str, lengths: tuple[int, ...] = LENGTHS) -> np.ndarray:
    """(T, H, W, 3): the camera's channel bright, the other two encoding episode and step."""
    t = lengths[episode]
    f = np.zeros((t, H, W, 3), np.uint8)
    f[..., CAMERAS[camera]] = 220
    f[..., 1] = 40 + 60 * episode  # green tells the episode apart
    other = 2 - CAMERAS[camera]
    f[..., other] = (np.arange(t) * 12)[:, None, None]  # the step, for ordering checks
    return f


def episode_actions(episode: int, lengths: tuple[int, ...] = LENGTHS) -> np.ndarray:
    t = lengths[episode]
    a = np.zeros((t, 7), np.float32)
    a[:, 0] = episode  # dx tells the episode apart
    a[:, 1] = np.arange(t) / 10
    a[:, 6] = 1.0
    return a


def task(episode: int) -> str:
    return TASKS[episode % len(TASKS)]


def episode_depth(episode: int, lengths: tuple[int, ...] = LENGTHS) -> np.ndarray:
    """(T, H, W) float32 metres: a ramp 0.5..2.0 m left to right, nearer by 0.1 m per episode."""
    ramp = np.linspace(0.5, 2.0, W, dtype=np.float32) - np.float32(0.1 * episode)
    return np.tile(ramp[None, None], (lengths[episode], H, 1))


def _depth_png(depth_m: np.ndarray) -> dict:
    """As LeRobot keeps an image in parquet: a struct of PNG bytes (16-bit millimetres) and a path."""
    ok, buf = cv2.imencode(".png", np.rint(depth_m * 1000).astype(np.uint16))
    assert ok
    return {"bytes": buf.tobytes(), "path": None}


def _features(extra_action_dim: int = 7, depth: bool = False) -> dict:
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
    if depth:
        feats[DEPTH_KEY] = {
            "dtype": "image",
            "shape": [H, W, 1],
            "names": ["height", "width", "channels"],
            "info": {"depth": True, "camera": TOP, "unit": "mm", "scale_to_metres": 0.001},
        }
    return feats


TOP = "observation.images.top"
DEPTH_KEY = "observation.depth.top"


def _rows(
    episode: int, start_index: int, lengths: tuple[int, ...] = LENGTHS, depth: bool = False
) -> pd.DataFrame:
    t = lengths[episode]
    rows = pd.DataFrame(
        {
            "action": list(episode_actions(episode, lengths)),
            "timestamp": (np.arange(t) / FPS).astype(np.float32),
            "frame_index": np.arange(t),
            "episode_index": np.full(t, episode),
            "index": start_index + np.arange(t),
            "task_index": np.full(t, episode % len(TASKS)),
        }
    )
    if depth:
        rows[DEPTH_KEY] = [_depth_png(d) for d in episode_depth(episode, lengths)]
    return rows


def make_lerobot_v21(root: Path, lengths: tuple[int, ...] = LENGTHS, depth: bool = False) -> Path:
    """Episodes of `lengths` frames; with `depth`, the top camera's depth as 16-bit PNGs."""
    (root / "meta").mkdir(parents=True)
    info = {
        "codebase_version": "v2.1",
        "robot_type": "synthetic",
        "total_episodes": len(lengths),
        "total_frames": sum(lengths),
        "total_tasks": len(TASKS),
        "total_videos": len(lengths) * len(CAMERAS),
        "total_chunks": 1,
        "chunks_size": 1000,
        "fps": FPS,
        "splits": {"train": f"0:{len(lengths)}"},
        "data_path": "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
        "video_path": "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4",
        "features": _features(depth=depth),
    }
    (root / "meta" / "info.json").write_text(json.dumps(info))
    episodes = [{"episode_index": e, "tasks": [task(e)], "length": n} for e, n in enumerate(lengths)]
    (root / "meta" / "episodes.jsonl").write_text("\n".join(map(json.dumps, episodes)) + "\n")
    tasks = [{"task_index": i, "task": t} for i, t in enumerate(TASKS)]
    (root / "meta" / "tasks.jsonl").write_text("\n".join(map(json.dumps, tasks)) + "\n")
    start = 0
    for e in range(len(lengths)):
        data = root / f"data/chunk-000/episode_{e:06d}.parquet"
        data.parent.mkdir(parents=True, exist_ok=True)
        _rows(e, start, lengths, depth).to_parquet(data)
        start += lengths[e]
        for cam in CAMERAS:
            write_video(episode_frames(e, cam, lengths), root / f"videos/chunk-000/{cam}/episode_{e:06d}.mp4")
    return root


def make_lerobot_v30(
    root: Path, codec: str = "libsvtav1", lengths: tuple[int, ...] = LENGTHS, depth: bool = False
) -> Path:
    """All episodes in one data file and one video file per camera (AV1 by default)."""
    (root / "meta" / "episodes" / "chunk-000").mkdir(parents=True)
    feats = _features(depth=depth)
    for cam in CAMERAS:
        feats[cam]["info"]["video.codec"] = "av1"
    info = {
        "codebase_version": "v3.0",
        "robot_type": "synthetic",
        "total_episodes": len(lengths),
        "total_frames": sum(lengths),
        "total_tasks": len(TASKS),
        "chunks_size": 1000,
        "data_files_size_in_mb": 100,
        "video_files_size_in_mb": 500,
        "fps": FPS,
        "splits": {"train": f"0:{len(lengths)}"},
        "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
        "video_path": "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4",
        "features": feats,
    }
    (root / "meta" / "info.json").write_text(json.dumps(info))
    starts = np.concatenate([[0], np.cumsum(lengths)])
    rows = pd.concat(
        [_rows(e, int(starts[e]), lengths, depth) for e in range(len(lengths))], ignore_index=True
    )
    (root / "data" / "chunk-000").mkdir(parents=True)
    rows.to_parquet(root / "data/chunk-000/file-000.parquet")
    episodes = {
        "episode_index": list(range(len(lengths))),
        "tasks": [[task(e)] for e in range(len(lengths))],
        "length": list(lengths),
        "data/chunk_index": [0] * len(lengths),
        "data/file_index": [0] * len(lengths),
        "dataset_from_index": [int(s) for s in starts[:-1]],
        "dataset_to_index": [int(s) for s in starts[1:]],
    }
    for cam in CAMERAS:
        write_video(
            np.concatenate([episode_frames(e, cam, lengths) for e in range(len(lengths))]),
            root / f"videos/{cam}/chunk-000/file-000.mp4",
            codec=codec,
        )
        episodes[f"videos/{cam}/chunk_index"] = [0] * len(lengths)
        episodes[f"videos/{cam}/file_index"] = [0] * len(lengths)
        episodes[f"videos/{cam}/from_timestamp"] = [float(s) / FPS for s in starts[:-1]]
        episodes[f"videos/{cam}/to_timestamp"] = [float(s) / FPS for s in starts[1:]]
    pd.DataFrame(episodes).to_parquet(root / "meta/episodes/chunk-000/file-000.parquet")
    pd.DataFrame({"task_index": range(len(TASKS))}, index=pd.Index(TASKS, name="task")).to_parquet(
        root / "meta/tasks.parquet"
    )
    return root


def zip_dataset(root: Path, archive: Path, from_inside: bool) -> Path:
    """Zip a dataset folder as people do: the folder itself (entries `name/meta/...`), or its
    contents selected from inside it (entries `meta/...`, no folder name anywhere)."""
    import zipfile

    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for f in sorted(root.rglob("*")):
            if f.is_file():
                rel = f.relative_to(root)
                z.write(f, str(rel if from_inside else Path(root.name) / rel))
    return archive
