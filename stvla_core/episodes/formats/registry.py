"""One registry of episode formats; `load_episode` picks the format from the path (suffix, file
name, folder contents) unless one is named, and checks size limits before decoding anything."""

from __future__ import annotations

import inspect
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stvla_core.episodes.episode import Episode, EpisodeError
from stvla_core.registry import Registry


@dataclass(frozen=True)
class LoadLimits:
    """Refuse inputs larger than this before decoding them (an upload can be anything).

    max_bytes: bytes of the files read; max_frames: frames of the episode; max_decoded_bytes:
    bytes of the decoded arrays (frames are (T, H, W, 3) uint8, so a short 4K video that passes
    the other two limits can still need tens of GiB); max_side: pixels of a frame's height and of
    its width (every step of the trace pipeline works on whole frames, so two 10000x10000 frames
    cost minutes per step although they fit the byte limits). Larger frames are refused, not
    downscaled: a resize would have to rescale intrinsics, ground-truth points and segmentation
    too, and the user would be judging a policy on pictures it never saw."""

    max_bytes: int = 2 * 1024**3
    max_frames: int = 10_000
    max_decoded_bytes: int = 4 * 1024**3
    max_side: int = 4096


@dataclass(frozen=True)
class EpisodeFormat:
    """name: registry key; detect(path) -> bool; load(path, limits, **options) -> Episode;
    save(episode, path) or None when the format is read-only."""

    name: str
    detect: Callable[[Path], bool]
    load: Callable[..., Episode]
    save: Callable[[Episode, Path], None] | None = None
    description: str = ""


EPISODE_FORMATS: Registry[EpisodeFormat] = Registry("episode format")
_ORDER: list[str] = []  # detection order: specific formats before generic ones


def register_format(fmt: EpisodeFormat) -> EpisodeFormat:
    EPISODE_FORMATS.register(fmt.name)(lambda: fmt)
    _ORDER.append(fmt.name)
    return fmt


def _get(name: str) -> EpisodeFormat:
    if name not in EPISODE_FORMATS:
        raise EpisodeError(f"unknown episode format {name!r}; expected one of {', '.join(_ORDER)}")
    return EPISODE_FORMATS.create(name)


_KINDS = {
    stat.S_IFDIR: "a folder",
    stat.S_IFIFO: "a named pipe",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
}


def check_regular(path: Path, what: str, folder_ok: bool = False) -> None:
    """Refuse `path` unless it is a regular file (or, with folder_ok, a folder), from its stat
    and before anything opens it: reading a named pipe blocks forever, a device never ends."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise EpisodeError(f"{what} {str(path)!r} does not exist") from None
    except OSError as e:
        raise EpisodeError(f"{what} {str(path)!r} cannot be read: {e.strerror or e}") from None
    if stat.S_ISREG(mode) or (folder_ok and stat.S_ISDIR(mode)):
        return
    found = _KINDS.get(stat.S_IFMT(mode), "not a regular file")
    expected = "a regular file or a folder" if folder_ok else "a regular file"
    raise EpisodeError(f"{what} {str(path)!r}: expected {expected}, found {found}")


def check_frame_size(height: int, width: int, limits: LoadLimits, what: str) -> None:
    """Refuse frames larger than `limits.max_side` per side, from the size a file's header
    declares, before any pixel is decoded."""
    if height > limits.max_side or width > limits.max_side:
        raise EpisodeError(
            f"{what} has {width}x{height} frames, over the limit of {limits.max_side} px per side"
        )


def check_size(files: list[Path], limits: LoadLimits, what: Path) -> None:
    """Refuse `what` when the files it would read are empty or together over the byte limit.
    Folder formats call this with the files they read: a LeRobot dataset may be far larger than
    the one episode asked for."""
    size = sum(f.stat().st_size for f in files if f.is_file())
    if size == 0:
        raise EpisodeError(f"{str(what)!r} is empty")
    if size > limits.max_bytes:
        raise EpisodeError(f"{str(what)!r} is {size} bytes, over the limit of {limits.max_bytes} bytes")


def check_decoded(nbytes: int, limits: LoadLimits, what: str) -> None:
    """Refuse `what` once its decoded arrays would take more than the limit; loaders call this
    before (or while) decoding, so memory never grows past the limit."""
    if nbytes > limits.max_decoded_bytes:
        raise EpisodeError(
            f"{what} decodes to {nbytes} bytes or more, over the limit of {limits.max_decoded_bytes} "
            "decoded bytes"
        )


def detect_format(path: str | os.PathLike[str]) -> str:
    p = Path(path)
    check_regular(p, "episode file", folder_ok=True)
    for name in _ORDER:
        if EPISODE_FORMATS.create(name).detect(p):
            return name
    raise EpisodeError(
        f"{str(p)!r} is not an episode format this tool reads; expected one of: "
        + "; ".join(f"{n} ({EPISODE_FORMATS.create(n).description})" for n in _ORDER)
    )


def load_episode(
    path: str | os.PathLike[str], format: str | None = None, limits: LoadLimits | None = None, **options: Any
) -> Episode:
    """Load one validated Episode, or raise EpisodeError naming the file and the problem.

    format: a registry name ("npz", "simplerenv", "video", "lerobot", "frames") instead of
    detection. options go to the format: video `sidecar=` (a JSON path); lerobot
    `episode_index=` (default 0) and `camera=` (a feature key, default the first camera)."""
    p = Path(path)
    limits = limits or LoadLimits()
    check_regular(p, "episode file", folder_ok=True)
    name = format or detect_format(p)
    fmt = _get(name)
    if p.is_file():
        check_size([p], limits, p)
    try:
        inspect.signature(fmt.load).bind(p, limits, **options)
    except TypeError:
        accepted = [n for n in inspect.signature(fmt.load).parameters if n not in ("path", "limits")]
        raise EpisodeError(
            f"episode format {name!r} takes options {accepted or 'none'}, not {sorted(options)} ({str(p)!r})"
        ) from None
    episode = fmt.load(p, limits, **options)
    if episode.num_frames > limits.max_frames:
        raise EpisodeError(
            f"{str(p)!r} holds {episode.num_frames} frames, over the limit of {limits.max_frames}"
        )
    return episode


def save_episode(episode: Episode, path: str | os.PathLike[str], format: str | None = None) -> Path:
    """Write an episode; the format comes from the suffix unless named. Atomic: a crash never
    leaves a half-written file under `path`."""
    p = Path(path)
    name = format or next((n for n in _ORDER if EPISODE_FORMATS.create(n).save and _suffix_ok(n, p)), None)
    if name is None:
        raise EpisodeError(f"no episode format writes {p.suffix!r} files ({str(p)!r})")
    fmt = _get(name)
    if fmt.save is None:
        raise EpisodeError(f"episode format {name!r} is read-only")
    p.parent.mkdir(parents=True, exist_ok=True)
    fmt.save(episode, p)
    return p


_SAVE_SUFFIXES: dict[str, tuple[str, ...]] = {}


def _suffix_ok(name: str, p: Path) -> bool:
    return p.suffix.lower() in _SAVE_SUFFIXES.get(name, ())


def register_save_suffixes(name: str, *suffixes: str) -> None:
    _SAVE_SUFFIXES[name] = suffixes
