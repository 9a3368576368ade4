"""A plain video (mp4, webm, mkv, mov, gif) decoded with PyAV, plus an optional sidecar JSON with
the same stem (`clip.mp4` + `clip.json`) holding what a video cannot: instruction, actions (T, 7),
fps, intrinsics (3, 3), name, source, metadata. Saving writes H.264 mp4 and the sidecar;
the sidecar keeps the true width/height so odd sizes padded for H.264 are cropped back on load."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from stvla_core.episodes.episode import Episode, EpisodeError
from stvla_core.episodes.formats.io import (
    atomic_target,
    build_episode,
    decode_video,
    encode_video,
    episode_sidecar,
    read_json,
    sidecar_fields,
    sidecar_path,
    where,
)
from stvla_core.episodes.formats.registry import (
    EpisodeFormat,
    LoadLimits,
    check_regular,
    register_format,
    register_save_suffixes,
)

VIDEO_SUFFIXES = (".mp4", ".webm", ".mkv", ".mov", ".avi", ".gif")
DEFAULT_FPS = 10.0


def load_video_episode(path: Path, limits: LoadLimits, sidecar: str | Path | None = None) -> Episode:
    """sidecar: a JSON file to use instead of the one beside the video."""
    side = Path(sidecar) if sidecar is not None else sidecar_path(path)
    if sidecar is not None:
        check_regular(side, "sidecar")
    data: dict[str, Any] = read_json(side) if side.is_file() else {}
    fields = sidecar_fields(data, side)
    frames, _, fps = decode_video(path, limits)
    h, w = data.get("height"), data.get("width")
    if isinstance(h, int) and isinstance(w, int) and 0 < h <= frames.shape[1] and 0 < w <= frames.shape[2]:
        frames = frames[:, :h, :w]
    fields.setdefault("fps", fps or DEFAULT_FPS)
    fields.setdefault("name", path.stem)
    fields.setdefault("source", str(path))
    return build_episode(frames, fields, side if side.is_file() else path)


def save_video_episode(episode: Episode, path: Path) -> None:
    """Frames go to the (lossy) video; everything the sidecar can hold goes to `<stem>.json`.
    Depth, segmentation, extrinsics and ground-truth points are not kept: use .npz for those.
    Both files are written in full to temporaries before either is renamed into place, so a
    failed save leaves the old pair (or nothing) and never a new video beside an old sidecar."""
    if path.suffix.lower() != ".mp4":
        raise EpisodeError(f"cannot write video {where(path)}: expected a .mp4 path")
    with atomic_target(path) as tmp_video, atomic_target(sidecar_path(path)) as tmp_json:
        encode_video(episode.frames, tmp_video, episode.fps)
        size = {"width": episode.size[1], "height": episode.size[0]}
        tmp_json.write_text(json.dumps({**episode_sidecar(episode), **size}, indent=1))


def _detect(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES


register_format(
    EpisodeFormat(
        "video",
        _detect,
        load_video_episode,
        save_video_episode,
        "a video (" + ", ".join(VIDEO_SUFFIXES) + ") with an optional <stem>.json sidecar",
    )
)
register_save_suffixes("video", ".mp4")
