"""The review queue's tables (database component "review"), one migration per schema step."""

from __future__ import annotations

from safeset.db import Migration

COMPONENT = "review"

MIGRATIONS = [
    Migration(
        1,
        """
        CREATE TABLE review_items (
            id {id},
            origin TEXT NOT NULL,
            status TEXT NOT NULL,
            run_id TEXT,
            dataset TEXT,
            shard TEXT,
            sample_key TEXT,
            sample_position {bigint},
            source_url TEXT,
            first_seen TEXT,
            digests TEXT NOT NULL,
            evidence TEXT NOT NULL,
            provenance TEXT NOT NULL,
            account_id TEXT,
            bytes_state TEXT NOT NULL,
            bytes_note TEXT,
            quarantine_ref TEXT,
            created_at TEXT NOT NULL,
            claimed_by TEXT,
            claimed_at TEXT,
            escalated_at TEXT,
            escalated_by TEXT,
            decision TEXT,
            decided_by TEXT,
            decided_at TEXT,
            purge_after TEXT
        );
        CREATE UNIQUE INDEX review_items_run_sample ON review_items (run_id, shard, sample_key);
        CREATE INDEX review_items_status ON review_items (status, id);
        CREATE INDEX review_items_bytes ON review_items (bytes_state, purge_after);
        CREATE TABLE review_decisions (
            id {id},
            item_id {bigint} NOT NULL REFERENCES review_items (id),
            decision TEXT NOT NULL,
            reviewer TEXT NOT NULL,
            note TEXT,
            decided_at TEXT NOT NULL,
            bank TEXT,
            bank_version {bigint},
            bank_values TEXT NOT NULL
        );
        CREATE INDEX review_decisions_item ON review_decisions (item_id)
        """,
    )
]
