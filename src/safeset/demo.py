"""`safeset demo`: the whole job end to end on generated, benign data.

Generates a LAION-style parquet dataset and img2dataset webdataset shards with
drawn images, imports demo banks that "know" a few rows, cleans both datasets
and prints the summaries and where the reports are.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from rich.console import Console
from rich.table import Table

from safeset.banks.store import BankStore
from safeset.demo_data import generate_demo
from safeset.errors import ConfigError
from safeset.jobs.run import JobSpec, run_job

MARKER = ".safeset-demo"
BANK_NAMES = {
    "urls.txt": "DEMO_URLS",
    "url_md5.txt": "DEMO_URL_MD5",
    "image_md5.csv": "DEMO_IMAGE_MD5",
    "domains.txt": "DEMO_DOMAINS",
    "terms.txt": "DEMO_TERMS",
    "pdq.txt": "DEMO_PDQ",
}


def _fresh_dir(out: Path) -> None:
    if out.exists() and any(out.iterdir()):
        if not (out / MARKER).exists():
            raise ConfigError(f"{out} is not empty and was not made by `safeset demo`; choose another --out")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("made by safeset demo; safe to delete\n")


def run_demo(out: Path, console: Console | None = None, policy: str = "relaion-research") -> int:
    """Returns the worst exit code of the demo's runs."""
    console = console or Console()
    _fresh_dir(out)
    data = generate_demo(out / "data")
    store = BankStore(out / "store")
    for file_name, path in sorted(data.banks.items()):
        result = store.import_file(BANK_NAMES[file_name], path, signal_type=data.bank_types[file_name])
        info = result.to_dict()
        console.print(f"imported {info['accepted']:>3} {data.bank_types[file_name]:<8} entries into {BANK_NAMES[file_name]}")
    exit_code = 0
    table = Table(title=f"safeset demo (policy {policy})")
    for column in ("dataset", "input", "kept", "removed", "review", "report"):
        table.add_column(column)
    for name, dataset in (("laion", data.laion_dir), ("images", data.images_dir)):
        spec = JobSpec(command="clean", dataset=dataset, out=out / f"{name}-clean", store_root=out / "store", policy=policy)
        result = run_job(spec)
        counts = result.run["counts"]
        table.add_row(
            f"{name} ({result.run['dataset']['format']})",
            str(counts["input_rows"]),
            str(counts["kept_rows"]),
            str(counts["removed_rows"]),
            str(counts["review_rows"]),
            str(result.report_path),
        )
        exit_code = max(exit_code, result.exit_code)
    console.print(table)
    console.print(f"reports: {out / 'laion-clean/_safeset/report.html'} and {out / 'images-clean/_safeset/report.html'}")
    return exit_code
