"""The project's own episode file: a compressed numpy `.npz`, lossless.

Entries: `format` = "stvla-episode", `format_version` = 1, and one entry per Episode field:
arrays as themselves (frames, depth, segmentation, actions, intrinsics, extrinsics, gt_points,
gt_visible), everything else (instruction, fps, name, source, segmentation_names, gt_point_names,
metadata) in one JSON string entry `meta`. Written to a temporary file beside the target and
renamed into place, so a crash never leaves a half-written episode. Loaded with pickle disabled."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from stvla_core.episodes.episode import Episode, EpisodeError
from stvla_core.episodes.formats.io import atomic_target, build_episode
from stvla_core.episodes.formats.registry import (
    EpisodeFormat,
    LoadLimits,
    check_decoded,
    check_frame_size,
    register_format,
    register_save_suffixes,
)

FORMAT = "stvla-episode"
VERSION = 1
META = ("instruction", "fps", "name", "source", "segmentation_names", "gt_point_names", "metadata")
ARRAYS = ("frames", "depth", "segmentation", "actions", "intrinsics", "extrinsics", "gt_points", "gt_visible")


def save_npz(episode: Episode, path: Path) -> None:
    arrays = {k: getattr(episode, k) for k in ARRAYS if getattr(episode, k) is not None}
    meta = {
        "instruction": episode.instruction,
        "fps": episode.fps,
        "name": episode.name,
        "source": episode.source,
        "segmentation_names": {str(k): v for k, v in episode.segmentation_names.items()},
        "gt_point_names": episode.gt_point_names,
        "metadata": episode.metadata,
    }
    with atomic_target(path) as tmp:
        np.savez_compressed(
            tmp,
            format=np.array(FORMAT),
            format_version=np.array(VERSION),
            meta=np.array(json.dumps(meta)),
            **arrays,
        )


def load_npz(path: Path, limits: LoadLimits) -> Episode:
    try:
        with np.load(path, allow_pickle=False) as z:
            names = set(z.files)
            if "format" not in names or str(z["format"]) != FORMAT:
                raise EpisodeError(f"{str(path)!r} is an .npz file but not an episode (no format '{FORMAT}')")
            version = int(z["format_version"])
            if version > VERSION:
                raise EpisodeError(
                    f"{str(path)!r} has episode format version {version}; this tool reads up to {VERSION}"
                )
            headers = {k: _header(z, k) for k in ARRAYS if k in names}
            if "frames" in headers and headers["frames"][0][:1] > (limits.max_frames,):
                raise EpisodeError(
                    f"{str(path)!r} holds {headers['frames'][0][0]} frames, over the limit of {limits.max_frames}"
                )
            if "frames" in headers and len(headers["frames"][0]) == 4:
                check_frame_size(*headers["frames"][0][1:3], limits, repr(str(path)))
            nbytes = sum(int(np.prod(shape)) * dtype.itemsize for shape, dtype in headers.values())
            check_decoded(nbytes, limits, repr(str(path)))
            arrays = {k: z[k] for k in ARRAYS if k in names}
            meta = json.loads(str(z["meta"]))
    except EpisodeError:
        raise
    except (zipfile.BadZipFile, OSError, ValueError, KeyError, EOFError) as e:
        raise EpisodeError(
            f"{str(path)!r} is not a readable episode file (corrupt or truncated): {e}"
        ) from None
    if "frames" not in arrays:
        raise EpisodeError(f"{str(path)!r} has no frames")
    if not isinstance(meta, dict) or not set(meta) <= set(META):
        raise EpisodeError(f"{str(path)!r} entry 'meta': expected a JSON object with keys {', '.join(META)}")
    meta["segmentation_names"] = {int(k): v for k, v in meta.get("segmentation_names", {}).items()}
    return build_episode(arrays.pop("frames"), {**arrays, **meta}, path)


def _header(z: np.lib.npyio.NpzFile, name: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of an entry read from its .npy header, without decompressing the array,
    so the limits are checked before memory is spent."""
    with z.zip.open(f"{name}.npy") as f:
        version = np.lib.format.read_magic(f)
        read = (
            np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        )
        shape, _, dtype = read(f)
    return shape, dtype


def _detect(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() == ".npz"


register_format(EpisodeFormat("npz", _detect, load_npz, save_npz, "the project's own .npz episode file"))
register_save_suffixes("npz", ".npz")
