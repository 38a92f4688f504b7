"""The Python API runs the same job as the CLI."""

import pyarrow as pa
import pyarrow.parquet as pq

from safeset.api import BankStore, clean, scan


def test_api_scan_and_clean(tmp_path):
    store = BankStore(tmp_path / "store")
    (tmp_path / "urls.txt").write_text("https://example.net/bad.jpg\n")
    store.import_file("LIST", tmp_path / "urls.txt", signal_type="url")
    data = tmp_path / "data"
    data.mkdir()
    pq.write_table(pa.table({"url": ["https://example.net/ok.jpg", "HTTPS://EXAMPLE.NET:443/bad.jpg"]}), data / "p.parquet")
    scanned = scan(data, tmp_path / "scan", store=store.root, workers=1)
    assert scanned.exit_code == 0 and scanned.run["counts"]["removed_rows"] == 1
    cleaned = clean(data, tmp_path / "clean", store=store.root, workers=1)
    assert pq.read_table(tmp_path / "clean" / "p.parquet").column("url").to_pylist() == ["https://example.net/ok.jpg"]
    assert cleaned.report_path.exists()
