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

from safeset.removals.slotindex import PARTS, index_paths

CACHE_FORMAT = 1
CACHE_SUBDIR = Path("cache") / "removal-lists"  # in the store, the command line's default
KEEP_LISTS = 4
MANIFEST = "manifest.json"
_TEMPORARY = ".tmp-"
_CHECKSUM_SLICE = 1 << 26


def mapped_checksum(path: str | Path) -> str:
    """XXH3-128 of a file, read through a memory map: no copy, about twice as fast as read() on large files."""
    digest = xxhash.xxh3_128()
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size:
            with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
                view = memoryview(mapped)
                try:
                    for start in range(0, size, _CHECKSUM_SLICE):
                        digest.update(view[start : start + _CHECKSUM_SLICE])
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

    def find(self, identity: ListIdentity, signal_type: str) -> CachedIndex | None:
        """The verified index of this list and type, or None (a damaged one is removed)."""
        directory = self._list_dir(identity) / signal_type
        if not directory.is_dir():
            return None
        if _verified(directory, identity, signal_type):
            return CachedIndex(directory, json.loads((directory / MANIFEST).read_text())["entries"])
        _remove(directory)
        return None

    def staging(self, identity: ListIdentity) -> Path:
        """A new directory to build this list's missing indexes in (inside the cache: renames stay cheap)."""
        list_dir = self._list_dir(identity)
        list_dir.mkdir(parents=True, exist_ok=True)
        self._remove_abandoned(list_dir)
        staging = list_dir / f"{_TEMPORARY}{os.getpid()}-{secrets.token_hex(4)}"
        staging.mkdir()
        return staging

    def publish(self, staging: Path, identity: ListIdentity, signal_type: str, entries: int) -> CachedIndex:
        """Move a type's index built in `staging` into its place, with its manifest; returns where it is."""
        built = staging / f"{signal_type}.complete"
        built.mkdir()
        files = {}
        for part, path in index_paths(staging, signal_type).items():
            if entries:
                os.replace(path, built / path.name)
                files[part] = {"bytes": (built / path.name).stat().st_size,
                               "xxh3_128": mapped_checksum(built / path.name)}
            else:
                path.unlink(missing_ok=True)
        manifest = {"format": CACHE_FORMAT, "list_xxh3_128": identity.checksum, "list_bytes": identity.size,
                    "signal_type": signal_type, "entries": entries, "files": files}
        (built / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
        final = self._list_dir(identity) / signal_type
        try:
            os.rename(built, final)
        except OSError:  # another process published it first: use theirs if it is sound
            _remove(built)
            found = self.find(identity, signal_type)
            if found is None:
                raise
            return found
        return CachedIndex(final, entries)

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


def _verified(directory: Path, identity: ListIdentity, signal_type: str) -> bool:
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    expected = {"format": CACHE_FORMAT, "list_xxh3_128": identity.checksum, "list_bytes": identity.size,
                "signal_type": signal_type}
    if not isinstance(manifest, dict) or any(manifest.get(k) != v for k, v in expected.items()):
        return False
    entries, files = manifest.get("entries"), manifest.get("files")
    if not isinstance(entries, int) or not isinstance(files, dict):
        return False
    if entries == 0:
        return not files
    paths = index_paths(directory, signal_type)
    if set(files) != set(PARTS):
        return False
    for part, path in paths.items():
        try:
            if path.stat().st_size != files[part]["bytes"] or mapped_checksum(path) != files[part]["xxh3_128"]:
                return False
        except (OSError, KeyError, TypeError):
            return False
    return True


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
