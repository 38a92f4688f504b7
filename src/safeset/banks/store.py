"""Local bank store: immutable, numbered versions with their provenance.

Layout under the store root:
  banks/<NAME>/bank.json                  last version number and highest entry id ever used
  banks/<NAME>/versions/000001/           one immutable version:
      manifest.json                       what it holds, where it came from, content digest
      entries.parquet                     entry_id, signal_type, value; sorted by (signal_type, value)
      rejected.jsonl                      every refused input line: line, reason, preview
      index/<signal_type>.*.npy           exact digest index per digest signal type
  banks/<NAME>/versions/000007/           a layered version (an append to a big bank):
      manifest.json                       as above, plus "layers": the layers whose union it is
      layers/000006/entries.parquet       the parent's files, hard-linked (shared, never copied)
      layers/000006/index/...
      layers/000007/...                   only the entries this version added, and their indexes
  locks/<NAME>.lock                       flock'd by writers of that bank
  tmp/                                    versions being built, versions being deleted

A version is built under tmp/ and renamed into versions/ in one step, so a
reader sees all of it or none of it. Version numbers and entry ids are never
reused within a bank, so a run record naming (bank, version, entry_id) keeps
meaning what it meant. A kept entry keeps its id from version to version.

Appending to a bank of at least `delta_min_entries` entries writes a layered
version (see `safeset.banks.layers`): the cost is that of the addition, not of
the bank, and readers (scan, the service's live index) see the same entries,
ids and matches as from a full version.
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import io
import json
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Iterator

import pyarrow as pa
import pyarrow.compute as pc

from safeset.banks import layers
from safeset.banks.contents import (
    DIGEST_RULE,
    build_indexes,
    content_digest,
    merge_entries,
    parts_of,
    write_entries,
)
from safeset.banks.formats import AUTO, get_format, open_bank_file
from safeset.banks.formats.reading import RawEntry, Rejection
from safeset.banks.formats.validation import EntryCollector, RejectionLog
from safeset.banks.names import normalize_bank_name
from safeset.banks.version import BankVersion, VersionInfo, load_version, read_json
from safeset.errors import ConfigError, SafesetError
from safeset.signals import registry

STORE_ENV_VAR = "SAFESET_STORE"
DEFAULT_STORE_DIR = "~/.safeset"
MANIFEST_FORMAT = 1
LAYERED_MANIFEST_FORMAT = 2
# Appends to banks at least this big write a layered version instead of a full one.
DELTA_MIN_ENTRIES = 100_000
REPORTED_REJECTIONS = 20
STALE_TMP_SECONDS = 24 * 3600
_VERSION_DIR = re.compile(r"^\d{6,}$")


def default_store_root(explicit: str | Path | None = None) -> Path:
    """--store DIR, else $SAFESET_STORE, else ~/.safeset."""
    chosen = explicit if explicit not in (None, "") else os.environ.get(STORE_ENV_VAR) or DEFAULT_STORE_DIR
    return Path(chosen).expanduser()


def _utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _write_json(path: Path, data: dict) -> None:
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    temporary.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(temporary, path)


# ---------------------------------------------------------------- results


@dataclass(frozen=True)
class BankInfo:
    """A bank as `list_banks` shows it: its latest version's numbers."""

    name: str
    latest_version: int
    versions: int
    entries: int
    counts: dict[str, int]
    created: str

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class ImportResult:
    """What an import did; `created` is False when no version was written (and `message` says why).

    accepted         input entries that passed validation (repeats included)
    duplicates       accepted entries repeating an earlier one of the same input
    already_present  distinct accepted entries the parent version already held
    added            entries new to the bank (they get new ids)
    removed          parent entries dropped (only with replace)
    entries          entries in the resulting version (`version`: the new one,
                     or the current one when nothing changed)
    rejections       the first few rejections; all of them are in the version's
                     rejected.jsonl
    """

    bank: str
    created: bool
    version: int | None
    parent_version: int | None
    digest: str | None
    entries: int
    accepted: int
    duplicates: int
    already_present: int
    added: int
    removed: int
    rejected: int
    rejections: list[Rejection]
    source: dict
    message: str
    counts: dict[str, int] = field(default_factory=dict)
    unchanged: bool = False  # nothing new: the content equals the current version

    def to_dict(self) -> dict:
        data = dict(self.__dict__)
        data["rejections"] = [rejection.to_dict() for rejection in self.rejections]
        return data


class BankStore:
    """All banks under one root directory (see the module docstring for the layout)."""

    def __init__(self, root: str | Path, *, delta_min_entries: int = DELTA_MIN_ENTRIES):
        self.root = Path(root).expanduser()
        self.delta_min_entries = delta_min_entries

    # --- paths and locking

    def _bank_dir(self, name: str) -> Path:
        return self.root / "banks" / name

    def _versions_dir(self, name: str) -> Path:
        return self._bank_dir(name) / "versions"

    def _version_dir(self, name: str, version: int) -> Path:
        return self._versions_dir(name) / f"{version:06d}"

    @contextlib.contextmanager
    def _locked(self, name: str) -> Iterator[None]:
        locks = self.root / "locks"
        locks.mkdir(parents=True, exist_ok=True)
        with open(locks / f"{name}.lock", "a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def _staging(self) -> Iterator[Path]:
        """A fresh directory under tmp/; removed afterwards unless it was renamed away."""
        tmp = self.root / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        self._sweep_stale(tmp)
        staging = tmp / f"build-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        staging.mkdir()
        try:
            yield staging
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)

    @staticmethod
    def _sweep_stale(tmp: Path) -> None:
        """Remove what crashed writers left in tmp/ more than a day ago."""
        cutoff = time.time() - STALE_TMP_SECONDS
        for leftover in tmp.iterdir():
            with contextlib.suppress(OSError):
                if leftover.lstat().st_mtime < cutoff:
                    shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()

    def _discard(self, path: Path) -> None:
        """Delete a directory so readers see it either whole or gone: rename first, then remove."""
        tmp = self.root / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        graveyard = tmp / f"deleted-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        os.rename(path, graveyard)
        shutil.rmtree(graveyard, ignore_errors=True)

    # --- reading

    def _bank_names(self) -> list[str]:
        banks = self.root / "banks"
        if not banks.is_dir():
            return []
        return sorted(p.name for p in banks.iterdir() if p.is_dir() and self._version_numbers(p.name))

    def _version_numbers(self, name: str) -> list[int]:
        versions = self._versions_dir(name)
        if not versions.is_dir():
            return []
        return sorted(int(p.name) for p in versions.iterdir() if _VERSION_DIR.match(p.name))

    def _require_bank(self, name: str) -> tuple[str, list[int]]:
        name = normalize_bank_name(name)
        numbers = self._version_numbers(name)
        if not numbers:
            existing = self._bank_names()
            known = f"banks: {', '.join(existing)}" if existing else "the store has no banks yet"
            raise ConfigError(f"no bank {name!r} in store {self.root} ({known})")
        return name, numbers

    def _state(self, name: str) -> dict:
        path = self._bank_dir(name) / "bank.json"
        state = read_json(path) if path.exists() else {"name": name, "created": _utc_now()}
        numbers = self._version_numbers(name)
        state["last_version"] = max([state.get("last_version", 0), *numbers])
        latest_max_id = self._load_version(name, numbers[-1]).manifest.get("max_entry_id", 0) if numbers else 0
        state["max_entry_id"] = max(int(state.get("max_entry_id", 0)), int(latest_max_id))
        return state

    def list_banks(self) -> list[BankInfo]:
        infos = []
        for name in self._bank_names():
            numbers = self._version_numbers(name)
            with contextlib.suppress(SafesetError):  # deleted while we looked
                latest = self.open_version(name, numbers[-1]).manifest
                infos.append(
                    BankInfo(name, numbers[-1], len(numbers), int(latest["entries"]), dict(latest["counts"]), latest["created"])
                )
        return infos

    def bank_versions(self, name: str) -> list[VersionInfo]:
        name, numbers = self._require_bank(name)
        found = []
        for number in numbers:
            with contextlib.suppress(SafesetError):  # deleted while we looked
                found.append(self.open_version(name, number).info())
        return found

    def latest_version(self, name: str) -> int | None:
        """The bank's latest version number, None when there is no such bank (a cheap directory listing)."""
        numbers = self._version_numbers(normalize_bank_name(name))
        return numbers[-1] if numbers else None

    def open_version(self, name: str, version: int | None = None) -> BankVersion:
        """A version of a bank; None = the latest."""
        name, numbers = self._require_bank(name)
        number = numbers[-1] if version is None else int(version)
        path = self._version_dir(name, number)
        if number not in numbers or not path.is_dir():
            raise ConfigError(f"bank {name} has no version {number} (versions: {', '.join(map(str, numbers))})")
        return self._load_version(name, number)

    def _load_version(self, name: str, number: int) -> BankVersion:
        return load_version(self._version_dir(name, number))

    # --- writing

    def import_file(
        self,
        name: str,
        path: str | Path,
        *,
        signal_type: str | None = None,
        fmt: str = AUTO,
        replace: bool = False,
        note: str | None = None,
    ) -> ImportResult:
        """Parse, validate and dedupe a bank file into a new version of bank `name`."""
        name = normalize_bank_name(name)
        if signal_type is not None:
            registry.get(signal_type)
        parsed = open_bank_file(path, fmt, signal_type)
        with self._staging() as staging:
            rejections = RejectionLog(staging / "rejected.jsonl", REPORTED_REJECTIONS)
            collector = EntryCollector(rejections, signal_type)
            try:
                collector.add_all(parsed)
            finally:
                rejections.close()
            source = {
                "kind": "file",
                "path": str(Path(path).resolve()),
                "sha256": parsed.sha256,
                "format": parsed.format,
                "signal_type": signal_type,
            }
            return self._commit(name, staging, collector, source, replace, note)

    def add_entries(
        self, name: str, entries: Iterable[tuple[str, str]], note: str | None = None, *, replace: bool = False,
        allow_empty: bool = False,
    ) -> ImportResult:
        """Add (signal_type, value) pairs as a new version; rejections are numbered by position (1-based).

        `replace` with `allow_empty` may write an empty version (the curator API removing a bank's
        last entry): the bank keeps its numbering, so versions and entry ids are never reused."""
        name = normalize_bank_name(name)
        with self._staging() as staging:
            rejections = RejectionLog(staging / "rejected.jsonl", REPORTED_REJECTIONS)
            collector = EntryCollector(rejections)
            try:
                for position, (signal_type, value) in enumerate(entries, start=1):
                    shown = f"{signal_type} {value}"
                    collector.add(RawEntry(position, str(signal_type).strip().lower(), str(value), shown))
            finally:
                rejections.close()
            return self._commit(name, staging, collector, {"kind": "entries"}, replace, note, allow_empty=allow_empty)

    def _commit(
        self, name: str, staging: Path, collector: EntryCollector, source: dict, replace: bool, note: str | None,
        allow_empty: bool = False,
    ) -> ImportResult:
        rejections = collector.rejections
        new = collector.by_type()

        def outcome(created: bool, message: str, **fields) -> ImportResult:
            base = dict(
                bank=name, created=created, version=None, parent_version=None, digest=None, entries=0,
                accepted=collector.accepted, duplicates=0, already_present=0, added=0, removed=0,
                rejected=rejections.count, rejections=list(rejections.first), source=source, message=message,
            )
            base.update(fields)
            return ImportResult(**base)

        if collector.accepted == 0 and not (replace and allow_empty and rejections.count == 0):
            if rejections.count:
                why = f"all {rejections.count} entries were rejected"
            else:
                why = "the input holds no entries"
            return outcome(False, f"{why}; no version of {name} was created")

        with self._locked(name):
            state = self._state(name)
            numbers = self._version_numbers(name)
            parent = self._load_version(name, numbers[-1]) if numbers else None
            if parent is not None and not replace and int(parent.manifest["entries"]) >= self.delta_min_entries:
                layered = self._commit_layered(name, staging, collector, source, note, state, parent, new)
                if layered is not None:
                    return layered
            parent_parts = parts_of(parent.entries(), parent.manifest["counts"]) if parent else None
            merged = merge_entries(parent_parts, new, replace, int(state["max_entry_id"]))
            del new, parent_parts
            digest = content_digest(merged.parts)
            counts = merged.counts()
            stats = dict(
                duplicates=merged.duplicates, already_present=merged.already_present,
                added=merged.added, removed=merged.removed, counts=counts, entries=merged.entries,
            )
            if parent is not None and (digest == parent.digest or merged.added == merged.removed == 0):
                return outcome(
                    False,
                    f"no change: the content equals version {parent.version} of {name}; no version was created",
                    version=parent.version, parent_version=parent.version, digest=parent.digest, unchanged=True,
                    **stats,
                )
            version = int(state["last_version"]) + 1
            manifest = {
                "manifest_format": MANIFEST_FORMAT,
                "name": name,
                "version": version,
                "created": _utc_now(),
                "digest": digest,
                "digest_rule": DIGEST_RULE,
                "parent_version": parent.version if parent else None,
                "mode": "replace" if replace else "append",
                "note": note,
                "source": source,
                "entries": merged.entries,
                "counts": counts,
                "accepted": collector.accepted,
                "rejected": rejections.count,
                "duplicates": merged.duplicates,
                "already_present": merged.already_present,
                "added": merged.added,
                "removed": merged.removed,
                "max_entry_id": merged.max_entry_id,
            }
            write_entries(merged.parts, staging / "entries.parquet")
            manifest["index"] = build_indexes(merged.parts, staging / "index")
            _write_json(staging / "manifest.json", manifest)
            self._versions_dir(name).mkdir(parents=True, exist_ok=True)
            os.rename(staging, self._version_dir(name, version))
            state.update(last_version=version, max_entry_id=merged.max_entry_id, name=name)
            _write_json(self._bank_dir(name) / "bank.json", state)
        removed = f", {merged.removed} removed" if replace else ""
        return outcome(
            True,
            f"{name} version {version}: {merged.added} new entries{removed}, {merged.already_present} already "
            f"present, {merged.duplicates} duplicate lines, {rejections.count} rejected",
            version=version, parent_version=manifest["parent_version"], digest=digest, **stats,
        )

    def _commit_layered(
        self, name: str, staging: Path, collector: EntryCollector, source: dict, note: str | None,
        state: dict, parent: BankVersion, new: dict[str, pa.Array],
    ) -> ImportResult | None:
        """Append as a layered version (caller holds the lock); None when the layers would all
        merge, i.e. a full version is due (the caller then writes one)."""
        rejections = collector.rejections
        addition = layers.new_entries(parent, new, int(state["max_entry_id"]))
        parent_layers = parent.layers
        counts = dict(parent.manifest["counts"])
        for part in addition.parts:
            counts[part.signal_type] = counts.get(part.signal_type, 0) + len(part.ids)
        counts = {t: counts[t] for t in sorted(counts) if counts[t]}
        stats = dict(
            accepted=collector.accepted, rejected=rejections.count, rejections=list(rejections.first),
            source=source, duplicates=addition.duplicates, already_present=addition.already_present,
            added=addition.added, removed=0, counts=counts, entries=sum(counts.values()),
        )
        if addition.added == 0:
            return ImportResult(
                bank=name, created=False, version=parent.version, parent_version=parent.version,
                digest=parent.digest, unchanged=True,
                message=f"no change: the content equals version {parent.version} of {name}; no version was created",
                **stats,
            )
        merging = layers.layers_to_merge([layer.entries_count for layer in parent_layers], addition.added)
        if merging == len(parent_layers):
            return None
        version = int(state["last_version"]) + 1
        described = []
        for layer in parent_layers[: len(parent_layers) - merging]:
            layer_dir = layers.layer_name(layer, parent.version)
            layers.link_layer(layer, staging / layer_dir)
            described.append(layers.layer_description(layer_dir, layer))
        tail = [layers.layer_parts(layer) for layer in parent_layers[len(parent_layers) - merging :]]
        merged_tail = layers.union_parts([*tail, addition.parts])
        tail_dir = f"layers/{version:06d}"
        index = layers.write_layer(merged_tail, staging / tail_dir)
        described.append(layers.layer_description(tail_dir, merged_tail, index))
        digest = layers.chained_digest(parent.digest, addition.parts)
        manifest = {
            "manifest_format": LAYERED_MANIFEST_FORMAT,
            "name": name,
            "version": version,
            "created": _utc_now(),
            "digest": digest,
            "digest_rule": layers.LAYER_DIGEST_RULE,
            "parent_version": parent.version,
            "mode": "append",
            "note": note,
            "source": source,
            "entries": stats["entries"],
            "counts": counts,
            "accepted": collector.accepted,
            "rejected": rejections.count,
            "duplicates": addition.duplicates,
            "already_present": addition.already_present,
            "added": addition.added,
            "removed": 0,
            "max_entry_id": addition.max_entry_id,
            "layers": described,
        }
        _write_json(staging / "manifest.json", manifest)
        self._versions_dir(name).mkdir(parents=True, exist_ok=True)
        os.rename(staging, self._version_dir(name, version))
        state.update(last_version=version, max_entry_id=addition.max_entry_id, name=name)
        _write_json(self._bank_dir(name) / "bank.json", state)
        return ImportResult(
            bank=name, created=True, version=version, parent_version=parent.version, digest=digest,
            message=f"{name} version {version}: {addition.added} new entries, {addition.already_present} already "
            f"present, {addition.duplicates} duplicate lines, {rejections.count} rejected",
            **stats,
        )

    def delete(self, name: str, version: int | None = None) -> list[int]:
        """Delete one version, or the whole bank (None); returns the version numbers deleted.

        Deleting a bank's only remaining version deletes the bank. Numbers of
        deleted versions are not handed out again while the bank exists.
        """
        name, numbers = self._require_bank(name)
        with self._locked(name):
            numbers = self._version_numbers(name)
            if version is None or numbers == [int(version)]:
                self._discard(self._bank_dir(name))
                return numbers
            if int(version) not in numbers:
                raise ConfigError(f"bank {name} has no version {version} (versions: {', '.join(map(str, numbers))})")
            state = self._state(name)
            _write_json(self._bank_dir(name) / "bank.json", state)  # keep numbering past the deleted one
            self._discard(self._version_dir(name, int(version)))
            return [int(version)]

    def export(
        self,
        name: str,
        out_path: str | Path,
        fmt: str,
        version: int | None = None,
        signal_type: str | None = None,
    ) -> int:
        """Write a version's entries in a bank format (`.gz` names are gzipped); returns entries written."""
        module = get_format(fmt)
        bank = self.open_version(name, version)
        table = bank.entries()
        if signal_type is not None:
            registry.get(signal_type)
            table = table.filter(pc.equal(table["signal_type"], signal_type))
        elif module.NEEDS_SIGNAL_TYPE and len(bank.signal_types()) > 1:
            raise ConfigError(
                f"bank {bank.name} holds several signal types ({', '.join(bank.signal_types())}); "
                f"a {fmt} list holds one: pass a signal type filter, or export as pytx, pytx-csv or csv"
            )
        out_path = Path(out_path)
        temporary = out_path.with_name(f".{out_path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        try:
            with open(temporary, "wb") as raw:
                sink = gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) if out_path.suffix == ".gz" else raw
                with io.TextIOWrapper(sink, encoding="utf-8", newline="") as text:
                    for line in module.format_rows(_rows(table), bank.name):
                        text.write(line)
            os.replace(temporary, out_path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()
        return len(table)


def _rows(table: pa.Table) -> Iterator[tuple[int, str, str]]:
    for batch in table.to_batches(max_chunksize=65536):
        yield from zip(*(batch.column(name).to_pylist() for name in ("entry_id", "signal_type", "value")))


__all__ = [
    "BankInfo",
    "BankStore",
    "BankVersion",
    "ImportResult",
    "VersionInfo",
    "default_store_root",
]
