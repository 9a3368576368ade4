"""The episodes the app can show: the bundled samples (every *.npz in the episodes folder, loaded
on first use) and uploads (any format `load_episode` reads, within a size limit). Each is loaded
once and kept as one object, so the trace pipeline's per-frame caches stay valid for it."""

from __future__ import annotations

import threading
from collections import OrderedDict
from itertools import count
from pathlib import Path

from stvla_core.episodes import Episode, EpisodeError, LoadLimits, load_episode

BUNDLED = "bundled:"
UPLOAD = "upload:"


class EpisodeStore:
    def __init__(self, folder: str | Path, max_upload_bytes: int, keep_uploads: int = 8) -> None:
        self.folder = Path(folder)
        self.limits = LoadLimits(max_bytes=max_upload_bytes)
        self.keep_uploads = keep_uploads
        self._loaded: OrderedDict[str, Episode] = OrderedDict()
        self._uploads: list[str] = []
        self._ids = count(1)
        self._lock = threading.Lock()

    def bundled(self) -> list[tuple[str, str]]:
        """(label, id) of each bundled episode file, sorted by name."""
        if not self.folder.is_dir():
            return []
        return [(p.stem, BUNDLED + p.name) for p in sorted(self.folder.glob("*.npz"))]

    def choices(self) -> list[tuple[str, str]]:
        """Bundled episodes, then uploads (newest last), as dropdown (label, value) pairs."""
        with self._lock:
            ups = [(f"{self._loaded[i].name} (uploaded)", i) for i in self._uploads]
        return self.bundled() + ups

    def get(self, episode_id: str) -> Episode:
        with self._lock:
            ep = self._loaded.get(episode_id)
        if ep is not None:
            return ep
        if not episode_id.startswith(BUNDLED):
            raise EpisodeError(
                f"episode {episode_id!r} is not loaded (uploads are kept for this session only)"
            )
        name = episode_id[len(BUNDLED) :]
        path = self.folder / name
        if Path(name).name != name or not path.is_file():
            raise EpisodeError(f"bundled episode {name!r} not found in {str(self.folder)!r}")
        ep = load_episode(path)
        with self._lock:
            self._loaded.setdefault(episode_id, ep)
            return self._loaded[episode_id]

    def upload(self, path: str | Path) -> str:
        """Load an uploaded file (or folder) and return its id. Raises EpisodeError (or the
        loader's own error) naming the file and the problem; nothing is kept on failure."""
        p = Path(path)
        ep = load_episode(p, limits=self.limits)
        if ep.name in ("", "episode"):
            ep = ep.replace(name=p.stem)
        with self._lock:
            episode_id = f"{UPLOAD}{next(self._ids)}:{p.name}"
            self._loaded[episode_id] = ep
            self._uploads.append(episode_id)
            while len(self._uploads) > self.keep_uploads:
                self._loaded.pop(self._uploads.pop(0), None)
        return episode_id
