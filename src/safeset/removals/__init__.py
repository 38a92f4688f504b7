"""Removal lists: publish what a run withheld, diff two releases, apply a list to a copy.

    from safeset.removals import apply_list, diff_list, publish_list, read_removal_list

    publish_list("/data/laion-clean", "removals.parquet", decoys=10, dataset_name="laion-5b@2024-08")
    diff_list("/data/laion-old", "/data/relaion", "diff.parquet")
    result = apply_list("removals.parquet", "/data/my-copy", "/data/my-copy-clean", match=("url", "image"))
    metadata, batches = read_removal_list("removals.parquet")

The file format is described in `safeset.removals.listfile` and docs/removal-lists.md.
"""

from safeset.removals.apply import apply_list
from safeset.removals.diff import diff_list
from safeset.removals.listfile import COLUMNS, METADATA_KEY, read_removal_list
from safeset.removals.publish import publish_list

__all__ = ["COLUMNS", "METADATA_KEY", "apply_list", "diff_list", "publish_list", "read_removal_list"]
