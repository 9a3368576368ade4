"""A LeRobot dataset folder (codebase versions v2.0/v2.1 and v3.0), one episode and one camera.

Both layouts have `meta/info.json` with `codebase_version`, `fps`, `chunks_size`, `features`
(camera keys are the features of dtype "video" or "image") and the path templates `data_path`
and `video_path`.
- v2.x, one episode per file: `data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet`,
  `videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4`, episodes in
  `meta/episodes.jsonl` ({"episode_index", "tasks", "length"}), tasks in `meta/tasks.jsonl`
  ({"task_index", "task"}); episode_chunk = episode_index // chunks_size.
- v3.0, many episodes per file: `data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet`,
  `videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4`; one row per episode in
  `meta/episodes/chunk-*/file-*.parquet` with `data/chunk_index`, `data/file_index`,
  `dataset_from_index`, `dataset_to_index`, and per camera `videos/{key}/chunk_index`,
  `videos/{key}/file_index`, `videos/{key}/from_timestamp`, `videos/{key}/to_timestamp`;
  tasks in `meta/tasks.parquet` (task strings as the index, column `task_index`).
Each data row is matched to the video frame nearest its `timestamp` (plus the episode's
from_timestamp in v3.0), within half a frame. Actions come from the `action` column when it has 7
values per row; the instruction is the row's task. Depth, where the dataset has it, is an image
feature whose `info` says `"depth": true` and names its `"camera"`: one 16-bit greyscale PNG per
row, times `info.scale_to_metres` (0 = invalid), as `python -m stvla_core.data generate` writes.
Read-only."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from stvla_core.episodes.episode import ACTION_DIM, Episode, EpisodeError
from stvla_core.episodes.formats.frames import decode_image
from stvla_core.episodes.formats.io import build_episode, decode_video, read_json, where
from stvla_core.episodes.formats.registry import (
    EpisodeFormat,
    LoadLimits,
    check_decoded,
    check_size,
    register_format,
)

INFO = Path("meta") / "info.json"


def _read_parquet(path: Path, columns: list[str] | None = None, episode: int | None = None) -> pd.DataFrame:
    """columns: read only those of these the file has (v3.0 metadata rows carry per-episode
    statistics we do not need); episode: only rows of that episode_index (a v3.0 data file holds
    many episodes), filtered by pyarrow while reading."""
    if not path.is_file():
        raise EpisodeError(f"LeRobot file {where(path)} does not exist")
    try:
        names = pq.read_schema(path).names
        keep = None if columns is None else [c for c in columns if c in names]
        filters = (
            [("episode_index", "==", episode)] if episode is not None and "episode_index" in names else None
        )
        return pd.read_parquet(path, columns=keep, filters=filters)
    except (OSError, ValueError, pa.ArrowException) as e:
        raise EpisodeError(
            f"{where(path)} is not a readable parquet file (corrupt or truncated?): {e}"
        ) from None


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise EpisodeError(f"LeRobot file {where(path)} does not exist")
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except ValueError as e:
                raise EpisodeError(f"{where(path)} line {n} is not valid JSON: {e}") from None
    return rows


def _require(info: dict[str, Any], key: str, path: Path) -> Any:
    if key not in info:
        raise EpisodeError(f"LeRobot {where(path)} has no {key!r} entry")
    return info[key]


def _is_depth(feature: dict[str, Any]) -> bool:
    return isinstance(feature.get("info"), dict) and feature["info"].get("depth") is True


def cameras(info: dict[str, Any]) -> list[str]:
    """Camera keys in the order info.json lists them (depth features are not cameras)."""
    return [
        k
        for k, f in info.get("features", {}).items()
        if isinstance(f, dict) and f.get("dtype") in ("video", "image") and not _is_depth(f)
    ]


def depth_feature(info: dict[str, Any], camera: str, path: Path) -> tuple[str, float] | None:
    """(feature key, metres per PNG unit) of the camera's depth, or None when it has none."""
    for key, f in info.get("features", {}).items():
        if isinstance(f, dict) and _is_depth(f) and f["info"].get("camera") == camera:
            scale = f["info"].get("scale_to_metres")
            if isinstance(scale, bool) or not isinstance(scale, int | float) or not 0 < scale < 1e3:
                raise EpisodeError(
                    f"LeRobot {where(path / INFO)} feature {key!r}: scale_to_metres must be a positive "
                    f"number, found {scale!r}"
                )
            return key, float(scale)
    return None


def _intrinsics(info: dict[str, Any], camera: str, path: Path) -> np.ndarray | None:
    """The camera feature's `info["camera.intrinsics"]` (3x3 pixels, pixel centres at integer
    coordinates), where the dataset records it."""
    k = (info["features"][camera].get("info") or {}).get("camera.intrinsics")
    if k is None:
        return None
    try:
        m = np.asarray(k, dtype=np.float32)
    except (TypeError, ValueError):
        m = None
    if m is None or m.shape != (3, 3) or not np.isfinite(m).all():
        raise EpisodeError(f"LeRobot {where(path / INFO)} camera {camera!r}: camera.intrinsics must be 3x3 numbers")
    return m


def decode_depth_png(data: Any, what: str) -> np.ndarray:
    """PNG bytes of 16-bit depth units -> (H, W) float32 units (the caller scales to metres)."""
    if isinstance(data, dict):
        data = data.get("bytes")
    if not isinstance(data, bytes | bytearray) or not data:
        raise EpisodeError(f"{what} holds no PNG bytes")
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None or img.ndim != 2 or img.dtype != np.uint16:
        raise EpisodeError(f"{what}: expected a 16-bit greyscale PNG, found {'undecodable data' if img is None else f'{img.dtype} {img.shape}'}")
    return img.astype(np.float32)


@dataclass
class _Located:
    """Where one episode lives: its data file, its camera's video (None for image features) and
    the episode's start time in that video, the tasks its metadata lists, task_index -> task."""

    data: Path
    video: Path | None
    start_s: float
    listed_tasks: list[str]
    tasks: dict[int, str]


def _locate_v2(root: Path, info: dict[str, Any], index: int, camera: str) -> _Located:
    episodes = _read_jsonl(root / "meta" / "episodes.jsonl")
    row = next((e for e in episodes if e.get("episode_index") == index), None)
    if row is None:
        found = sorted(e.get("episode_index") for e in episodes)
        raise EpisodeError(
            f"LeRobot dataset {where(root)} has no episode {index}; it has episodes {_span(found)}"
        )
    chunk = index // int(info.get("chunks_size", 1000))
    data = root / _require(info, "data_path", root / INFO).format(episode_chunk=chunk, episode_index=index)
    video = None
    if info["features"][camera].get("dtype") == "video":
        template = _require(info, "video_path", root / INFO)
        video = root / template.format(episode_chunk=chunk, video_key=camera, episode_index=index)
    tasks_file = root / "meta" / "tasks.jsonl"
    tasks = (
        {int(t["task_index"]): str(t["task"]) for t in _read_jsonl(tasks_file)}
        if tasks_file.is_file()
        else {}
    )
    return _Located(data, video, 0.0, [str(t) for t in row.get("tasks", [])], tasks)


def _locate_v3(root: Path, info: dict[str, Any], index: int, camera: str) -> _Located:
    files = sorted((root / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
    if not files:
        raise EpisodeError(f"LeRobot v3.0 dataset {where(root)} has no meta/episodes/chunk-*/file-*.parquet")
    key = f"videos/{camera}/"
    wanted = ["episode_index", "tasks", "data/chunk_index", "data/file_index"]
    wanted += [key + k for k in ("chunk_index", "file_index", "from_timestamp")]
    episodes = pd.concat([_read_parquet(f, wanted) for f in files], ignore_index=True)
    if "episode_index" not in episodes:
        raise EpisodeError(f"LeRobot dataset {where(root)} episode metadata has no 'episode_index' column")
    match = episodes[episodes["episode_index"] == index]
    if match.empty:
        raise EpisodeError(
            f"LeRobot dataset {where(root)} has no episode {index}; it has episodes "
            f"{_span(sorted(int(i) for i in episodes['episode_index']))}"
        )
    row = match.iloc[0]

    def col(key: str) -> Any:
        if key not in row:
            raise EpisodeError(f"LeRobot dataset {where(root)} episode metadata has no {key!r} column")
        return row[key]

    data = root / _require(info, "data_path", root / INFO).format(
        chunk_index=int(col("data/chunk_index")), file_index=int(col("data/file_index"))
    )
    video, start = None, 0.0
    if info["features"][camera].get("dtype") == "video":
        video = root / _require(info, "video_path", root / INFO).format(
            video_key=camera,
            chunk_index=int(col(key + "chunk_index")),
            file_index=int(col(key + "file_index")),
        )
        start = float(col(key + "from_timestamp"))
    tasks_file = root / "meta" / "tasks.parquet"
    tasks: dict[int, str] = {}
    if tasks_file.is_file():
        t = _read_parquet(tasks_file)
        names = t["task"] if "task" in t else pd.Series(t.index, index=t.index)
        tasks = dict(zip(t["task_index"].astype(int), names.astype(str), strict=True))
    listed = row["tasks"] if "tasks" in row and row["tasks"] is not None else []
    return _Located(data, video, start, [str(x) for x in listed], tasks)


def _span(indices: list[int]) -> str:
    if not indices:
        return "none"
    if indices == list(range(indices[0], indices[-1] + 1)):
        return f"{indices[0]}..{indices[-1]}"
    return ", ".join(map(str, indices))


def _frames_from_video(video: Path, times: np.ndarray, fps: float, limits: LoadLimits) -> np.ndarray:
    slack = 0.5 / fps
    frames, ftimes, _ = decode_video(
        video, limits, start_s=float(times[0]), end_s=float(times[-1]) + 2 * slack
    )
    nearest = (
        np.clip(np.searchsorted(ftimes, times), 1, len(ftimes) - 1)
        if len(ftimes) > 1
        else np.zeros(len(times), int)
    )
    if len(ftimes) > 1:
        left = nearest - 1
        nearest = np.where(np.abs(ftimes[left] - times) <= np.abs(ftimes[nearest] - times), left, nearest)
    gap = np.abs(ftimes[nearest] - times)
    if (gap > slack).any():
        i = int(np.argmax(gap))
        raise EpisodeError(
            f"video {where(video)} has no frame within {slack:.3f} s of t={times[i]:.3f} s "
            f"(row {i} of the episode; nearest frame at {ftimes[nearest[i]]:.3f} s)"
        )
    return frames[nearest]


def _frames_from_images(df: pd.DataFrame, camera: str, root: Path, limits: LoadLimits) -> np.ndarray:
    out = []
    for i, cell in enumerate(df[camera]):
        data = cell.get("bytes") if isinstance(cell, dict) else None
        if not data:
            raise EpisodeError(f"LeRobot dataset {where(root)} image {camera!r} row {i} holds no image bytes")
        out.append(decode_image(data, f"LeRobot dataset {where(root)} image {camera!r} row {i}", limits))
        check_decoded(len(df) * out[0].nbytes, limits, f"LeRobot dataset {where(root)} images {camera!r}")
    if len({f.shape for f in out}) > 1:
        raise EpisodeError(f"LeRobot dataset {where(root)} images {camera!r} have mixed sizes")
    return np.stack(out)


def load_lerobot_episode(
    path: Path, limits: LoadLimits, episode_index: int = 0, camera: str | None = None
) -> Episode:
    """episode_index: the dataset's `episode_index`; camera: a feature key such as
    "observation.images.top" (default: the first camera info.json lists)."""
    if isinstance(episode_index, bool) or not isinstance(episode_index, int | np.integer):
        raise EpisodeError(f"LeRobot episode_index: expected an integer, found {episode_index!r}")
    episode_index = int(episode_index)
    info_path = path / INFO
    info = read_json(info_path)
    if not isinstance(info, dict) or not isinstance(info.get("features"), dict):
        raise EpisodeError(f"LeRobot {where(info_path)} has no 'features' object")
    version = str(_require(info, "codebase_version", info_path))
    fps = float(_require(info, "fps", info_path))
    cams = cameras(info)
    if not cams:
        raise EpisodeError(
            f"LeRobot dataset {where(path)} has no camera (no feature of dtype video or image)"
        )
    camera = camera or cams[0]
    if camera not in cams:
        raise EpisodeError(
            f"LeRobot dataset {where(path)} has no camera {camera!r}; expected one of {', '.join(cams)}"
        )
    if version.startswith("v2"):
        loc = _locate_v2(path, info, episode_index, camera)
    elif version.startswith("v3"):
        loc = _locate_v3(path, info, episode_index, camera)
    else:
        raise EpisodeError(
            f"LeRobot {where(info_path)} codebase_version {version!r}: expected v2.0, v2.1 or v3.0"
        )
    for f in (loc.data, loc.video):
        if f is not None and not f.is_file():
            raise EpisodeError(f"LeRobot file {where(f)} does not exist")
    check_size([f for f in (loc.data, loc.video) if f is not None], limits, path)
    depth_key = depth_feature(info, camera, path)
    columns = ["episode_index", "frame_index", "timestamp", "task_index", "action", camera]
    if depth_key is not None:
        columns.append(depth_key[0])
    df = _read_parquet(loc.data, columns, episode=episode_index)
    if df.empty:
        raise EpisodeError(f"LeRobot dataset {where(path)} episode {episode_index} has no data rows")
    if len(df) > limits.max_frames:
        raise EpisodeError(
            f"LeRobot dataset {where(path)} episode {episode_index} has {len(df)} frames, over the limit of {limits.max_frames}"
        )
    if "frame_index" in df:
        df = df.sort_values("frame_index")
    if loc.video is not None:
        rel = df["timestamp"].to_numpy(np.float64) if "timestamp" in df else np.arange(len(df)) / fps
        frames = _frames_from_video(loc.video, loc.start_s + rel, fps, limits)
    else:
        frames = _frames_from_images(df, camera, path, limits)

    metadata: dict[str, Any] = {
        "lerobot": {
            "codebase_version": version,
            "episode_index": episode_index,
            "camera": camera,
            "cameras": cams,
            "robot_type": info.get("robot_type"),
        }
    }
    actions = None
    if "action" in df:
        try:
            a = np.stack([np.asarray(v, dtype=np.float32).reshape(-1) for v in df["action"]])
        except (TypeError, ValueError) as e:
            raise EpisodeError(
                f"LeRobot file {where(loc.data)} column 'action' is not numeric rows of one size: {e}"
            ) from None
        if a.shape[1] == ACTION_DIM:
            actions = a
        else:
            metadata["lerobot"]["action_dim"] = int(a.shape[1])
    instruction = ""
    if "task_index" in df and loc.tasks:
        instruction = loc.tasks.get(int(df["task_index"].iloc[0]), "")
    if not instruction and loc.listed_tasks:
        instruction = loc.listed_tasks[0]
    depth = None
    if depth_key is not None and depth_key[0] in df:
        key, scale = depth_key
        check_decoded(len(df) * frames[0].shape[0] * frames[0].shape[1] * 4, limits, f"LeRobot dataset {where(path)} depth {key!r}")
        depth = np.stack(
            [decode_depth_png(c, f"LeRobot file {where(loc.data)} column {key!r} row {i}") for i, c in enumerate(df[key])]
        ) * np.float32(scale)
    fields = {
        "instruction": instruction,
        "fps": fps,
        "actions": actions,
        "depth": depth,
        "intrinsics": _intrinsics(info, camera, path),
        "name": f"{path.name}_episode_{episode_index}",
        "source": str(path),
        "metadata": metadata,
    }
    return build_episode(frames, fields, path)


def _detect(p: Path) -> bool:
    return p.is_dir() and (p / INFO).is_file()


register_format(
    EpisodeFormat(
        "lerobot",
        _detect,
        load_lerobot_episode,
        None,
        "a LeRobot dataset folder (meta/info.json, v2.x or v3.0)",
    )
)
