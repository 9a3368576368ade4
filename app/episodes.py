"""The episodes the app can show: the bundled samples (every *.npz in the episodes folder, loaded
on first use) and uploads (any format `load_episode` reads, within a size limit; the folder
formats, a LeRobot dataset or a folder of frames, arrive as a .zip). Each is loaded once and kept
as one object, so the trace pipeline's per-frame caches stay valid for it."""

from __future__ import annotations

import shutil
import tempfile
import threading
import zipfile
from collections import OrderedDict
from itertools import count
from pathlib import Path

from stvla_core.episodes import Episode, EpisodeError, LoadLimits, load_episode

BUNDLED = "bundled:"
UPLOAD = "upload:"


class EpisodeStore:
    def __init__(self, folder: str | Path, max_upload_bytes: int, keep_uploads: int = 8) -> None:
        self.folder = Path(folder)
        self.limits = LoadLimits(
            max_bytes=max_upload_bytes, max_decoded_bytes=max(max_upload_bytes, 2 * 1024**3)
        )
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
        """Load an uploaded file (a .zip holding a folder format is unpacked first) and return its
        id. Raises EpisodeError (or the loader's own error) naming the file and the problem;
        nothing is kept on failure."""
        p = Path(path)
        if p.suffix.lower() == ".zip":
            with tempfile.TemporaryDirectory(prefix="stvla-upload-") as tmp:
                ep = load_episode(unpack_zip(p, Path(tmp), self.limits.max_bytes), limits=self.limits)
        else:
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
