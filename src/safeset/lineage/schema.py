"""The lineage registry's tables (component "lineage" in `schema_migrations`).

A dataset version's row holds its fingerprint summary; the membership
structure itself is a file set under the store (`lineage/datasets/...`),
named by `membership_dir`. A model's inputs keep references as written
(name and version), resolved against registered versions when traced, so a
dataset registered after the model that used it is still found.
"""

from __future__ import annotations

from safeset.db import Migration

COMPONENT = "lineage"

MIGRATIONS = [
    Migration(
        1,
        "CREATE TABLE lineage_datasets ("
        " id {id},"
        " name TEXT NOT NULL,"
        " version TEXT NOT NULL,"
        " source_path TEXT NOT NULL,"
        " row_count {bigint} NOT NULL,"
        " shard_digest TEXT NOT NULL,"
        " membership_dir TEXT NOT NULL,"
        " summary TEXT NOT NULL,"
        " note TEXT,"
        " created_at TEXT NOT NULL,"
        " created_by TEXT NOT NULL,"
        " UNIQUE (name, version));"
        "CREATE TABLE lineage_models ("
        " id {id},"
        " name TEXT NOT NULL,"
        " version TEXT NOT NULL,"
        " relation TEXT,"
        " card_path TEXT,"
        " card_sha256 TEXT,"
        " note TEXT,"
        " created_at TEXT NOT NULL,"
        " created_by TEXT NOT NULL,"
        " UNIQUE (name, version));"
        "CREATE TABLE lineage_model_inputs ("
        " id {id},"
        " model_id {bigint} NOT NULL REFERENCES lineage_models (id) ON DELETE CASCADE,"
        " kind TEXT NOT NULL CHECK (kind IN ('dataset', 'base')),"
        " ref_name TEXT NOT NULL,"
        " ref_version TEXT,"
        " written TEXT NOT NULL,"
        " origin TEXT NOT NULL CHECK (origin IN ('option', 'card')));"
        "CREATE INDEX lineage_model_inputs_model ON lineage_model_inputs (model_id)",
    )
]
