"""Training packs: a LeRobot dataset with depth, turned once into what training reads.

The traced depth of every step is computed here, on the CPU, exactly as at inference (the same
TracePipeline: buffer, tracker, depth source, variant), and kept pooled to the Ego3D grid (the
(S/patch * reso)^2 sub-patch means the model's Ego3D encoding uses, 32x32 for 224/14/2): the
model reads nothing finer, so the pack is 50x smaller than full maps and fits the GPU machine's
transfer limit. RGB stays in the dataset's own H.264 videos, copied alongside and decoded with
OpenCV in worker processes when training starts.

    pack/meta.json          dataset, trace config, tasks, episodes (video, first frame, length,
                            seed, split), intrinsics, image size, grid size
    pack/samples.npz        frame-aligned arrays over all episodes: episode, frame, actions (T, 7)
    pack/depth_<mode>.npz   depth (T, g, g) uint16 in units of 0.1 mm (0 = invalid), one file per
                            mode, so a transfer can carry only the modes one run needs
    pack/videos/...         the dataset's mp4 files
    pack/frames.npy         optional: every frame decoded (`decode_frames`), for several runs
                            that share one machine

Packs of one camera and trace setup made from several datasets (e.g. clean and perturbed
demonstrations) merge into one (`merge_packs`): each keeps its videos under part<i>/ and its split.

Depth modes: "none" (zeros: the Ego3D encoder sees no depth), "raw" (the frame's own depth),
"A", "B", "C" (traced over the trace config's buffer), and "C@7" and the like: a traced variant
over another buffer length (the paper's 7 / 15 / 30 comparison). The held-out split is the last
`val_fraction` of each task's episodes."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stvla_core.episodes import EpisodeError, load_episode
from stvla_core.episodes.formats.lerobot import INFO
from stvla_core.model.ego3d import pool_depth
from stvla_core.traces import VARIANTS, TraceConfig, TracePipeline

DEPTH_UNIT_M = 1e-4  # uint16 steps of 0.1 mm: up to 6.55 m
DEPTH_MODES = ("none", "raw", *VARIANTS)
META, SAMPLES, FRAMES = "meta.json", "samples.npz", "frames.npy"


def parse_mode(mode: str) -> tuple[str, int | None]:
    """ "C" -> ("C", None): the trace config's buffer; "C@7" -> ("C", 7): a 7-frame buffer."""
    base, _, buf = mode.partition("@")
    if base not in DEPTH_MODES or (buf and (base not in VARIANTS or not buf.isdigit() or int(buf) < 2)):
        raise ValueError(
            f"depth mode {mode!r}: expected one of {', '.join(DEPTH_MODES)}, or a variant with a buffer "
            f"length of at least 2 frames such as C@7"
        )
    return base, int(buf) if buf else None


def depth_file(mode: str) -> str:
    return f"depth_{mode}.npz"


@dataclass
class PackConfig:
    dataset: str
    out: str
    trace: TraceConfig = field(default_factory=TraceConfig)
    modes: list[str] = field(default_factory=lambda: ["C"])
    val_fraction: float = 0.05
    image_size: int = 224
    patch_size: int = 14
    ego3d_reso: int = 2
    workers: int = 2

    def validate(self) -> None:
        self.trace.validate()
        if not self.modes:
            raise ValueError(f"modes: expected some of {', '.join(DEPTH_MODES)}, found none")
        for m in self.modes:
            parse_mode(m)
        if not 0 <= self.val_fraction < 1:
            raise ValueError(f"val_fraction: expected [0, 1), found {self.val_fraction}")
        if not (Path(self.dataset) / INFO).is_file():
            raise ValueError(f"dataset {self.dataset!r} is not a LeRobot dataset folder (no {INFO})")


def _episode_rows(dataset: Path) -> list[dict[str, Any]]:
    import pandas as pd

    files = sorted((dataset / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
    if not files:
        raise EpisodeError(f"{dataset} has no meta/episodes/chunk-*/file-*.parquet (LeRobot v3.0 expected)")
    df = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True).sort_values("episode_index")
    return df.to_dict("records")


def quantize_depth(depth_m: torch.Tensor) -> np.ndarray:
    return np.rint(depth_m.clamp(0, 65535 * DEPTH_UNIT_M).numpy() / DEPTH_UNIT_M).astype(np.uint16)


def _pack_episode(args: tuple[dict[str, Any], int]) -> dict[str, np.ndarray]:
    """Worker: one episode's actions and pooled depth per mode."""
    cfg, index = args
    config = PackConfig(**{**cfg, "trace": TraceConfig(**cfg["trace"])})
    ep = load_episode(config.dataset, episode_index=index)
    if ep.actions is None:
        raise EpisodeError(f"{config.dataset} episode {index} has no actions")
    buffers = {parse_mode(m)[1] or config.trace.buffer for m in config.modes if m != "none"}
    pipes = {b: TracePipeline(replace(config.trace, buffer=b)) for b in buffers}
    s, g = config.image_size, (config.image_size // config.patch_size) * config.ego3d_reso
    out = {m: np.zeros((ep.num_frames, g, g), np.uint16) for m in config.modes}
    import cv2

    for t in range(ep.num_frames):
        frames = {b: pipe.at(ep, t) for b, pipe in pipes.items()}
        for m in config.modes:
            base, buf = parse_mode(m)
            if base == "none":
                continue
            frame = frames[buf or config.trace.buffer]
            d = frame.depth if base == "raw" else frame.traced[base]
            if d.shape != (s, s):  # as the processor resizes: nearest, keeping trace values exact
                d = cv2.resize(d, (s, s), interpolation=cv2.INTER_NEAREST)
            pooled = pool_depth(
                torch.from_numpy(np.ascontiguousarray(d))[None, None], s, config.patch_size, config.ego3d_reso
            )
            out[m][t] = quantize_depth(pooled[0, 0])
    return {"actions": ep.actions.astype(np.float32), **{f"depth_{m}": v for m, v in out.items()}}


def prepare_pack(config: PackConfig, progress: Any = print) -> Path:
    """Compute the pack (see module docstring); written to a temporary folder, then renamed."""
    config.validate()
    dataset, out = Path(config.dataset), Path(config.out)
    if out.exists():
        raise FileExistsError(f"{out} exists; choose a new folder for the pack")
    info = json.loads((dataset / INFO).read_text())
    rows = _episode_rows(dataset)
    video_key = next(k for k, f in info["features"].items() if f.get("dtype") == "video")
    cfg = asdict(config)
    tmp = out.with_name(f".tmp-{out.name}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    parts: list[dict[str, np.ndarray]] = []
    ctx = mp.get_context("spawn")
    with ctx.Pool(config.workers) as pool:
        for i, part in enumerate(pool.imap(_pack_episode, [(cfg, int(r["episode_index"])) for r in rows])):
            parts.append(part)
            if (i + 1) % 20 == 0 or i + 1 == len(rows):
                progress(f"packed {i + 1}/{len(rows)} episodes")
    by_task: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        by_task.setdefault(str(list(r["tasks"])[0]), []).append(i)
    val = {
        i for ids in by_task.values() for i in ids[len(ids) - int(round(len(ids) * config.val_fraction)) :]
    }
    episodes, videos = [], set()
    for i, r in enumerate(rows):
        video = info["video_path"].format(
            video_key=video_key,
            chunk_index=int(r[f"videos/{video_key}/chunk_index"]),
            file_index=int(r[f"videos/{video_key}/file_index"]),
        )
        videos.add(video)
        episodes.append(
            {
                "episode_index": int(r["episode_index"]),
                "task": str(list(r["tasks"])[0]),
                "length": int(r["length"]),
                "video": video,
                "first_frame": int(round(float(r[f"videos/{video_key}/from_timestamp"]) * info["fps"])),
                "seed": int(r["seed"]) if "seed" in r else None,
                "split": "val" if i in val else "train",
            }
        )
    for v in sorted(videos):
        (tmp / v).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(dataset / v, tmp / v)
    arrays = {
        "episode": np.concatenate([np.full(len(p["actions"]), i, np.int32) for i, p in enumerate(parts)]),
        "frame": np.concatenate([np.arange(len(p["actions"]), dtype=np.int32) for p in parts]),
        "actions": np.concatenate([p["actions"] for p in parts]),
    }
    np.savez_compressed(tmp / SAMPLES, **arrays)
    for m in config.modes:
        np.savez_compressed(tmp / depth_file(m), depth=np.concatenate([p[f"depth_{m}"] for p in parts]))
    intr = info["features"][video_key]["info"].get("camera.intrinsics")
    meta = {
        "config": cfg,
        "dataset_info": {k: info[k] for k in ("codebase_version", "fps", "total_episodes", "total_frames")},
        "video_key": video_key,
        "intrinsics": intr,
        "frame_hw": info["features"][video_key]["shape"][:2],
        "grid": (config.image_size // config.patch_size) * config.ego3d_reso,
        "depth_unit_m": DEPTH_UNIT_M,
        "tasks": sorted(by_task),
        "episodes": episodes,
    }
    (tmp / META).write_text(json.dumps(meta, indent=1) + "\n")
    os.replace(tmp, out)
    return out


@dataclass
class Pack:
    """A loaded pack: per-frame arrays and every frame's RGB, in episode order."""

    meta: dict[str, Any]
    frames: np.ndarray  # (N, H, W, 3) uint8
    actions: np.ndarray  # (N, 7) float32
    episode: np.ndarray  # (N,) int32 index into meta["episodes"]
    frame: np.ndarray  # (N,) int32 step within the episode
    depth: dict[str, np.ndarray]  # mode -> (N, g, g) float32 metres

    def split(self, name: str) -> np.ndarray:
        """Frame indices of the "train" or "val" episodes."""
        ok = np.array([e["split"] == name for e in self.meta["episodes"]])
        return np.flatnonzero(ok[self.episode])


def _decode_video(path: str) -> np.ndarray:
    """All frames of an mp4 as (T, H, W, 3) uint8 RGB, with OpenCV (its bundled FFmpeg)."""
    import cv2

    cap = cv2.VideoCapture(path)
    frames = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    cap.release()
    if not frames:
        raise EpisodeError(f"OpenCV decoded no frames from {path}")
    return np.stack(frames)


def _decode_videos(root: Path, meta: dict[str, Any], workers: int | None) -> np.ndarray:
    """Threads, not processes: OpenCV decodes with the GIL released, and the frames (gigabytes for
    a full pack) then need no pickling back through pipes, nor each worker a fresh interpreter."""
    videos = sorted({e["video"] for e in meta["episodes"]})
    with ThreadPoolExecutor(workers or os.cpu_count() or 1) as pool:
        decoded = dict(zip(videos, pool.map(_decode_video, [str(root / v) for v in videos]), strict=True))
    return np.concatenate(
        [decoded[e["video"]][e["first_frame"] : e["first_frame"] + e["length"]] for e in meta["episodes"]]
    )


def _read_meta(root: Path) -> dict[str, Any]:
    if not (root / META).is_file():
        raise FileNotFoundError(
            f"{root} is not a training pack (no {META}); make one with `python -m stvla_core.train prepare`"
        )
    return json.loads((root / META).read_text())


def decode_frames(path: str | Path, workers: int | None = None) -> Path:
    """Decode the pack's videos once into pack/frames.npy (written whole, then renamed), so that
    several training runs on one machine map the same frames instead of each decoding them."""
    root = Path(path)
    frames = _decode_videos(root, _read_meta(root), workers)
    tmp = root / f".tmp-{os.getpid()}-{FRAMES}"
    np.save(tmp, frames)
    os.replace(tmp, root / FRAMES)
    return root / FRAMES


def load_pack(path: str | Path, modes: list[str] | None = None, workers: int | None = None) -> Pack:
    """Read a pack; its frames come from pack/frames.npy when present (`decode_frames`), else its
    videos are decoded in `workers` processes (default: the CPU count)."""
    root = Path(path)
    meta = _read_meta(root)
    data = np.load(root / SAMPLES)
    modes = modes or list(meta["config"]["modes"])
    missing = [m for m in modes if not (root / depth_file(m)).is_file()]
    if missing:
        raise ValueError(
            f"pack {root} has no depth for {missing} (no {', '.join(depth_file(m) for m in missing)}); "
            f"it was made with modes {meta['config']['modes']}"
        )
    n = len(data["actions"])
    frames = np.load(root / FRAMES, mmap_mode="r") if (root / FRAMES).is_file() else None
    if frames is None or len(frames) != n:
        frames = _decode_videos(root, meta, workers)
    if len(frames) != n:
        raise EpisodeError(f"pack {root}: videos hold {len(frames)} frames of its episodes, samples {n}")
    unit = float(meta["depth_unit_m"])
    depth = {}
    for m in modes:
        d = np.load(root / depth_file(m))["depth"]
        if d.shape[0] != n:
            raise EpisodeError(f"pack {root}: {depth_file(m)} holds {d.shape[0]} frames, samples {n}")
        depth[m] = d.astype(np.float32) * unit
    return Pack(meta, frames, data["actions"].astype(np.float32), data["episode"], data["frame"], depth)


# what packs must share to be merged: the model reads their frames and depth the same way
_SHARED_META = ("video_key", "intrinsics", "frame_hw", "grid", "depth_unit_m")


def merge_packs(paths: list[str | Path], out: str | Path, modes: list[str] | None = None) -> Path:
    """One pack holding the episodes of `paths` in order (videos under part<i>/, splits kept), with
    the depth modes they all hold (or `modes`); written to a temporary folder, then renamed."""
    roots, out = [Path(p) for p in paths], Path(out)
    if len(roots) < 2:
        raise ValueError(f"merge: expected at least two packs, found {len(roots)}")
    if out.exists():
        raise FileExistsError(f"{out} exists; choose a new folder for the merged pack")
    metas = [_read_meta(r) for r in roots]
    for key in _SHARED_META:
        for root, meta in zip(roots[1:], metas[1:], strict=True):
            if meta.get(key) != metas[0].get(key):
                raise ValueError(
                    f"merge: packs differ in {key}: {roots[0]} has {metas[0].get(key)!r}, {root} has {meta.get(key)!r}"
                )
    for root, meta in zip(roots[1:], metas[1:], strict=True):
        if meta["config"]["trace"] != metas[0]["config"]["trace"]:
            raise ValueError(f"merge: {root} was traced with other settings than {roots[0]} (config.trace)")
    held = [
        {m for m in meta["config"]["modes"] if (r / depth_file(m)).is_file()}
        for r, meta in zip(roots, metas, strict=True)
    ]
    common = sorted(set.intersection(*held))
    modes = modes or common
    missing = {str(r): sorted(set(modes) - h) for r, h in zip(roots, held, strict=True) if set(modes) - h}
    if not modes or missing:
        raise ValueError(f"merge: no depth mode held by every pack; missing {missing or 'all'}")
    tmp = out.with_name(f".tmp-{out.name}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    episodes, arrays, depth = [], {"episode": [], "frame": [], "actions": []}, {m: [] for m in modes}
    for i, (root, meta) in enumerate(zip(roots, metas, strict=True)):
        data = np.load(root / SAMPLES)
        arrays["episode"].append(data["episode"] + len(episodes))
        arrays["frame"].append(data["frame"])
        arrays["actions"].append(data["actions"])
        for m in modes:
            depth[m].append(np.load(root / depth_file(m))["depth"])
        for e in meta["episodes"]:
            episodes.append({**e, "video": f"part{i}/{e['video']}", "source": str(meta["config"]["dataset"])})
        for v in sorted({e["video"] for e in meta["episodes"]}):
            (tmp / f"part{i}" / v).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / v, tmp / f"part{i}" / v)
    np.savez_compressed(tmp / SAMPLES, **{k: np.concatenate(v) for k, v in arrays.items()})
    for m in modes:
        np.savez_compressed(tmp / depth_file(m), depth=np.concatenate(depth[m]))
    meta = {
        **{k: metas[0][k] for k in _SHARED_META},
        "config": {**metas[0]["config"], "modes": modes, "dataset": [m["config"]["dataset"] for m in metas]},
        "merged_from": [str(r) for r in roots],
        "tasks": sorted({t for m in metas for t in m["tasks"]}),
        "episodes": episodes,
    }
    (tmp / META).write_text(json.dumps(meta, indent=1) + "\n")
    os.replace(tmp, out)
    return out
