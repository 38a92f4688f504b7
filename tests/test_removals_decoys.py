"""Decoys: exact counts per identifier pattern, only kept rows, reproducible, bounded ordering."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from safeset.api import BankStore, clean
from safeset.errors import ConfigError, InputError
from safeset.removals.decoys import MD5, URL, pattern_of
from safeset.removals.publish import publish_list, read_run
from safeset.removals.shuffle import ContentShuffle
from safeset.signals.url import canonical_url

SHARDS, ROWS = 3, 300


def url_of(shard: int, row: int) -> str:
    return f"https://img{shard}.example.com/{row}/photo.jpg"


def md5_of(shard: int, row: int) -> str:
    return hashlib.md5(f"image {shard} {row}".encode()).hexdigest()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A parquet dataset where some rows lack a URL or an md5, cleaned by URL and image banks."""
    root = tmp_path_factory.mktemp("decoys")
    dataset = root / "data"
    dataset.mkdir()
    for shard in range(SHARDS):
        urls = [None if row % 10 == 3 else url_of(shard, row) for row in range(ROWS)]
        md5s = [None if row % 7 == 2 else md5_of(shard, row) for row in range(ROWS)]
        pq.write_table(pa.table({"URL": urls, "md5": md5s}), dataset / f"part-{shard}.parquet")
    url_hits = [(s, r) for s in range(SHARDS) for r in (2, 9, 16, 40, 41)]  # rows 2, 9, 16: no md5
    md5_hits = [(s, r) for s in range(SHARDS) for r in (3, 13, 50)]  # rows 3, 13: no URL
    (root / "urls.txt").write_text("".join(hashlib.md5(url_of(*h).encode()).hexdigest() + "\n" for h in url_hits))
    (root / "md5.txt").write_text("".join(md5_of(*h) + "\n" for h in md5_hits))
    store = BankStore(root / "store")
    store.import_file("URLS", root / "urls.txt", signal_type="url_md5")
    store.import_file("IMAGES", root / "md5.txt", signal_type="md5")
    result = clean(dataset, root / "clean", store=store.root, workers=1)
    assert result.exit_code == 0
    return root


def dataset_rows(root) -> dict[str, tuple[int, int]]:
    """url_sha256 or md5 of every dataset row -> (shard, row)."""
    found = {}
    for shard in range(SHARDS):
        for row in range(ROWS):
            if row % 10 != 3:
                found[hashlib.sha256(canonical_url(url_of(shard, row)).encode()).hexdigest()] = (shard, row)
            if row % 7 != 2:
                found[md5_of(shard, row)] = (shard, row)
    return found


def test_decoys_copy_the_identifier_patterns_of_real_entries_exactly(run, tmp_path):
    listed = tmp_path / "list.parquet"
    result = publish_list(run / "clean", listed, decoys=4, seed="secret", workers=1)
    table = pq.read_table(listed)
    withheld = pq.read_table(run / "clean" / "_safeset" / "removed.parquet")
    real_patterns = pattern_of(withheld)
    assert sorted(set(real_patterns.tolist())) == [URL, MD5, URL | MD5]
    assert result.real == withheld.num_rows and result.decoys == 4 * withheld.num_rows
    list_patterns = pattern_of(table)
    for pattern in (URL, MD5, URL | MD5):
        assert (list_patterns == pattern).sum() == 5 * (real_patterns == pattern).sum()
    assert table.column("image_sha256").null_count == table.num_rows  # no real entry has one

    where = dataset_rows(run)
    withheld_rows = {(int(s.split("-")[1].split(".")[0]), p) for s, p in
                     zip(withheld.column("source").to_pylist(), withheld.column("position").to_pylist())}
    listed_rows = set()
    for entry in table.to_pylist():
        places = {where[v] for v in (entry["url_sha256"], entry["image_md5"]) if v is not None}
        assert len(places) == 1, "every identifier of an entry names the same dataset row"
        listed_rows |= places
    decoys = listed_rows - withheld_rows
    assert len(decoys) == result.decoys and withheld_rows <= listed_rows


def test_the_seed_decides_the_draw(run, tmp_path):
    tables = []
    for n, seed in enumerate(("one", "one", "two")):
        publish_list(run / "clean", tmp_path / f"{n}.parquet", decoys=2, seed=seed, workers=1)
        tables.append(pq.read_table(tmp_path / f"{n}.parquet"))
    assert tables[0].equals(tables[1]) and not tables[0].equals(tables[2])
    unseeded = [publish_list(run / "clean", tmp_path / f"r{n}.parquet", decoys=2, workers=1) for n in range(2)]
    assert not pq.read_table(unseeded[0].path).equals(pq.read_table(unseeded[1].path))


def test_too_many_decoys_for_the_dataset_is_refused(run, tmp_path):
    with pytest.raises(ConfigError, match="lower --decoys"):
        publish_list(run / "clean", tmp_path / "list.parquet", decoys=200, seed="s", workers=1)
    assert not (tmp_path / "list.parquet").exists()


def test_a_changed_dataset_or_an_unfinished_run_is_refused(run, tmp_path):
    copy = tmp_path / "moved"
    copy.mkdir()
    for path in (run / "data").iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    publish_list(run / "clean", tmp_path / "ok.parquet", decoys=1, seed="s", dataset=copy, workers=1)
    pq.write_table(pa.table({"URL": ["https://example.com/x"], "md5": [None]}, schema=pq.read_schema(copy / "part-0.parquet")),
                   copy / "part-0.parquet")
    with pytest.raises(InputError, match="differs from the file the run read"):
        publish_list(run / "clean", tmp_path / "no.parquet", decoys=1, seed="s", dataset=copy, workers=1)

    broken = tmp_path / "broken"
    (broken / "_safeset").mkdir(parents=True)
    record = json.loads((run / "clean" / "_safeset" / "run.json").read_text())
    record["failed_shards"] = [{"relpath": "part-1.parquet", "error": "corrupt"}]
    (broken / "_safeset" / "run.json").write_text(json.dumps(record))
    with pytest.raises(ConfigError, match="failed shards"):
        read_run(broken)


def test_shuffle_order_depends_on_content_not_on_arrival_or_memory(tmp_path):
    rows = {"url_sha256": [f"{n:064x}" for n in range(3000)], "image_sha256": [None] * 3000,
            "image_md5": [None] * 3000, "key": [str(n) for n in range(3000)]}
    table = pa.table(rows)
    orders = []
    for memory_rows, arrival in ((1 << 20, table), (500, table), (500, table.take(np.arange(2999, -1, -1)))):
        shuffle = ContentShuffle(b"seed", tmp_path / f"s{len(orders)}", memory_rows=memory_rows)
        for start in range(0, 3000, 700):
            shuffle.add(arrival.slice(start, 700))
        orders.append(pa.Table.from_batches(list(shuffle.tables())).column("key").to_pylist())
    assert orders[0] == orders[1] == orders[2]
    assert sorted(orders[0], key=int) == rows["key"] and orders[0] != rows["key"]
