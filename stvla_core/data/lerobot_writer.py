"""Write episodes as a LeRobot v3.0 dataset that `load_episode` (and LeRobot itself) reads.

    meta/info.json                         codebase_version v3.0, fps, features, path templates
    meta/tasks.parquet                     task strings (index) -> task_index
    meta/episodes/chunk-000/file-000.parquet   one row per episode: length, tasks, file indices,
                                           video timestamps, plus seed/env_id of its demonstration
    data/chunk-000/file-NNN.parquet        one row per frame: index, episode_index, frame_index,
                                           timestamp, task_index, action (7), observation.state,
                                           observation.depth.<camera> (PNG bytes)
    videos/observation.images.<camera>/chunk-000/file-NNN.mp4   RGB, H.264 (yuv420p)

Depth is stored losslessly in the data files as an image feature (LeRobot's own way of keeping
images in parquet: a struct of PNG bytes and a path): one 16-bit greyscale PNG per frame holding
the simulator's depth in millimetres (ManiSkill renders int16 millimetres, so this is exactly what
it produced), 0 = invalid. `info.json` says so in the feature's `info` (depth, unit, scale).

Episodes are written in shards (one data file and one video file each), so several processes can
record at once; `finish` renumbers the shards' episodes into one dataset and writes the metadata.
Every file is written under a temporary name and renamed when complete."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from stvla_core.episodes import Episode

CODEBASE_VERSION = "v3.0"
DEPTH_SCALE_M = 0.001  # one PNG unit is a millimetre
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
CHUNK = 0  # a few hundred files at most: one chunk


def _atomic(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(f".tmp-{os.getpid()}-{path.name}")


def encode_depth_png(depth_m: np.ndarray) -> bytes:
    """(H, W) float32 metres -> 16-bit PNG of millimetres (rounded; 0 stays invalid)."""
    mm = np.rint(np.clip(depth_m, 0.0, 65.535) / DEPTH_SCALE_M).astype(np.uint16)
    ok, buf = cv2.imencode(".png", mm)
    if not ok:
        raise RuntimeError("OpenCV could not encode a depth PNG")
    return buf.tobytes()


def write_video(path: Path, frames: np.ndarray, fps: int, crf: int) -> None:
    """(T, H, W, 3) uint8 RGB -> H.264 mp4 (PyAV), atomically."""
    import av

    tmp = _atomic(path)
    h, w = frames.shape[1:3]
    try:
        with av.open(str(tmp), mode="w", format="mp4") as out:
            stream = out.add_stream("libx264", rate=fps, options={"crf": str(crf), "preset": "medium"})
            stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
            for f in frames:
                out.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")))
            out.mux(stream.encode())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


@dataclass
class ShardEpisode:
    length: int
    task: str
    frame_offset: int  # first frame of the episode in the shard's video
    extra: dict[str, Any] = field(default_factory=dict)


class LeRobotWriter:
    """Shard-wise writer. `write_shard(k, episodes)` may run in any process; `finish` in one."""

    def __init__(self, root: str | Path, camera: str, fps: int, size: int, crf: int = 23) -> None:
        self.root = Path(root)
        self.camera = camera
        self.video_key = f"observation.images.{camera}"
        self.depth_key = f"observation.depth.{camera}"
        self.fps, self.size, self.crf = int(fps), int(size), int(crf)
        self.staging = self.root / ".shards"

    def write_shard(
        self, shard: int, episodes: list[tuple[Episode, np.ndarray]], report: dict[str, Any] | None = None
    ) -> Path:
        """episodes: (Episode with frames, depth, actions; (T, S) float32 robot state) each.
        Writes the shard's video, its frame rows (episode_index local to the shard) and a JSON
        listing, the listing last: a shard without it is incomplete and is written again."""
        if not episodes:
            raise ValueError(f"shard {shard}: no episodes to write")
        video = self.root / VIDEO_PATH.format(video_key=self.video_key, chunk_index=CHUNK, file_index=shard)
        frames = np.concatenate([ep.frames for ep, _ in episodes])
        write_video(video, frames, self.fps, self.crf)
        rows: dict[str, list[Any]] = {k: [] for k in ("episode_index", "frame_index", "timestamp", "action")}
        rows["observation.state"], rows[self.depth_key], rows["task"] = [], [], []
        listing, offset = [], 0
        for i, (ep, state) in enumerate(episodes):
            if ep.depth is None or ep.actions is None:
                raise ValueError(f"episode {ep.name!r} has no depth or no actions")
            t = ep.num_frames
            rows["episode_index"] += [i] * t
            rows["frame_index"] += list(range(t))
            rows["timestamp"] += [j / self.fps for j in range(t)]
            rows["action"] += [a.astype(np.float32) for a in ep.actions]
            rows["observation.state"] += [s.astype(np.float32) for s in state]
            rows[self.depth_key] += [{"bytes": encode_depth_png(d), "path": None} for d in ep.depth]
            rows["task"] += [ep.instruction] * t
            meta = {k: ep.metadata[k] for k in ("env_id", "seed") if k in ep.metadata}
            if ep.intrinsics is not None:
                report = {**(report or {}), "intrinsics": ep.intrinsics.tolist()}
            listing.append({"length": t, "task": ep.instruction, "frame_offset": offset, "extra": meta})
            offset += t
        data = self.staging / f"shard-{shard:03d}.parquet"
        tmp = _atomic(data)
        pd.DataFrame(rows).to_parquet(tmp, index=False)
        os.replace(tmp, data)
        done = self.staging / f"shard-{shard:03d}.json"
        tmp = _atomic(done)
        tmp.write_text(json.dumps({"episodes": listing, "report": report or {}}) + "\n")
        os.replace(tmp, done)
        return done

    def shard_listing(self, shard: int) -> dict[str, Any]:
        return json.loads((self.staging / f"shard-{shard:03d}.json").read_text())

    def shard_done(self, shard: int) -> bool:
        return (self.staging / f"shard-{shard:03d}.json").is_file()

    def finish(self, shards: list[int], state_names: list[str], extra_info: dict[str, Any]) -> dict[str, Any]:
        """Renumber the shards' episodes (in shard order) into one dataset; returns info.json."""
        tasks: dict[str, int] = {}
        episodes: list[dict[str, Any]] = []
        index = 0
        for file_index, shard in enumerate(shards):
            listing = [ShardEpisode(**e) for e in self.shard_listing(shard)["episodes"]]
            df = pd.read_parquet(self.staging / f"shard-{shard:03d}.parquet")
            first = len(episodes)
            for e in listing:
                tasks.setdefault(e.task, len(tasks))
            df["episode_index"] = df["episode_index"] + first
            df["task_index"] = df.pop("task").map(tasks).astype(np.int64)
            df.insert(0, "index", np.arange(index, index + len(df), dtype=np.int64))
            data = self.root / DATA_PATH.format(chunk_index=CHUNK, file_index=file_index)
            tmp = _atomic(data)
            pq.write_table(pa.Table.from_pandas(df, preserve_index=False), tmp)
            os.replace(tmp, data)
            src = self.root / VIDEO_PATH.format(video_key=self.video_key, chunk_index=CHUNK, file_index=shard)
            dst = self.root / VIDEO_PATH.format(
                video_key=self.video_key, chunk_index=CHUNK, file_index=file_index
            )
            if src != dst:
                os.replace(src, dst)
            for e in listing:
                episodes.append(
                    {
                        "episode_index": len(episodes),
                        "tasks": [e.task],
                        "length": e.length,
                        "data/chunk_index": CHUNK,
                        "data/file_index": file_index,
                        "dataset_from_index": index,
                        "dataset_to_index": index + e.length,
                        f"videos/{self.video_key}/chunk_index": CHUNK,
                        f"videos/{self.video_key}/file_index": file_index,
                        f"videos/{self.video_key}/from_timestamp": e.frame_offset / self.fps,
                        f"videos/{self.video_key}/to_timestamp": (e.frame_offset + e.length) / self.fps,
                        **e.extra,
                    }
                )
                index += e.length
        meta = self.root / "meta"
        ep_file = meta / "episodes" / f"chunk-{CHUNK:03d}" / "file-000.parquet"
        tmp = _atomic(ep_file)
        pd.DataFrame(episodes).to_parquet(tmp, index=False)
        os.replace(tmp, ep_file)
        tmp = _atomic(meta / "tasks.parquet")
        pd.DataFrame(
            {"task_index": list(tasks.values())}, index=pd.Index(list(tasks), name="task")
        ).to_parquet(tmp)
        os.replace(tmp, meta / "tasks.parquet")
        intrinsics = next((self.shard_listing(s)["report"].get("intrinsics") for s in shards), None)
        info = self._info(len(episodes), index, len(tasks), state_names, extra_info, intrinsics)
        tmp = _atomic(meta / "info.json")
        tmp.write_text(json.dumps(info, indent=2) + "\n")
        os.replace(tmp, meta / "info.json")
        shutil.rmtree(self.staging, ignore_errors=True)
        return info

    def _info(
        self,
        n_ep: int,
        n_frames: int,
        n_tasks: int,
        state_names: list[str],
        extra: dict[str, Any],
        intrinsics: list[list[float]] | None,
    ) -> dict[str, Any]:
        s = self.size
        return {
            "codebase_version": CODEBASE_VERSION,
            "robot_type": "panda",
            "total_episodes": n_ep,
            "total_frames": n_frames,
            "total_tasks": n_tasks,
            "chunks_size": 1000,
            "data_files_size_in_mb": 100,
            "video_files_size_in_mb": 500,
            "fps": self.fps,
            "splits": {"train": f"0:{n_ep}"},
            "data_path": DATA_PATH,
            "video_path": VIDEO_PATH,
            "features": {
                self.video_key: {
                    "dtype": "video",
                    "shape": [s, s, 3],
                    "names": ["height", "width", "channels"],
                    "info": {
                        "video.fps": float(self.fps),
                        "video.height": s,
                        "video.width": s,
                        "video.channels": 3,
                        "video.codec": "h264",
                        "video.pix_fmt": "yuv420p",
                        "video.is_depth_map": False,
                        "has_audio": False,
                        "crf": self.crf,
                        "camera.intrinsics": intrinsics,
                        "camera.intrinsics_note": "pixels; integer coordinates are pixel centres",
                    },
                },
                self.depth_key: {
                    "dtype": "image",
                    "shape": [s, s, 1],
                    "names": ["height", "width", "channels"],
                    "info": {
                        "depth": True,
                        "camera": self.video_key,
                        "encoding": "16-bit greyscale PNG in the data files",
                        "unit": "mm",
                        "scale_to_metres": DEPTH_SCALE_M,
                        "invalid": 0,
                        "lossless": "ManiSkill renders int16 millimetres; stored unchanged",
                    },
                },
                "action": {
                    "dtype": "float32",
                    "shape": [7],
                    "names": ["dx", "dy", "dz", "droll", "dpitch", "dyaw", "gripper"],
                },
                "observation.state": {"dtype": "float32", "shape": [len(state_names)], "names": state_names},
                "timestamp": {"dtype": "float32", "shape": [1], "names": None},
                "frame_index": {"dtype": "int64", "shape": [1], "names": None},
                "episode_index": {"dtype": "int64", "shape": [1], "names": None},
                "index": {"dtype": "int64", "shape": [1], "names": None},
                "task_index": {"dtype": "int64", "shape": [1], "names": None},
            },
            **extra,
        }
