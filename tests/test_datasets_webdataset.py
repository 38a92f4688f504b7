import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datasets_util import all_keys, regular, run_shard, sample_members, tiny_png, write_tar

from safeset.datasets.base import ColumnOverrides, ReadOptions, Shard
from safeset.datasets.webdataset import WebDatasetFormat
from safeset.errors import InputError

FMT = WebDatasetFormat()
FAILED = {3, 7}  # downloads that failed: parquet rows without tar members
ORPHAN = "000009999"  # a tar sample the parquet does not list


def key_of(i: int) -> str:
    return f"00000{i:04d}"


def url_of(i) -> str:
    return f"https://example.com/{i}.png"


def make_img2dataset_shard(root: Path, rows: int = 10, with_parquet=True, with_orphan=True,
                           stem="00000") -> Shard:
    members = []
    for i in range(rows):
        if i not in FAILED:
            members += sample_members(key_of(i), url_of(i), f"placeholder caption {i}", tiny_png(i))
    if with_orphan:
        members += sample_members(ORPHAN, "https://example.net/orphan.png", "orphan caption", tiny_png(99))
    write_tar(root / f"{stem}.tar", members)
    if with_parquet:
        table = pa.table({
            "key": [key_of(i) for i in range(rows)],
            "url": [url_of(i) for i in range(rows)],
            "caption": [f"placeholder caption {i}" for i in range(rows)],
            "status": ["failed_to_download" if i in FAILED else "success" for i in range(rows)],
            "error_message": ["timeout" if i in FAILED else None for i in range(rows)],
            "width": pa.array([None if i in FAILED else 8 for i in range(rows)], type=pa.int64()),
        })
        pq.write_table(table, root / f"{stem}.parquet", compression="snappy", row_group_size=4)
    (root / f"{stem}_stats.json").write_text(json.dumps({"count": rows, "successes": rows - len(FAILED)}))
    return Shard(root=root, relpath=f"{stem}.tar", format="webdataset")


def test_rows_follow_the_parquet_then_orphans(tmp_path):
    shard = make_img2dataset_shard(tmp_path)
    batches, _ = run_shard(FMT, shard, options=ReadOptions(batch_rows=4))
    assert all_keys(batches) == [key_of(i) for i in range(10)] + [ORPHAN]
    images = [img for b in batches for img in b.images]
    for i in range(10):
        assert images[i] == (None if i in FAILED else tiny_png(i))
    assert images[10] == tiny_png(99)
    assert all(e is None for b in batches for e in b.errors)
    table = pa.Table.from_batches([b.table for b in batches])
    assert table.column("url").to_pylist() == [url_of(i) for i in range(10)] + ["https://example.net/orphan.png"]
    assert table.column("caption").to_pylist()[-1] == "orphan caption"
    assert table.column("status").to_pylist()[-1] is None  # orphans: non-text columns null
    assert table.column("width").to_pylist()[-1] is None
    assert [len(b.positions) for b in batches] == [4, 4, 2, 1]


def test_without_sibling_parquet_rows_are_the_tar_samples(tmp_path):
    shard = make_img2dataset_shard(tmp_path, with_parquet=False)
    batches, _ = run_shard(FMT, shard)
    expected_keys = [key_of(i) for i in range(10) if i not in FAILED] + [ORPHAN]
    assert all_keys(batches) == expected_keys
    table = pa.Table.from_batches([b.table for b in batches])
    assert table.schema.names == ["key", "url", "caption"]
    assert table.column("key").to_pylist() == expected_keys
    assert table.column("url").to_pylist()[0] == url_of(0)
    assert table.column("caption").to_pylist()[1] == "placeholder caption 1"
    reader = FMT.open(shard, ReadOptions())
    assert (reader.columns.url, reader.columns.caption, reader.columns.key) == ("url", "caption", "key")
    reader.close()


def test_clean_copy_has_exactly_the_kept_members_verbatim(tmp_path):
    shard = make_img2dataset_shard(tmp_path / "in")
    removed = {key_of(2), key_of(3), ORPHAN}  # a sample, a failed download, the orphan

    def keep(batch):
        return np.array([k not in removed for k in batch.keys.to_pylist()])

    _, paths = run_shard(FMT, shard, tmp_path / "out", keep, ReadOptions(batch_rows=3))
    out_tar, out_parquet, out_stats = paths
    assert out_tar == tmp_path / "out" / "00000.tar"
    assert out_stats.read_bytes() == (tmp_path / "in" / "00000_stats.json").read_bytes()

    source = (tmp_path / "in" / "00000.tar").read_bytes()
    with tarfile.open(tmp_path / "in" / "00000.tar") as archive:
        kept_ranges = [source[m.offset:m.offset_data + -(-m.size // 512) * 512]
                       for m in archive.getmembers() if m.name.split(".")[0] not in removed]
    written = out_tar.read_bytes()
    assert written[: sum(map(len, kept_ranges))] == b"".join(kept_ranges)
    assert len(written) % 10240 == 0
    assert set(written[sum(map(len, kept_ranges)):]) == {0}
    with tarfile.open(out_tar) as archive:
        names = archive.getnames()
    assert {n.split(".")[0] for n in names} == {key_of(i) for i in range(10) if i not in FAILED} - removed

    table = pq.read_table(out_parquet)
    assert table.column("key").to_pylist() == [key_of(i) for i in range(10) if key_of(i) not in removed]
    assert table.schema.equals(pq.read_schema(tmp_path / "in" / "00000.parquet"), check_metadata=True)

    # the same decisions give the same bytes
    _, again = run_shard(FMT, shard, tmp_path / "again", keep, ReadOptions(batch_rows=5))
    for first, second in zip(paths, again):
        assert first.read_bytes() == second.read_bytes()


def test_partial_column_reads_still_write_full_parquet(tmp_path):
    shard = make_img2dataset_shard(tmp_path / "in")
    options = ReadOptions(all_columns=False)
    batches, paths = run_shard(FMT, shard, tmp_path / "out", None, options)
    assert batches[0].table.schema.names == ["key", "url", "caption"]
    assert batches[-1].table.schema.equals(batches[0].table.schema)  # the orphan batch too
    assert batches[-1].keys.to_pylist() == [ORPHAN]
    assert pq.read_table(paths[1]).equals(pq.read_table(tmp_path / "in" / "00000.parquet"))


def test_all_removed_gives_empty_tar_and_parquet(tmp_path):
    shard = make_img2dataset_shard(tmp_path / "in")
    _, (out_tar, out_parquet, _) = run_shard(FMT, shard, tmp_path / "out",
                                             lambda b: np.zeros(b.num_rows, bool))
    assert out_tar.read_bytes() == bytes(10240)
    with tarfile.open(out_tar) as archive:
        assert archive.getmembers() == []
    assert pq.read_table(out_parquet).num_rows == 0
    # the cleaned copy is itself a readable shard
    again = Shard(tmp_path / "out", "00000.tar", "webdataset")
    batches, _ = run_shard(FMT, again)
    assert batches == []


def test_oversized_image_is_not_read_and_flagged(tmp_path):
    shard = make_img2dataset_shard(tmp_path, with_parquet=False, with_orphan=False)
    size = len(tiny_png(0))
    batches, _ = run_shard(FMT, shard, options=ReadOptions(max_member_bytes=size - 1))
    assert batches[0].images[0] is None
    assert batches[0].errors[0] == f"image member '000000000.png' is {size} bytes, over the limit {size - 1}"


def test_truncated_last_member_is_a_row_error(tmp_path):
    shard = make_img2dataset_shard(tmp_path, with_parquet=False, with_orphan=False)
    members = [regular("000000000.txt", b"caption"), regular("000000000.jpg", b"\xff\xd8" + bytes(3000))]
    write_tar(shard.path, members)
    data = shard.path.read_bytes()
    with tarfile.open(shard.path) as archive:
        image = archive.getmember("000000000.jpg")
    shard.path.write_bytes(data[: image.offset_data + 1000])
    batches, _ = run_shard(FMT, shard)
    assert batches[0].images == [None]
    assert "truncated (1000 of 3002 bytes present)" in batches[0].errors[0]


def test_two_image_members_mark_the_row_unchecked(tmp_path):
    path = write_tar(tmp_path / "00000.tar", [regular("000000000.jpg", b"one"),
                                               regular("000000000.png", b"two")])
    batches, _ = run_shard(FMT, Shard(tmp_path, "00000.tar", "webdataset"))
    assert batches[0].images == [b"one"]
    assert "2 image members" in batches[0].errors[0]
    assert path.exists()


def hostile(info_setup) -> list:
    info = tarfile.TarInfo("placeholder")
    info.mtime = 0
    data = info_setup(info)
    return [regular("000000000.jpg", b"fine"), (info, data)]


def _abs(info):
    info.name, info.size = "/tmp/evil.jpg", 3
    return b"bad"


def _dotdot(info):
    info.name, info.size = "../evil.jpg", 3
    return b"bad"


def _symlink(info):
    info.name, info.type, info.linkname = "000000001.jpg", tarfile.SYMTYPE, "/etc/passwd"
    return None


def _hardlink(info):
    info.name, info.type, info.linkname = "000000001.jpg", tarfile.LNKTYPE, "000000000.jpg"
    return None


def _fifo(info):
    info.name, info.type = "000000001.jpg", tarfile.FIFOTYPE
    return None


def _device(info):
    info.name, info.type = "000000001.jpg", tarfile.CHRTYPE
    return None


def _duplicate(info):
    info.name, info.size = "000000000.jpg", 3
    return b"dup"


@pytest.mark.parametrize("setup, reason", [
    (_abs, "absolute"), (_dotdot, "'..'"), (_symlink, "symbolic link"), (_hardlink, "hard link"),
    (_fifo, "fifo"), (_device, "device"), (_duplicate, "duplicate"),
])
def test_hostile_members_refuse_the_shard(tmp_path, setup, reason):
    write_tar(tmp_path / "00000.tar", hostile(setup))
    with pytest.raises(InputError) as caught:
        FMT.open(Shard(tmp_path, "00000.tar", "webdataset"), ReadOptions())
    assert reason in caught.value.reason
    assert caught.value.position.startswith("member '")
    assert caught.value.position.endswith("at byte 1024")
    assert caught.value.path.endswith("00000.tar")


def test_truncated_tar_header(tmp_path):
    path = write_tar(tmp_path / "00000.tar", [regular("000000000.jpg", b"x" * 100),
                                               regular("000000000.txt", b"caption")])
    path.write_bytes(path.read_bytes()[: 1024 + 200])  # cut inside the second header
    with pytest.raises(InputError) as caught:
        FMT.open(Shard(tmp_path, "00000.tar", "webdataset"), ReadOptions())
    assert caught.value.position == "byte 1024"
    assert "truncated" in caught.value.reason


def test_corrupt_later_header_is_not_passed_silently(tmp_path):
    path = write_tar(tmp_path / "00000.tar", [regular("000000000.jpg", b"x" * 100),
                                               regular("000000000.txt", b"caption")])
    data = bytearray(path.read_bytes())
    data[1024 + 148:1024 + 156] = b"9999999\x00"  # break the second header's checksum
    path.write_bytes(bytes(data))
    with pytest.raises(InputError) as caught:
        FMT.open(Shard(tmp_path, "00000.tar", "webdataset"), ReadOptions())
    assert caught.value.position == "byte 1024"


def test_not_a_tar(tmp_path):
    (tmp_path / "00000.tar").write_bytes(b"\x1f\x8b" + bytes(2000))
    with pytest.raises(InputError) as caught:
        FMT.open(Shard(tmp_path, "00000.tar", "webdataset"), ReadOptions())
    assert caught.value.position == "byte 0"


def test_sibling_parquet_without_key_column(tmp_path):
    shard = make_img2dataset_shard(tmp_path, with_parquet=False)
    pq.write_table(pa.table({"url": ["https://example.com/a"]}), tmp_path / "00000.parquet")
    with pytest.raises(InputError, match="no key column"):
        FMT.open(shard, ReadOptions())
    reader = FMT.open(shard, ReadOptions(columns=ColumnOverrides(key="url")))
    assert reader.num_rows == 1 + 9  # the parquet row, then every tar sample as an orphan
    reader.close()


def test_member_header_with_long_name_is_copied_whole(tmp_path):
    long_dir = "d" * 120
    members = [regular(f"{long_dir}/000000000.jpg", b"img"), regular(f"{long_dir}/000000000.txt", b"cap")]
    write_tar(tmp_path / "in" / "00000.tar", members)
    shard = Shard(tmp_path / "in", "00000.tar", "webdataset")
    batches, [out_tar] = run_shard(FMT, shard, tmp_path / "out")
    assert all_keys(batches) == [f"{long_dir}/000000000"]
    with tarfile.open(out_tar) as archive:
        assert archive.getnames() == [m[0].name for m in members]
        assert archive.extractfile(archive.getmembers()[0]).read() == b"img"


def test_global_pax_header_is_kept(tmp_path):
    path = tmp_path / "in" / "00000.tar"
    path.parent.mkdir()
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT, pax_headers={"comment": "benign"}) as archive:
        for info, data in [regular("000000000.jpg", b"a"), regular("000000001.jpg", b"b")]:
            archive.addfile(info, io.BytesIO(data))
    shard = Shard(tmp_path / "in", "00000.tar", "webdataset")
    _, [out_tar] = run_shard(FMT, shard, tmp_path / "out", lambda b: b.positions == 1)
    with tarfile.open(out_tar) as archive:
        assert archive.getnames() == ["000000001.jpg"]
        assert archive.pax_headers == {"comment": "benign"}
