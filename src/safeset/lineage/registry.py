"""The registry of dataset and model versions: who was trained on what.

Versions are immutable: registering a NAME@VERSION twice is refused, so a
fingerprint or a lineage record never changes under a report that cited it.
Every registration is written to the audit log.

References a model makes (`--trained-on`, `--base`, or its card):

- `NAME@VERSION` names that exact version;
- a bare `NAME` (model cards rarely carry versions) resolves to the latest
  registered version of that name, at registration time, and is stored
  resolved, so a later version does not silently change history;
- a reference to something not registered is refused, unless
  `allow_unregistered`: then it is stored as written and the model is
  reported as *unverified* by `taint` (its lineage cannot be checked, so it is
  not passed as clean) until the reference is registered.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from safeset.audit import AuditLog
from safeset.datasets.base import ColumnOverrides
from safeset.db import Database
from safeset.errors import ConfigError, InputError
from safeset.lineage.fingerprint import fingerprint_dataset
from safeset.lineage.membership import MembershipIndex, fsync_directory_files, new_salt
from safeset.lineage.model_card import read_model_card
from safeset.lineage.refs import Ref, parse_ref
from safeset.lineage.schema import COMPONENT, MIGRATIONS

LINEAGE_DIR = "lineage"
DATASETS_DIR = "datasets"


def default_actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def _utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class DatasetRecord:
    name: str
    version: str
    source_path: str
    rows: int
    shard_digest: str
    membership_dir: str  # relative to the store root
    summary: dict
    note: str | None
    created_at: str
    created_by: str

    @property
    def ref(self) -> Ref:
        return Ref(self.name, self.version)

    def to_dict(self) -> dict:
        return {
            "name": str(self.ref),
            "rows": self.rows,
            "source_path": self.source_path,
            "shard_digest": self.shard_digest,
            **{k: v for k, v in self.summary.items() if k not in ("rows", "shard_digest")},
            "note": self.note,
            "created_at": self.created_at,
            "created_by": self.created_by,
        }


@dataclass(frozen=True)
class ModelInput:
    kind: str  # "dataset" | "base"
    ref: Ref
    written: str  # as the user or the card wrote it
    origin: str  # "option" | "card"


@dataclass
class ModelRecord:
    name: str
    version: str
    relation: str | None
    card_path: str | None
    card_sha256: str | None
    note: str | None
    created_at: str
    created_by: str
    inputs: list[ModelInput] = field(default_factory=list)

    @property
    def ref(self) -> Ref:
        return Ref(self.name, self.version)

    def refs(self, kind: str) -> list[Ref]:
        return [i.ref for i in self.inputs if i.kind == kind]

    def to_dict(self) -> dict:
        return {
            "name": str(self.ref),
            "trained_on": [str(r) for r in self.refs("dataset")],
            "base_models": [str(r) for r in self.refs("base")],
            "relation": self.relation,
            "card_path": self.card_path,
            "card_sha256": self.card_sha256,
            "note": self.note,
            "created_at": self.created_at,
            "created_by": self.created_by,
        }


@dataclass
class ModelRegistration:
    model: ModelRecord
    unregistered: list[ModelInput]  # stored as written: the model is unverified until they are registered
    resolved: list[tuple[str, Ref]]  # (written, resolved) for bare names given a version

    def to_dict(self) -> dict:
        return {
            **self.model.to_dict(),
            "unregistered": [{"kind": i.kind, "name": str(i.ref)} for i in self.unregistered],
            "resolved": [{"written": w, "name": str(r)} for w, r in self.resolved],
        }


class LineageRegistry:
    def __init__(self, db: Database, store_root: Path, audit: AuditLog | None = None):
        self.db = db
        self.store_root = Path(store_root)
        self.audit = audit
        db.migrate(COMPONENT, MIGRATIONS)

    @classmethod
    def open(cls, store_root: Path, db_url: str | None = None) -> "LineageRegistry":
        """The registry in the store's database (`--db`, $SAFESET_DB, else SQLite in the store)."""
        store_root = Path(store_root).expanduser()
        audit = AuditLog.open_store(store_root, db_url)
        return cls(audit.db, store_root, audit)

    @property
    def datasets_root(self) -> Path:
        return self.store_root / LINEAGE_DIR / DATASETS_DIR

    # -- datasets ----------------------------------------------------------
    def add_dataset(
        self,
        ref_text: str,
        path: Path,
        *,
        fmt: str | None = None,
        columns: ColumnOverrides | None = None,
        image_digest: str = "auto",
        workers: int | None = None,
        batch_rows: int | None = None,
        note: str | None = None,
        actor: str | None = None,
        progress=None,
        memory_keys: int = 1 << 24,
    ) -> DatasetRecord:
        """Fingerprint the dataset at `path` and register it as NAME@VERSION."""
        ref = parse_ref(ref_text, "dataset")
        self._refuse_existing("lineage_datasets", ref, "dataset")
        build_root = self.datasets_root / f".build-{uuid.uuid4().hex}"
        members = build_root / "members"
        members.mkdir(parents=True)
        try:
            fingerprint = fingerprint_dataset(
                Path(path), members, build_root / "work", new_salt(), fmt=fmt, columns=columns,
                image_digest=image_digest, workers=workers, batch_rows=batch_rows, progress=progress,
                memory_keys=memory_keys,
            )
            summary = fingerprint.summary()
            _write_json(members / "shards.json", {"dataset": str(ref), "shards": fingerprint.shards})
            _write_json(members / "fingerprint.json", {"dataset": str(ref), "source_path": str(Path(path).resolve()),
                                                      **summary})
            fsync_directory_files(members)
            record = DatasetRecord(
                name=ref.name, version=ref.version, source_path=str(Path(path).resolve()), rows=fingerprint.rows,
                shard_digest=fingerprint.shard_digest,
                membership_dir=f"{LINEAGE_DIR}/{DATASETS_DIR}/{ref.directory_name}",
                summary=summary, note=note, created_at=_utc_now(), created_by=actor or default_actor(),
            )
            self._publish_dataset(record, members)
        finally:
            shutil.rmtree(build_root, ignore_errors=True)
        if self.audit is not None:
            self.audit.append(record.created_by, "lineage.dataset.add", {
                "dataset": str(ref), "rows": record.rows, "shard_digest": record.shard_digest,
                "membership_entries": summary["membership_entries"], "source_path": record.source_path,
            })
        return record

    def _publish_dataset(self, record: DatasetRecord, members: Path) -> None:
        """Move the finished structure into place and insert its row, as one step."""
        final = self.store_root / record.membership_dir
        moved = False
        try:
            with self.db.transaction(lock_name="lineage"):
                self._refuse_existing("lineage_datasets", record.ref, "dataset")
                if final.exists():  # left by a registration that died before its row was committed
                    shutil.rmtree(final)
                os.replace(members, final)
                moved = True
                self.db.insert(
                    "INSERT INTO lineage_datasets (name, version, source_path, row_count, shard_digest,"
                    " membership_dir, summary, note, created_at, created_by)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                    (record.name, record.version, record.source_path, record.rows, record.shard_digest,
                     record.membership_dir, json.dumps(record.summary, sort_keys=True), record.note,
                     record.created_at, record.created_by),
                )
        except BaseException:
            if moved:
                shutil.rmtree(final, ignore_errors=True)
            raise

    def datasets(self) -> list[DatasetRecord]:
        rows = self.db.query(
            "SELECT name, version, source_path, row_count, shard_digest, membership_dir, summary, note,"
            " created_at, created_by FROM lineage_datasets ORDER BY name, id"
        )
        return [
            DatasetRecord(n, v, p, int(rc), sd, md, json.loads(s), note, ca, cb)
            for n, v, p, rc, sd, md, s, note, ca, cb in rows
        ]

    def membership(self, record: DatasetRecord) -> MembershipIndex:
        directory = self.store_root / record.membership_dir
        if not directory.is_dir():
            raise InputError(directory, None, f"the membership structure of dataset {record.ref} is missing "
                             "(was the store copied without its lineage/ directory?)")
        return MembershipIndex.open(directory)

    # -- models ------------------------------------------------------------
    def add_model(
        self,
        ref_text: str,
        trained_on: list[str] = (),
        bases: list[str] = (),
        card: Path | None = None,
        *,
        allow_unregistered: bool = False,
        note: str | None = None,
        actor: str | None = None,
    ) -> ModelRegistration:
        """Register a model version with the datasets it was trained on and the models it derives from."""
        ref = parse_ref(ref_text, "model")
        wanted = [("dataset", text, "option") for text in trained_on] + [("base", text, "option") for text in bases]
        card_lineage = read_model_card(card) if card is not None else None
        if card_lineage is not None:
            wanted += [("dataset", text, "card") for text in card_lineage.datasets]
            wanted += [("base", text, "card") for text in card_lineage.base_models]
        if not wanted and not allow_unregistered:
            raise ConfigError(f"model {ref}: no lineage given; pass --trained-on, --base or a --card that names "
                              "datasets or base_model (or --allow-unregistered to record a model of unknown lineage)")
        inputs, unregistered, resolved = self._resolve_inputs(ref, wanted)
        if unregistered and not allow_unregistered:
            listed = ", ".join(f"{'dataset' if i.kind == 'dataset' else 'base model'} {i.written}" for i in unregistered)
            raise ConfigError(f"model {ref}: not registered: {listed}; register them first "
                              "(safeset lineage dataset add / model add) or pass --allow-unregistered")
        model = ModelRecord(
            name=ref.name, version=ref.version,
            relation=card_lineage.relation if card_lineage else None,
            card_path=str(Path(card).resolve()) if card is not None else None,
            card_sha256=card_lineage.sha256 if card_lineage else None,
            note=note, created_at=_utc_now(), created_by=actor or default_actor(), inputs=inputs,
        )
        with self.db.transaction(lock_name="lineage"):
            self._refuse_existing("lineage_models", ref, "model")
            model_id = self.db.insert(
                "INSERT INTO lineage_models (name, version, relation, card_path, card_sha256, note, created_at,"
                " created_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (model.name, model.version, model.relation, model.card_path, model.card_sha256, model.note,
                 model.created_at, model.created_by),
            )
            for item in inputs:
                self.db.execute(
                    "INSERT INTO lineage_model_inputs (model_id, kind, ref_name, ref_version, written, origin)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (model_id, item.kind, item.ref.name, item.ref.version, item.written, item.origin),
                )
        if self.audit is not None:
            self.audit.append(model.created_by, "lineage.model.add", {
                **model.to_dict(), "unregistered": [str(i.ref) for i in unregistered],
            })
        return ModelRegistration(model, unregistered, resolved)

    def _resolve_inputs(self, model: Ref, wanted: list[tuple[str, str, str]]):
        registered = {
            "dataset": self._versions("lineage_datasets"),
            "base": self._versions("lineage_models"),
        }
        inputs: list[ModelInput] = []
        unregistered: list[ModelInput] = []
        resolved: list[tuple[str, Ref]] = []
        seen: set[tuple[str, Ref]] = set()
        for kind, text, origin in wanted:
            what = "dataset" if kind == "dataset" else "base model"
            ref = parse_ref(text, f"{what} reference", require_version=False)
            versions = registered[kind].get(ref.name, [])
            if ref.version is None and versions:
                ref = Ref(ref.name, versions[-1])
                resolved.append((text, ref))
            if kind == "base" and ref == model:
                raise ConfigError(f"model {model} cannot be its own base model")
            if (kind, ref) in seen:
                continue
            seen.add((kind, ref))
            item = ModelInput(kind, ref, text, origin)
            inputs.append(item)
            if ref.version not in versions:
                unregistered.append(item)
        return inputs, unregistered, resolved

    def _versions(self, table: str) -> dict[str, list[str]]:
        """name -> versions in registration order (the last is the latest)."""
        versions: dict[str, list[str]] = {}
        for name, version in self.db.query(f"SELECT name, version FROM {table} ORDER BY id"):
            versions.setdefault(name, []).append(version)
        return versions

    def models(self) -> list[ModelRecord]:
        models: dict[int, ModelRecord] = {}
        for row in self.db.query(
            "SELECT id, name, version, relation, card_path, card_sha256, note, created_at, created_by"
            " FROM lineage_models ORDER BY name, id"
        ):
            models[int(row[0])] = ModelRecord(*row[1:])
        for model_id, kind, name, version, written, origin in self.db.query(
            "SELECT model_id, kind, ref_name, ref_version, written, origin FROM lineage_model_inputs ORDER BY id"
        ):
            models[int(model_id)].inputs.append(ModelInput(kind, Ref(name, version), written, origin))
        return list(models.values())

    # -- helpers -----------------------------------------------------------
    def _refuse_existing(self, table: str, ref: Ref, what: str) -> None:
        row = self.db.query_one(f"SELECT created_at FROM {table} WHERE name = ? AND version = ?", (ref.name, ref.version))
        if row is not None:
            raise ConfigError(f"{what} {ref} is already registered (at {row[0]}); versions are immutable: "
                              "register a new version")


def _write_json(path: Path, data: dict) -> None:
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    temporary.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(temporary, path)
