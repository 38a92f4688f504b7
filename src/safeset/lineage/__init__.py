"""Dataset and model lineage: which trained models saw samples that were later removed.

- `LineageRegistry` registers dataset versions (fingerprinted: row count,
  shard checksums, a membership structure of their URL and image digests)
  and model versions (the datasets they were trained on, their base models).
- `load_listed_samples` reads clean runs' records and removal lists.
- `trace_taint` counts listed samples per dataset and follows them to every
  model trained on, or descended from, a dataset that held any.
"""

from safeset.lineage.refs import Ref, parse_ref
from safeset.lineage.registry import DatasetRecord, LineageRegistry, ModelRecord
from safeset.lineage.sources import ListedSamples, load_listed_samples
from safeset.lineage.taint import TaintReport, trace_taint

__all__ = [
    "DatasetRecord",
    "LineageRegistry",
    "ListedSamples",
    "ModelRecord",
    "Ref",
    "TaintReport",
    "load_listed_samples",
    "parse_ref",
    "trace_taint",
]
