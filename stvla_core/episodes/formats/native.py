"""The project's own episode file: a compressed numpy `.npz`, lossless.

Entries: `format` = "stvla-episode", `format_version` = 1, and one entry per Episode field:
arrays as themselves (frames, depth, segmentation, actions, intrinsics, extrinsics, gt_points,
gt_visible), everything else (instruction, fps, name, source, segmentation_names, gt_point_names,
metadata) in one JSON string entry `meta`. Written to a temporary file beside the target and
renamed into place, so a crash never leaves a half-written episode. Loaded with pickle disabled."""

from __future__ import annotations

import json
import math
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from stvla_core.episodes.episode import Episode, EpisodeError
from stvla_core.episodes.formats.io import atomic_target, build_episode, where
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
    """Checks, in order, before decompressing anything large: the `format` tag and version, then
    the array headers against the limits; then reads the arrays and validates `meta`."""
    what = where(path)
    entry = None  # the entry being read, named in the error when a read fails
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise EpisodeError(f"{what} is a single .npy array, not an episode (no format '{FORMAT}')")
        with loaded as z:
            names = set(z.files)
            entry = "format"
            if "format" not in names or str(z["format"]) != FORMAT:
                raise EpisodeError(f"{what} is an .npz file but not an episode (no format '{FORMAT}')")
            entry = "format_version"
            version = _integer(z, entry, what)
            if version > VERSION:
                raise EpisodeError(
                    f"{what} has episode format version {version}; this tool reads up to {VERSION}"
                )
            headers: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
            for entry in (k for k in ARRAYS if k in names):
                headers[entry] = _header(z, entry)
            _check_headers(headers, limits, what)
            arrays: dict[str, np.ndarray] = {}
            for entry in headers:
                arrays[entry] = z[entry]
            entry = "meta"
            meta = _meta(z, what)
    except EpisodeError:
        raise
    # NotImplementedError: zipfile's answer to an unknown compression method
    except (
        zipfile.BadZipFile,
        zlib.error,
        OSError,
        ValueError,
        KeyError,
        EOFError,
        NotImplementedError,
    ) as e:
        at = f" entry {entry!r}" if entry else ""
        raise EpisodeError(f"{what}{at} is not readable (corrupt or truncated): {e}") from None
    return build_episode(arrays.pop("frames"), {**arrays, **meta}, path)


def _integer(z: np.lib.npyio.NpzFile, name: str, what: str) -> int:
    value = z[name]
    if value.shape != () or not np.issubdtype(value.dtype, np.integer):
        raise EpisodeError(
            f"{what} entry {name!r}: expected an integer, found shape {value.shape} dtype {value.dtype}"
        )
    return int(value)


def _check_headers(
    headers: dict[str, tuple[tuple[int, ...], np.dtype]], limits: LoadLimits, what: str
) -> None:
    if "frames" not in headers:
        raise EpisodeError(f"{what} has no frames")
    shape, dtype = headers["frames"]
    if len(shape) != 4 or shape[3] != 3 or dtype != np.uint8:
        raise EpisodeError(
            f"{what} entry 'frames': expected (T, H, W, 3) uint8 RGB, found shape {shape} dtype {dtype}"
        )
    if shape[0] > limits.max_frames:
        raise EpisodeError(f"{what} holds {shape[0]} frames, over the limit of {limits.max_frames}")
    check_frame_size(shape[1], shape[2], limits, what)
    nbytes = sum(math.prod(s) * d.itemsize for s, d in headers.values())
    check_decoded(nbytes, limits, what)


def _meta(z: np.lib.npyio.NpzFile, what: str) -> dict[str, Any]:
    """Episode keyword arguments from the JSON entry `meta`; the Episode checks their types, here
    only what the JSON form adds: known keys, and segmentation ids written as strings."""
    if "meta" not in z.files:
        raise EpisodeError(f"{what} has no 'meta' entry (the episode's instruction, fps, names)")
    raw = z["meta"]
    if raw.shape != () or raw.dtype.kind != "U":
        raise EpisodeError(
            f"{what} entry 'meta': expected a JSON string, found shape {raw.shape} dtype {raw.dtype}"
        )
    try:
        meta = json.loads(str(raw))
    except ValueError as e:
        raise EpisodeError(f"{what} entry 'meta' is not valid JSON: {e}") from None
    if not isinstance(meta, dict):
        raise EpisodeError(f"{what} entry 'meta': expected a JSON object, found {type(meta).__name__}")
    unknown = sorted(set(meta) - set(META))
    if unknown:
        raise EpisodeError(
            f"{what} entry 'meta': unknown keys {', '.join(map(repr, unknown))}; expected some of {', '.join(META)}"
        )
    names = meta.get("segmentation_names", {})
    if not isinstance(names, dict):
        raise EpisodeError(
            f"{what} entry 'meta' field 'segmentation_names': expected an object of id -> name, "
            f"found {type(names).__name__}"
        )
    bad = [k for k in names if not _is_int(k)]
    if bad:
        raise EpisodeError(
            f"{what} entry 'meta' field 'segmentation_names': expected integer ids as keys, found {bad[0]!r}"
        )
    meta["segmentation_names"] = {int(k): v for k, v in names.items()}
    return meta


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


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
