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
import math
import os
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from stvla_core.episodes.episode import ACTION_DIM, Episode, EpisodeError
from stvla_core.episodes.formats.frames import decode_image, image_size
from stvla_core.episodes.formats.io import build_episode, decode_video, read_json, where
from stvla_core.episodes.formats.registry import (
    EpisodeFormat,
    LoadLimits,
    check_decoded,
    check_regular,
    check_size,
    register_format,
)

INFO = Path("meta") / "info.json"


def _read_parquet(path: Path, columns: list[str] | None = None, episode: int | None = None) -> pd.DataFrame:
    """columns: read only those of these the file has (v3.0 metadata rows carry per-episode
    statistics we do not need); episode: only rows of that episode_index (a v3.0 data file holds
    many episodes), filtered by pyarrow while reading."""
    check_regular(path, "LeRobot file")
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


def _read_jsonl(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """(where, row) for each JSON object line; `where` names the file and line for errors."""
    check_regular(path, "LeRobot file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise EpisodeError(f"LeRobot file {where(path)} cannot be read: {e}") from None
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                row = json.loads(line)
            except ValueError as e:
                raise EpisodeError(f"{where(path)} line {n} is not valid JSON: {e}") from None
            if not isinstance(row, dict):
                raise EpisodeError(
                    f"{where(path)} line {n}: expected a JSON object, found {type(row).__name__}"
                )
            rows.append((f"{where(path)} line {n}", row))
    return rows


def _require(info: dict[str, Any], key: str, path: Path) -> Any:
    if key not in info:
        raise EpisodeError(f"LeRobot {where(path)} has no {key!r} entry")
    return info[key]


def _shown(value: Any) -> str:
    """repr of a JSON value or a parquet cell, numpy scalars shown as the Python value they hold."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def _int(value: Any, what: str) -> int:
    """An integer from JSON or a parquet cell (where a column with gaps turns integers to float)."""
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, float | np.floating) and math.isfinite(value) and float(value).is_integer():
        return int(value)
    raise EpisodeError(f"{what}: expected an integer, found {_shown(value)}")


def _seconds(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise EpisodeError(f"{what}: expected a number of seconds, found {_shown(value)}")
    if not math.isfinite(value) or value < 0:
        raise EpisodeError(f"{what}: expected a finite number of seconds >= 0, found {_shown(value)}")
    return float(value)


def _strings(value: Any, what: str) -> list[str]:
    """A list of task strings (a JSON list, or the numpy array parquet gives for a list cell)."""
    if isinstance(value, list | tuple | np.ndarray) and all(isinstance(x, str) for x in value):
        return list(value)
    raise EpisodeError(f"{what}: expected a list of strings, found {value!r}")


def _path(root: Path, info: dict[str, Any], key: str, values: dict[str, Any]) -> Path:
    """Fill the path template info.json[key] with `values` (the only placeholders allowed) and
    refuse a result outside the dataset folder. The check is on the text, not on the resolved
    path: datasets in the Hugging Face cache are symlinks into a blobs folder beside the dataset,
    and a zip upload cannot hold symlinks."""
    what = f"LeRobot {where(root / INFO)} field {key!r}"
    template = _require(info, key, root / INFO)
    if not isinstance(template, str):
        raise EpisodeError(f"{what}: expected a path template string, found {type(template).__name__}")
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
        unknown = sorted(fields - set(values))
        if unknown:
            expected = ", ".join("{" + v + "}" for v in values)
            raise EpisodeError(
                f"{what}: expected placeholders among {expected}, found {{{unknown[0]}}} in {template!r}"
            )
        relative = template.format(**values)
    except (ValueError, KeyError, IndexError, TypeError) as e:  # unbalanced braces, bad format spec
        raise EpisodeError(f"{what}: {template!r} is not a usable path template ({e})") from None
    normal = os.path.normpath(relative)
    if os.path.isabs(relative) or normal == ".." or normal.startswith(".." + os.sep):
        raise EpisodeError(f"{what}: expected a path inside the dataset folder, found {relative!r}")
    return root / normal


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
    feature_info = info["features"][camera].get("info")
    k = feature_info.get("camera.intrinsics") if isinstance(feature_info, dict) else None
    if k is None:
        return None
    try:
        m = np.asarray(k, dtype=np.float32)
    except (TypeError, ValueError):
        m = None
    if m is None or m.shape != (3, 3) or not np.isfinite(m).all():
        raise EpisodeError(
            f"LeRobot {where(path / INFO)} camera {camera!r}: camera.intrinsics must be 3x3 numbers"
        )
    return m


def decode_depth_png(data: Any, what: str, size: tuple[int, int], limits: LoadLimits) -> np.ndarray:
    """PNG bytes of 16-bit depth units -> (H, W) float32 units (the caller scales to metres).
    size: (H, W) of the frames, which the PNG header must declare before its pixels are decoded."""
    if isinstance(data, dict):
        data = data.get("bytes")
    if not isinstance(data, bytes | bytearray) or not data:
        raise EpisodeError(f"{what} holds no PNG bytes")
    h, w = image_size(bytes(data), what, limits)
    if (h, w) != size:
        raise EpisodeError(f"{what}: expected a {size[1]}x{size[0]} depth PNG like the frames, found {w}x{h}")
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None or img.ndim != 2 or img.dtype != np.uint16:
        raise EpisodeError(
            f"{what}: expected a 16-bit greyscale PNG, found {'undecodable data' if img is None else f'{img.dtype} {img.shape}'}"
        )
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
    found = {_int(e.get("episode_index"), f"{w} field 'episode_index'"): (w, e) for w, e in episodes}
    if index not in found:
        raise EpisodeError(
            f"LeRobot dataset {where(root)} has no episode {index}; it has episodes {_span(sorted(found))}"
        )
    w, row = found[index]
    what = f"LeRobot {where(root / INFO)} field 'chunks_size'"
    size = _int(info.get("chunks_size", 1000), what)
    if size <= 0:
        raise EpisodeError(f"{what}: expected an integer > 0, found {size}")
    chunk = index // size
    data = _path(root, info, "data_path", {"episode_chunk": chunk, "episode_index": index})
    video = None
    if info["features"][camera].get("dtype") == "video":
        values = {"episode_chunk": chunk, "video_key": camera, "episode_index": index}
        video = _path(root, info, "video_path", values)
    tasks_file = root / "meta" / "tasks.jsonl"
    tasks = {}
    if tasks_file.is_file():
        for tw, t in _read_jsonl(tasks_file):
            name = t.get("task")
            if not isinstance(name, str):
                raise EpisodeError(f"{tw} field 'task': expected a string, found {name!r}")
            tasks[_int(t.get("task_index"), f"{tw} field 'task_index'")] = name
    return _Located(data, video, 0.0, _strings(row.get("tasks", []), f"{w} field 'tasks'"), tasks)


def _locate_v3(root: Path, info: dict[str, Any], index: int, camera: str) -> _Located:
    files = sorted((root / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
    if not files:
        raise EpisodeError(f"LeRobot v3.0 dataset {where(root)} has no meta/episodes/chunk-*/file-*.parquet")
    key = f"videos/{camera}/"
    wanted = ["episode_index", "tasks", "data/chunk_index", "data/file_index"]
    wanted += [key + k for k in ("chunk_index", "file_index", "from_timestamp")]
    episodes = pd.concat([_read_parquet(f, wanted) for f in files], ignore_index=True)
    what = f"LeRobot dataset {where(root)} episode metadata"
    if "episode_index" not in episodes:
        raise EpisodeError(f"{what} has no 'episode_index' column")
    if not pd.api.types.is_integer_dtype(episodes["episode_index"]):
        raise EpisodeError(
            f"{what} column 'episode_index': expected integers, found dtype {episodes['episode_index'].dtype}"
        )
    match = episodes[episodes["episode_index"] == index]
    if match.empty:
        raise EpisodeError(
            f"LeRobot dataset {where(root)} has no episode {index}; it has episodes "
            f"{_span(sorted(int(i) for i in episodes['episode_index']))}"
        )
    row = match.iloc[0]

    def col(key: str) -> Any:
        if key not in row:
            raise EpisodeError(f"{what} has no {key!r} column")
        return row[key]

    def cell(key: str) -> str:
        return f"{what} column {key!r} of episode {index}"

    data = _path(
        root,
        info,
        "data_path",
        {
            "chunk_index": _int(col("data/chunk_index"), cell("data/chunk_index")),
            "file_index": _int(col("data/file_index"), cell("data/file_index")),
        },
    )
    video, start = None, 0.0
    if info["features"][camera].get("dtype") == "video":
        values = {
            "video_key": camera,
            "chunk_index": _int(col(key + "chunk_index"), cell(key + "chunk_index")),
            "file_index": _int(col(key + "file_index"), cell(key + "file_index")),
        }
        video = _path(root, info, "video_path", values)
        start = _seconds(col(key + "from_timestamp"), cell(key + "from_timestamp"))
    tasks_file = root / "meta" / "tasks.parquet"
    tasks: dict[int, str] = {}
    if tasks_file.is_file():
        t = _read_parquet(tasks_file)
        if "task_index" not in t:
            raise EpisodeError(f"LeRobot file {where(tasks_file)} has no 'task_index' column")
        names = t["task"] if "task" in t else pd.Series(t.index, index=t.index)
        for i, name in zip(t["task_index"], names, strict=True):
            tasks[_int(i, f"LeRobot file {where(tasks_file)} column 'task_index'")] = str(name)
    listed = row["tasks"] if "tasks" in row and row["tasks"] is not None else []
    return _Located(data, video, start, _strings(listed, cell("tasks")), tasks)


def _span(indices: list[int]) -> str:
    if not indices:
        return "none"
    if len(set(indices)) == len(indices) == indices[-1] - indices[0] + 1:  # never builds the range
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


def _timestamps(df: pd.DataFrame, data: Path) -> np.ndarray:
    """(T,) float64 seconds from the data file's `timestamp` column."""
    what = f"LeRobot file {where(data)} column 'timestamp'"
    try:
        seconds = df["timestamp"].to_numpy(np.float64)
    except (TypeError, ValueError) as e:
        raise EpisodeError(f"{what}: expected numbers of seconds, found {e}") from None
    if not np.isfinite(seconds).all():
        raise EpisodeError(f"{what}: expected finite seconds, found NaN or inf")
    return seconds


def _frames_from_images(df: pd.DataFrame, camera: str, root: Path, limits: LoadLimits) -> np.ndarray:
    if camera not in df:
        raise EpisodeError(f"LeRobot dataset {where(root)} data has no column for image feature {camera!r}")
    out = []
    for i, cell in enumerate(df[camera]):
        data = cell.get("bytes") if isinstance(cell, dict) else None
        if not isinstance(data, bytes) or not data:
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
    version = _require(info, "codebase_version", info_path)
    if not isinstance(version, str):
        raise EpisodeError(
            f"LeRobot {where(info_path)} field 'codebase_version': expected a string, found {version!r}"
        )
    fps = _require(info, "fps", info_path)
    if isinstance(fps, bool) or not isinstance(fps, int | float) or not (math.isfinite(fps) and fps > 0):
        raise EpisodeError(f"LeRobot {where(info_path)} field 'fps': expected a number > 0, found {fps!r}")
    fps = float(fps)
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
        if f is not None:
            check_regular(f, "LeRobot file")
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
        rel = _timestamps(df, loc.data) if "timestamp" in df else np.arange(len(df)) / fps
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
        task = _int(df["task_index"].iloc[0], f"LeRobot file {where(loc.data)} column 'task_index'")
        instruction = loc.tasks.get(task, "")
    if not instruction and loc.listed_tasks:
        instruction = loc.listed_tasks[0]
    depth = None
    if depth_key is not None and depth_key[0] in df:
        key, scale = depth_key
        check_decoded(
            len(df) * frames[0].shape[0] * frames[0].shape[1] * 4,
            limits,
            f"LeRobot dataset {where(path)} depth {key!r}",
        )
        depth = np.stack(
            [
                decode_depth_png(
                    c, f"LeRobot file {where(loc.data)} column {key!r} row {i}", frames.shape[1:3], limits
                )
                for i, c in enumerate(df[key])
            ]
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


@dataclass(frozen=True)
class DatasetEpisode:
    index: int  # the dataset's episode_index
    length: int | None  # frames, where the metadata says
    tasks: tuple[str, ...]


@dataclass(frozen=True)
class LeRobotListing:
    """What a LeRobot dataset holds, from its metadata only (no data or video file is read), so
    a user can pick an episode and a camera before anything is decoded."""

    name: str  # the dataset folder's name
    codebase_version: str
    fps: float
    cameras: tuple[str, ...]
    episodes: tuple[DatasetEpisode, ...]


def _length(value: Any, what: str) -> int | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else _int(value, what)


def list_lerobot(path: str | os.PathLike[str]) -> LeRobotListing:
    """The episodes (index, length, tasks) and cameras of a LeRobot v2.x or v3.0 dataset folder.
    Raises EpisodeError naming the file and the problem."""
    root = Path(path)
    info_path = root / INFO
    info = read_json(info_path)
    if not isinstance(info, dict) or not isinstance(info.get("features"), dict):
        raise EpisodeError(f"LeRobot {where(info_path)} has no 'features' object")
    version = str(_require(info, "codebase_version", info_path))
    fps = _require(info, "fps", info_path)
    rows: list[DatasetEpisode] = []
    if version.startswith("v2"):
        for w, e in _read_jsonl(root / "meta" / "episodes.jsonl"):
            index = _int(e.get("episode_index"), f"{w} field 'episode_index'")
            length = _length(e.get("length"), f"{w} field 'length'")
            rows.append(
                DatasetEpisode(index, length, tuple(_strings(e.get("tasks", []), f"{w} field 'tasks'")))
            )
    elif version.startswith("v3"):
        files = sorted((root / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
        if not files:
            raise EpisodeError(
                f"LeRobot v3.0 dataset {where(root)} has no meta/episodes/chunk-*/file-*.parquet"
            )
        cols = ["episode_index", "length", "tasks", "dataset_from_index", "dataset_to_index"]
        meta = pd.concat([_read_parquet(f, cols) for f in files], ignore_index=True)
        if "episode_index" not in meta:
            raise EpisodeError(
                f"LeRobot dataset {where(root)} episode metadata has no 'episode_index' column"
            )
        for _, r in meta.iterrows():
            what = f"LeRobot dataset {where(root)} episode metadata"
            index = _int(r["episode_index"], f"{what} column 'episode_index'")
            if "length" in r:
                length = _length(r["length"], f"{what} column 'length' of episode {index}")
            elif "dataset_to_index" in r and "dataset_from_index" in r:
                length = _int(r["dataset_to_index"], what) - _int(r["dataset_from_index"], what)
            else:
                length = None
            listed = r["tasks"] if "tasks" in r and r["tasks"] is not None else []
            rows.append(DatasetEpisode(index, length, tuple(_strings(listed, f"{what} column 'tasks'"))))
    else:
        raise EpisodeError(
            f"LeRobot {where(info_path)} codebase_version {version!r}: expected v2.0, v2.1 or v3.0"
        )
    cams = cameras(info)
    if not cams:
        raise EpisodeError(
            f"LeRobot dataset {where(root)} has no camera (no feature of dtype video or image)"
        )
    if not rows:
        raise EpisodeError(f"LeRobot dataset {where(root)} lists no episodes")
    rows.sort(key=lambda e: e.index)
    return LeRobotListing(root.name, version, float(fps), tuple(cams), tuple(rows))


def is_lerobot(path: str | os.PathLike[str]) -> bool:
    return _detect(Path(path))


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
