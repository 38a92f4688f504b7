"""Progress of multi-stage work (index a list, then clean; draw decoys in two passes).

The jobs' `Progress` (start, advance, shard_finished) shows one stage; a
display that also has `stage(label)` is told when the next one begins.
"""

from __future__ import annotations


def stage(progress, label: str, shards: int | None, rows: int | None) -> None:
    """Name the stage that begins now; start its count unless the job will (`shards` None)."""
    if progress is None:
        return
    name_stage = getattr(progress, "stage", None)
    if name_stage is not None:
        name_stage(label)
    if shards is not None:
        progress.start(shards, rows)
