"""The episodes the app can show: the bundled samples (every *.npz in the episodes folder, loaded
on first use, shared by everyone) and uploads (any format `load_episode` reads, within a size limit;
the folder formats, a LeRobot dataset or a folder of frames, arrive as a .zip). Each is loaded once
and kept as one object, so the trace pipeline's per-frame caches stay valid for it.

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

BUNDLED = "bundled:"
UPLOAD = "upload:"


@dataclass
class _Session:
    uploads: OrderedDict[str, Episode] = field(default_factory=OrderedDict)  # oldest first
    last_used: float = field(default_factory=time.monotonic)


class EpisodeStore:
    """`session` arguments are the browser session's id ("" for callers without one, e.g. tests).
    `on_forget(ids)` is told which uploads were dropped, so caches of them can go too."""

    def __init__(
        self,
        folder: str | Path,
        max_upload_bytes: int,
        keep_uploads: int = 8,
        session_ttl_s: float = 6 * 3600.0,
        on_forget: Callable[[list[str]], None] | None = None,
    ) -> None:
        self.folder = Path(folder)
        self.limits = LoadLimits(
            max_bytes=max_upload_bytes, max_decoded_bytes=max(max_upload_bytes, 2 * 1024**3)
        )
        self.keep_uploads = keep_uploads
        self.session_ttl_s = session_ttl_s
        self.on_forget = on_forget
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
        pairs."""
        with self._lock:
            s = self._sessions.get(session)
            ups = [(f"{ep.name} (uploaded)", i) for i, ep in s.uploads.items()] if s else []
        return self.bundled() + ups

    def uploads(self, session: str = "") -> list[str]:
        """This session's upload ids, oldest first."""
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
        with self._lock:
            s = self._sessions.get(session)
            return s is not None and episode_id in s.uploads

    def get(self, episode_id: str, session: str = "") -> Episode:
        if not episode_id.startswith(BUNDLED):
            with self._lock:
                s = self._sessions.get(session)
                ep = s.uploads.get(episode_id) if s else None
                if s is not None:
                    s.last_used = time.monotonic()
            if ep is None:
                raise EpisodeError(
                    f"episode {episode_id!r} is not loaded in this browser session (an upload is kept "
                    "only for the session that uploaded it, while it is open)"
                )
            return ep
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

    def upload(self, path: str | Path, session: str = "") -> str:
        """Load an uploaded file (a .zip holding a folder format is unpacked first) into this
        session and return its id; the session's oldest upload beyond `keep_uploads` is dropped.
        Raises EpisodeError (or the loader's own error) naming the file and the problem; nothing
        is kept on failure."""
        p = Path(path)
        if p.suffix.lower() == ".zip":
            with tempfile.TemporaryDirectory(prefix="stvla-upload-") as tmp:
                ep = load_episode(unpack_zip(p, Path(tmp), self.limits.max_bytes), limits=self.limits)
        else:
            ep = load_episode(p, limits=self.limits)
        if ep.name in ("", "episode"):
            ep = ep.replace(name=p.stem)
        dropped = self.expire()
        with self._lock:
            s = self._sessions.setdefault(session, _Session())
            episode_id = f"{UPLOAD}{next(self._ids)}:{p.name}"
            s.uploads[episode_id] = ep
            s.last_used = time.monotonic()
            while len(s.uploads) > self.keep_uploads:
                dropped.append(s.uploads.popitem(last=False)[0])
        self._forget(dropped)
        return episode_id

    def end_session(self, session: str) -> list[str]:
        """Forget a session's uploads (it ended); returns their ids."""
        with self._lock:
            s = self._sessions.pop(session, None)
        dropped = list(s.uploads) if s else []
        self._forget(dropped)
        return dropped

    def expire(self) -> list[str]:
        """Drop the uploads of sessions idle for longer than `session_ttl_s`; returns their ids
        (the caller tells `on_forget`)."""
        cutoff = time.monotonic() - self.session_ttl_s
        with self._lock:
            idle = [k for k, s in self._sessions.items() if s.last_used < cutoff]
            return [i for k in idle for i in self._sessions.pop(k).uploads]

    def _forget(self, ids: list[str]) -> None:
        if ids and self.on_forget is not None:
            self.on_forget(ids)


def unpack_zip(path: Path, dest: Path, max_bytes: int) -> Path:
    """Extract a zip into dest after checking its unpacked size and that no member escapes dest;
    returns the single top-level entry (the episode folder) or dest itself."""
    try:
        with zipfile.ZipFile(path) as z:
            members = z.infolist()
            total = sum(m.file_size for m in members)
            if total > max_bytes:
                raise EpisodeError(
                    f"{path.name!r} unpacks to {total} bytes, over the limit of {max_bytes} bytes"
                )
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
