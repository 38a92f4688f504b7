"""`safeset hash`: digests and PDQ per file, JSON lines, failures reported and counted."""

from __future__ import annotations

import hashlib
import io
import json

import typer
from typer.testing import CliRunner

from pdq_hash_util import encode, photo_like
from safeset.pdq import hash_image
from safeset.pdq.cli_hash import EXIT_SOME_FAILED, hash_command, run_hash

JPEG = encode(photo_like(9, 700, 500), quality=88)


def _app() -> typer.Typer:
    # Registered the way cli.py will: app.command("hash")(hash_command).
    app = typer.Typer()
    app.command("hash")(hash_command)

    @app.callback()
    def main() -> None:
        """safeset"""

    return app


def test_text_output_has_a_header_and_a_row_per_file(tmp_path):
    first, second = tmp_path / "a.jpg", tmp_path / "b.png"
    first.write_bytes(JPEG)
    second.write_bytes(encode(photo_like(10, 300, 200), "PNG"))
    out, err = io.StringIO(), io.StringIO()
    assert run_hash([first, second], "exact", False, out, err) == 0
    lines = out.getvalue().splitlines()
    assert lines[0] == "path\tmd5\tsha1\tsha256\tpdq\tquality"
    path, md5, sha1, sha256, pdq, quality = lines[1].split("\t")
    assert path == str(first)
    assert md5 == hashlib.md5(JPEG).hexdigest()
    assert sha1 == hashlib.sha1(JPEG).hexdigest()
    assert sha256 == hashlib.sha256(JPEG).hexdigest()
    assert (pdq, int(quality)) == hash_image(JPEG)
    assert len(lines) == 3 and err.getvalue() == ""


def test_json_lines_and_fast_mode(tmp_path):
    path = tmp_path / "a.jpg"
    path.write_bytes(JPEG)
    out = io.StringIO()
    assert run_hash([path], "fast", True, out, io.StringIO()) == 0
    (row,) = [json.loads(line) for line in out.getvalue().splitlines()]
    assert list(row) == ["path", "md5", "sha1", "sha256", "pdq", "quality"]
    assert (row["pdq"], row["quality"]) == hash_image(JPEG, "fast")
    assert row["sha256"] == hashlib.sha256(JPEG).hexdigest()


def test_bad_files_are_reported_and_the_rest_still_hashed(tmp_path):
    good, broken, missing = tmp_path / "good.jpg", tmp_path / "broken.jpg", tmp_path / "missing.jpg"
    good.write_bytes(JPEG)
    broken.write_bytes(b"not really a jpeg")
    out, err = io.StringIO(), io.StringIO()
    code = run_hash([broken, missing, good], "exact", True, out, err)
    assert code == EXIT_SOME_FAILED == 3
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [row["path"] for row in rows] == [str(broken), str(missing), str(good)]
    assert rows[0]["md5"] == hashlib.md5(b"not really a jpeg").hexdigest()  # digests still there
    assert rows[0]["pdq"] is None and "cannot decode image" in rows[0]["error"]
    assert rows[1]["md5"] is None and rows[1]["error"] == "no such file"
    assert rows[2]["pdq"] == hash_image(JPEG).hex and "error" not in rows[2]
    messages = err.getvalue().splitlines()
    assert messages[0].startswith(f"error: {broken}: cannot decode image")
    assert messages[1] == f"error: {missing}: no such file"


def test_text_row_for_a_failed_file_uses_dashes(tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff")
    out = io.StringIO()
    assert run_hash([broken], "fast", False, out, io.StringIO()) == 3
    assert out.getvalue().splitlines()[1].split("\t")[4:] == ["-", "-"]


def test_registered_command_parses_options_and_exits_with_the_code(tmp_path):
    good, broken = tmp_path / "good.jpg", tmp_path / "broken.jpg"
    good.write_bytes(JPEG)
    broken.write_bytes(b"nope")
    runner = CliRunner()
    result = runner.invoke(_app(), ["hash", str(good), "--mode", "fast", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["pdq"] == hash_image(JPEG, "fast").hex
    result = runner.invoke(_app(), ["hash", str(good), str(broken)])
    assert result.exit_code == 3
    result = runner.invoke(_app(), ["hash", str(good), "--mode", "quick"])
    assert result.exit_code == 2
    result = runner.invoke(_app(), ["hash"])
    assert result.exit_code == 2


def test_registering_the_command_loads_no_image_libraries():
    import subprocess
    import sys

    probe = "import sys, safeset.pdq.cli_hash; print(sorted({'numpy', 'PIL', 'pdqhash'} & set(sys.modules)))"
    output = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "[]"
