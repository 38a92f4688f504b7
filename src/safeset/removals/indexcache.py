"""Built list indexes kept for the next `removals apply`, keyed by the list file's checksum.

Indexing a list of 100M entries takes most of a minute; applying the same
list to a second copy should not do it again. Each signal type's index lives
in `<cache>/<XXH3-128 of the list file>/<signal type>/`: the index files (see
`slotindex`) and `manifest.json`:

    {"format": 1, "list_xxh3_128", "list_bytes", "signal_type", "entries",
     "files": {"keys": {"bytes", "xxh3_128"}, "ids": ..., "slots": ...}}

- A type's directory is built under a temporary name beside it and renamed
  into place when complete; a crash leaves only a `.tmp-<pid>-*` directory,
  which a later build removes once that process is gone.
- Before use, the manifest must name this list (checksum and size) and
  every file must have its recorded size and checksum; anything else is
  damage: the directory is removed and the index built again. A type the
  list holds no values of is kept as a manifest with 0 entries, so its column
  is not read again either.
- The cache keeps the indexes of the `KEEP_LISTS` lists used last (each use
  touches the list's directory); older ones are removed after a build.
"""

from __future__ import annotations

import json
import mmap
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

import xxhash

from safeset.engine.local import LocalEngine
from safeset.removals.slotindex import PARTS, index_paths

CACHE_FORMAT = 1
CACHE_SUBDIR = Path("cache") / "removal-lists"  # in the store, the command line's default
KEEP_LISTS = 2  # a list and its previous version, say: a 100M-entry list takes ~6.6 GB
MANIFEST = "manifest.json"
_TEMPORARY = ".tmp-"
_CHECKSUM_WINDOW = 1 << 26  # a multiple of mmap.ALLOCATIONGRANULARITY
PARALLEL_CHECKSUM_BYTES = 1 << 30  # below this, starting worker processes costs more than it saves


def mapped_checksum(path: str | Path) -> str:
    """XXH3-128 of a file, read through a memory map a window at a time.

    No copy into a buffer, so about twice as fast as read() on large files;
    one window mapped at a time, so the process's resident size stays small.
    """
    digest = xxhash.xxh3_128()
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        for start in range(0, size, _CHECKSUM_WINDOW):
            length = min(_CHECKSUM_WINDOW, size - start)
            with mmap.mmap(handle.fileno(), length, access=mmap.ACCESS_READ, offset=start) as window:
                view = memoryview(window)
                try:
                    digest.update(view)
                finally:
                    view.release()
    return digest.hexdigest()


@dataclass(frozen=True)
class ListIdentity:
    """What a cached index must have been built from."""

    checksum: str  # XXH3-128 of the list file
    size: int


@dataclass(frozen=True)
class CachedIndex:
    """One signal type's index in the cache: its directory (stem = the type) and entry count."""

    directory: Path
    entries: int


class ListIndexCache:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    def _list_dir(self, identity: ListIdentity) -> Path:
        return self.root / identity.checksum

    def find(self, identity: ListIdentity, signal_types: tuple[str, ...], workers: int | None = 1,
             ) -> dict[str, CachedIndex]:
        """The verified indexes of this list among these types (damaged ones are removed).

        The files are checksummed on `workers` processes: for a list of 100M
        entries that is several GB, read from the page cache.
        """
        candidates = {t: self._list_dir(identity) / t for t in signal_types}
        manifests = {t: _sound_manifest(d, identity, t) for t, d in candidates.items() if d.is_dir()}
        expected = {str(path): files[part]["xxh3_128"] for t, (manifest, files) in manifests.items() if manifest
                    for part, path in index_paths(candidates[t], t).items() if files}
        actual = checksums(list(expected), workers)
        found = {}
        for signal_type, (manifest, files) in manifests.items():
            paths = [str(path) for path in index_paths(candidates[signal_type], signal_type).values()] if files else []
            if manifest and all(actual.get(path) == expected[path] for path in paths):
                found[signal_type] = CachedIndex(candidates[signal_type], manifest["entries"])
            else:
                _remove(candidates[signal_type])
        return found

    def staging(self, identity: ListIdentity) -> Path:
        """A new directory to build this list's missing indexes in (inside the cache: renames stay cheap)."""
        list_dir = self._list_dir(identity)
        list_dir.mkdir(parents=True, exist_ok=True)
        self._remove_abandoned(list_dir)
        staging = list_dir / f"{_TEMPORARY}{os.getpid()}-{secrets.token_hex(4)}"
        staging.mkdir()
        return staging

    def publish(self, staging: Path, identity: ListIdentity, entries: dict[str, int], workers: int | None = 1,
                ) -> dict[str, CachedIndex]:
        """Move the indexes built in `staging` (entries per type) into place with their manifests."""
        built = {t: staging / f"{t}.complete" for t in entries}
        for signal_type, directory in built.items():
            directory.mkdir()
            for path in index_paths(staging, signal_type).values():
                if entries[signal_type]:
                    os.replace(path, directory / path.name)
        sums = checksums([str(p) for t, d in built.items() if entries[t] for p in index_paths(d, t).values()],
                         workers)
        published = {}
        for signal_type, directory in built.items():
            paths = index_paths(directory, signal_type) if entries[signal_type] else {}
            files = {part: {"bytes": path.stat().st_size, "xxh3_128": sums[str(path)]} for part, path in paths.items()}
            manifest = {"format": CACHE_FORMAT, "list_xxh3_128": identity.checksum, "list_bytes": identity.size,
                        "signal_type": signal_type, "entries": entries[signal_type], "files": files}
            (directory / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
            final = self._list_dir(identity) / signal_type
            try:
                os.rename(directory, final)
                published[signal_type] = CachedIndex(final, entries[signal_type])
            except OSError:  # another process published it first: use theirs if it is sound
                _remove(directory)
                published.update(self.find(identity, (signal_type,), workers))
                if signal_type not in published:
                    raise
        return published

    def touch(self, identity: ListIdentity) -> None:
        """Mark this list's indexes as just used (eviction removes the least recently used lists)."""
        os.utime(self._list_dir(identity))

    def evict(self, keep: int | None = None) -> None:
        """Remove all but the `keep` (default KEEP_LISTS) most recently used lists' indexes."""
        keep = KEEP_LISTS if keep is None else keep
        self._remove_abandoned(self.root)
        lists = [path for path in self.root.iterdir() if path.is_dir() and not path.name.startswith(_TEMPORARY)]
        lists.sort(key=lambda path: path.stat().st_mtime, reverse=True)
        for stale in lists[keep:]:
            _remove(stale)

    @staticmethod
    def _remove_abandoned(list_dir: Path) -> None:
        """Temporary directories whose builder is no longer running."""
        for path in list_dir.glob(f"{_TEMPORARY}*"):
            pid = path.name[len(_TEMPORARY):].split("-")[0]
            if not pid.isdigit() or not _running(int(pid)):
                _remove(path)


def _sound_manifest(directory: Path, identity: ListIdentity, signal_type: str) -> tuple[dict | None, dict]:
    """(manifest, its files) if it names this list and type and the files have their sizes; else (None, {})."""
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
    except (OSError, ValueError):
        return None, {}
    expected = {"format": CACHE_FORMAT, "list_xxh3_128": identity.checksum, "list_bytes": identity.size,
                "signal_type": signal_type}
    if not isinstance(manifest, dict) or any(manifest.get(k) != v for k, v in expected.items()):
        return None, {}
    entries, files = manifest.get("entries"), manifest.get("files")
    if not isinstance(entries, int) or isinstance(entries, bool) or entries < 0 or not isinstance(files, dict):
        return None, {}
    if entries == 0:
        return (manifest, {}) if not files else (None, {})
    if set(files) != set(PARTS):
        return None, {}
    for part, path in index_paths(directory, signal_type).items():
        try:
            if path.stat().st_size != files[part]["bytes"] or not isinstance(files[part]["xxh3_128"], str):
                return None, {}
        except (OSError, KeyError, TypeError):
            return None, {}
    return manifest, files


def checksums(paths: list[str], workers: int | None = 1) -> dict[str, str]:
    """`mapped_checksum` of each file, on up to `workers` processes (in this one when they are small)."""
    total = sum(os.path.getsize(path) for path in paths if os.path.exists(path))
    workers = 1 if total < PARALLEL_CHECKSUM_BYTES else min(LocalEngine(workers).workers, len(paths))
    results = {}
    for path, result in LocalEngine(workers).map(_no_context, (), _checksum_task, paths):
        results[path] = None if isinstance(result, BaseException) else result  # unreadable: not verified
    return results


def _checksum_task(path: str, context=None, report=None) -> str:
    return mapped_checksum(path)


def _no_context() -> None:
    return None


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove(path: Path) -> None:
    """Rename aside, then delete: a reader never sees half a directory under the real name."""
    doomed = path.with_name(f"{_TEMPORARY}{os.getpid()}-{secrets.token_hex(4)}-{path.name}")
    try:
        os.rename(path, doomed)
    except OSError:
        return
    shutil.rmtree(doomed, ignore_errors=True)
