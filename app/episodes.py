"""The episodes the app can show: the bundled samples (every *.npz in the episodes folder, loaded
on first use, shared by everyone) and uploads (any format `load_episode` reads; the folder formats,
a LeRobot dataset or a folder of frames, arrive as a .zip) or local paths typed in. Each is loaded
once and kept as one object, so the trace pipeline's per-frame caches stay valid for it.

A LeRobot dataset is kept as a dataset: its metadata lists the episodes (index, length, tasks) and
cameras, and an episode is decoded only when picked (the newest few stay loaded). Its id in the
episode list names the episode and camera picked (`dataset_episode_id`). The size limits apply to
what one episode reads and decodes, not to the whole dataset.

Uploads belong to the browser session that made them: only that session lists, renders or exports
them, each session keeps its own newest `keep_uploads`, and a session's uploads are forgotten when
it ends (the page is closed: app/layout.py calls `end_session`) or has been idle for
`session_ttl_s` (sessions that never say goodbye, e.g. scripts)."""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path

from stvla_core.episodes import Episode, EpisodeError, LoadLimits, load_episode
from stvla_core.episodes.formats.lerobot import LeRobotListing, is_lerobot, list_lerobot

BUNDLED = "bundled:"
UPLOAD = "upload:"
SEP = "|"  # dataset id | episode index | camera
LOADED_PER_DATASET = 2  # decoded episodes kept per dataset


@dataclass
class Dataset:
    """An opened LeRobot dataset: its folder, what it lists, the episode and camera picked, and
    the episodes decoded so far (newest last). `owned`: a folder unpacked for it, deleted with it."""

    root: Path
    listing: LeRobotListing
    index: int
    camera: str
    owned: Path | None = None
    loaded: OrderedDict[tuple[int, str], Episode] = field(default_factory=OrderedDict)

    def describe(self) -> str:
        eps = self.listing.episodes
        lengths = [e.length for e in eps if e.length is not None]
        tasks = sorted({t for e in eps for t in e.tasks})
        span = f", {min(lengths)}–{max(lengths)} frames each" if lengths else ""
        return (
            f"LeRobot {self.listing.codebase_version} dataset **{self.listing.name}**: {len(eps)} episodes"
            f"{span}; cameras: {', '.join(self.listing.cameras)}; tasks: {'; '.join(tasks) or '(none listed)'}"
        )


def dataset_episode_id(dataset_id: str, index: int, camera: str) -> str:
    return f"{dataset_id}{SEP}{index}{SEP}{camera}"


def split_dataset_id(episode_id: str) -> tuple[str, int, str] | None:
    """(dataset id, episode index, camera) of a dataset episode's id, else None."""
    parts = episode_id.split(SEP, 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return None
    return parts[0], int(parts[1]), parts[2]


@dataclass
class _Session:
    uploads: OrderedDict[str, Episode | Dataset] = field(default_factory=OrderedDict)  # oldest first
    last_used: float = field(default_factory=time.monotonic)


class EpisodeStore:
    """`session` arguments are the browser session's id ("" for callers without one, e.g. tests).
    `on_forget(ids)` is told which uploads were dropped, so caches of them can go too (a dataset's
    episode ids start with its id). Zipped uploads are unpacked under `unpack_dir`."""

    def __init__(
        self,
        folder: str | Path,
        max_upload_bytes: int,
        keep_uploads: int = 8,
        session_ttl_s: float = 6 * 3600.0,
        on_forget: Callable[[list[str]], None] | None = None,
        unpack_dir: str | Path | None = None,
    ) -> None:
        self.folder = Path(folder)
        self.limits = LoadLimits(
            max_bytes=max_upload_bytes, max_decoded_bytes=max(max_upload_bytes, 2 * 1024**3)
        )
        self.keep_uploads = keep_uploads
        self.session_ttl_s = session_ttl_s
        self.on_forget = on_forget
        self.unpack_dir = Path(unpack_dir) if unpack_dir is not None else Path(tempfile.gettempdir())
        self._bundled: dict[str, Episode] = {}
        self._sessions: dict[str, _Session] = {}
        self._ids = count(1)
        self._lock = threading.Lock()

    def bundled(self) -> list[tuple[str, str]]:
        """(label, id) of each bundled episode file, sorted by name."""
        if not self.folder.is_dir():
            return []
        return [(p.stem, BUNDLED + p.name) for p in sorted(self.folder.glob("*.npz"))]

    def choices(self, session: str = "") -> list[tuple[str, str]]:
        """Bundled episodes, then this session's uploads (newest last), as dropdown (label, value)
        pairs; a dataset is one entry, for the episode and camera picked."""
        with self._lock:
            s = self._sessions.get(session)
            items = list(s.uploads.items()) if s else []
        out = []
        for i, item in items:
            if isinstance(item, Dataset):
                label = (
                    f"{item.listing.name}: episode {item.index}, {item.camera} "
                    f"(uploaded dataset of {len(item.listing.episodes)})"
                )
                out.append((label, dataset_episode_id(i, item.index, item.camera)))
            else:
                out.append((f"{item.name} (uploaded)", i))
        return self.bundled() + out

    def uploads(self, session: str = "") -> list[str]:
        """This session's upload ids (a dataset's own id), oldest first."""
        with self._lock:
            s = self._sessions.get(session)
            return list(s.uploads) if s else []

    def sessions(self) -> list[str]:
        """Sessions holding uploads."""
        with self._lock:
            return list(self._sessions)

    def visible(self, episode_id: str, session: str = "") -> bool:
        """Whether this session may see the episode: every bundled one, its own uploads."""
        if episode_id.startswith(BUNDLED):
            return True
        ds = split_dataset_id(episode_id)
        with self._lock:
            s = self._sessions.get(session)
            return s is not None and (ds[0] if ds else episode_id) in s.uploads

    def dataset(self, episode_id: str | None, session: str = "") -> Dataset | None:
        """The dataset an episode id belongs to (this session's), else None."""
        ds = split_dataset_id(episode_id or "")
        if ds is None:
            return None
        with self._lock:
            s = self._sessions.get(session)
            item = s.uploads.get(ds[0]) if s else None
        return item if isinstance(item, Dataset) else None

    def pick(self, episode_id: str, index: int, camera: str, session: str = "") -> str:
        """Pick another episode or camera of the dataset `episode_id` belongs to; returns the id
        of that episode (decoded when first shown). Raises EpisodeError for one it does not hold."""
        d = self.dataset(episode_id, session)
        if d is None:
            raise EpisodeError(f"{episode_id!r} is not a dataset loaded in this browser session")
        indices = [e.index for e in d.listing.episodes]
        if index not in indices:
            raise EpisodeError(
                f"dataset {d.listing.name!r} has no episode {index}; it has episodes {indices[0]}..{indices[-1]}"
                if indices == list(range(indices[0], indices[-1] + 1))
                else f"dataset {d.listing.name!r} has no episode {index}; it has episodes {indices}"
            )
        if camera not in d.listing.cameras:
            raise EpisodeError(
                f"dataset {d.listing.name!r} has no camera {camera!r}; expected one of {', '.join(d.listing.cameras)}"
            )
        d.index, d.camera = index, camera
        return dataset_episode_id(split_dataset_id(episode_id)[0], index, camera)  # type: ignore[index]

    def get(self, episode_id: str, session: str = "") -> Episode:
        if not episode_id.startswith(BUNDLED):
            ds = split_dataset_id(episode_id)
            with self._lock:
                s = self._sessions.get(session)
                item = s.uploads.get(ds[0] if ds else episode_id) if s else None
                if s is not None:
                    s.last_used = time.monotonic()
            if item is None:
                raise EpisodeError(
                    f"episode {episode_id!r} is not loaded in this browser session (an upload is kept "
                    "only for the session that uploaded it, while it is open)"
                )
            if isinstance(item, Dataset):
                if ds is None:
                    raise EpisodeError(f"{episode_id!r} is a dataset: pick one of its episodes")
                return self._dataset_episode(item, ds[1], ds[2])
            return item
        with self._lock:
            ep = self._bundled.get(episode_id)
        if ep is not None:
            return ep
        name = episode_id[len(BUNDLED) :]
        path = self.folder / name
        if Path(name).name != name or not path.is_file():
            raise EpisodeError(f"bundled episode {name!r} not found in {str(self.folder)!r}")
        ep = load_episode(path)
        with self._lock:
            return self._bundled.setdefault(episode_id, ep)

    def _dataset_episode(self, d: Dataset, index: int, camera: str) -> Episode:
        with self._lock:
            ep = d.loaded.get((index, camera))
            if ep is not None:
                d.loaded.move_to_end((index, camera))
                return ep
        ep = load_episode(d.root, "lerobot", limits=self.limits, episode_index=index, camera=camera)
        with self._lock:
            ep = d.loaded.setdefault((index, camera), ep)
            while len(d.loaded) > LOADED_PER_DATASET:
                d.loaded.popitem(last=False)
        return ep

    def upload(self, path: str | Path, session: str = "") -> str:
        """Load an uploaded file (a .zip holding a folder format is unpacked first) into this
        session and return its id (a dataset's: the id of its first episode and camera); the
        session's oldest upload beyond `keep_uploads` is dropped. Raises EpisodeError (or the
        loader's own error) naming the file and the problem; nothing is kept on failure."""
        p = Path(path)
        if p.suffix.lower() != ".zip":
            return self.open(p, session)
        self.unpack_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix="upload-", dir=self.unpack_dir))
        try:
            root = unpack_zip(p, tmp / _safe(p.stem), self.limits.max_decoded_bytes)
            if is_lerobot(root):
                return self._add(self._open_dataset(root, owned=tmp), root.name, session)
            ep = load_episode(root, limits=self.limits)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        shutil.rmtree(tmp, ignore_errors=True)
        return self._add(_named(ep, p.stem), p.name, session)

    def open(self, path: str | Path, session: str = "") -> str:
        """Load an episode file or folder on this machine (a LeRobot dataset folder is listed, its
        episodes decoded when picked) into this session, as `upload` does, without copying it."""
        p = Path(path).expanduser()
        if is_lerobot(p):
            return self._add(self._open_dataset(p), p.name, session)
        return self._add(_named(load_episode(p, limits=self.limits), p.stem), p.name, session)

    def _open_dataset(self, root: Path, owned: Path | None = None) -> Dataset:
        listing = list_lerobot(root)
        return Dataset(root, listing, listing.episodes[0].index, listing.cameras[0], owned)

    def _add(self, item: Episode | Dataset, name: str, session: str) -> str:
        dropped = self.expire()
        with self._lock:
            s = self._sessions.setdefault(session, _Session())
            upload_id = f"{UPLOAD}{next(self._ids)}:{name.replace(SEP, '_')}"
            s.uploads[upload_id] = item
            s.last_used = time.monotonic()
            while len(s.uploads) > self.keep_uploads:
                dropped.append(s.uploads.popitem(last=False))
        self._forget(dropped)
        if isinstance(item, Dataset):
            return dataset_episode_id(upload_id, item.index, item.camera)
        return upload_id

    def end_session(self, session: str) -> list[str]:
        """Forget a session's uploads (it ended); returns their ids."""
        with self._lock:
            s = self._sessions.pop(session, None)
        dropped = list(s.uploads.items()) if s else []
        self._forget(dropped)
        return [i for i, _ in dropped]

    def expire(self) -> list[tuple[str, Episode | Dataset]]:
        """Take out the uploads of sessions idle for longer than `session_ttl_s`; returns them
        (the caller forgets them)."""
        cutoff = time.monotonic() - self.session_ttl_s
        with self._lock:
            idle = [k for k, s in self._sessions.items() if s.last_used < cutoff]
            return [item for k in idle for item in self._sessions.pop(k).uploads.items()]

    def _forget(self, items: list[tuple[str, Episode | Dataset]]) -> None:
        for _, item in items:
            if isinstance(item, Dataset) and item.owned is not None:
                shutil.rmtree(item.owned, ignore_errors=True)
        if items and self.on_forget is not None:
            self.on_forget([i for i, _ in items])


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "upload"


def _named(ep: Episode, stem: str) -> Episode:
    return ep.replace(name=stem) if ep.name in ("", "episode") else ep


def unpack_zip(path: Path, dest: Path, max_bytes: int) -> Path:
    """Extract a zip into dest after checking its unpacked size (a guard for the disk: what is
    loaded from it has limits of its own) and that no member escapes dest; returns the single
    top-level entry (a zip of the episode folder) or dest itself (a zip made from inside the
    folder, which the caller names after the archive)."""
    try:
        with zipfile.ZipFile(path) as z:
            members = z.infolist()
            total = sum(m.file_size for m in members)
            if total > max_bytes:
                raise EpisodeError(
                    f"{path.name!r} unpacks to {total} bytes, over the limit of {max_bytes} bytes"
                )
            dest.mkdir(parents=True, exist_ok=True)
            root = dest.resolve()
            for m in members:
                if not (root / m.filename).resolve().is_relative_to(root):
                    raise EpisodeError(f"{path.name!r} holds a path outside the archive: {m.filename!r}")
            z.extractall(root)
    except zipfile.BadZipFile as e:
        raise EpisodeError(f"{path.name!r} is not a readable zip archive ({e})") from None
    entries = [e for e in root.iterdir() if not e.name.startswith(".") and e.name != "__MACOSX"]
    if not entries:
        raise EpisodeError(f"{path.name!r} is an empty archive")
    shutil.rmtree(root / "__MACOSX", ignore_errors=True)
    return entries[0] if len(entries) == 1 else root
