"""PDQ in scan/clean: re-encoded and resized copies of known (benign, drawn)
images are matched, distance recorded; undecodable images go to review."""

from __future__ import annotations

import io
import json
import tarfile

from PIL import Image

from drawn_images import drawn_image, jpeg
from e2e_util import removed_rows, safeset
from safeset.pdq import hash_image


def write_tar(path, samples: dict[str, bytes]) -> None:
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for key, image in samples.items():
            for name, data in ((f"{key}.jpg", image), (f"{key}.json", json.dumps({"url": f"https://example.com/{key}.jpg"}).encode())):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


def test_pdq_matches_transformed_copies_and_reviews_undecodable(tmp_path):
    known, rotated_known = drawn_image(1), drawn_image(2)
    samples = {
        "000000000": jpeg(drawn_image(10)),
        "000000001": jpeg(known, 95),
        "000000002": jpeg(drawn_image(11)),
        "000000003": jpeg(rotated_known.transpose(Image.Transpose.ROTATE_90)),
        "000000004": b"\xff\xd8\xff not really a jpeg",
        "000000005": jpeg(Image.new("RGB", (300, 300), (120, 120, 120))),  # flat: quality < 50, no PDQ signal
    }
    data = tmp_path / "wds"
    data.mkdir()
    write_tar(data / "00000.tar", samples)
    # the bank knows smaller, re-encoded copies (what a hotline would have hashed)
    bank = tmp_path / "pdq.txt"
    known_copy = known.resize((320, 240)).convert("RGB")
    bank_hashes = [hash_image(jpeg(known_copy, 70))[0], hash_image(jpeg(rotated_known, 75))[0]]
    bank.write_text("".join(f"pdq {h}\n" for h in bank_hashes))
    store = tmp_path / "store"
    safeset("bank", "import", "PERCEPTUAL", bank, "--store", store)

    out = tmp_path / "plain"
    safeset("clean", data, "--out", out, "--store", store)
    rows = {r["key"]: r for r in removed_rows(out)}
    assert set(rows) == {"000000001", "000000004"}
    match = rows["000000001"]["reasons"][0]
    assert match["signal_type"] == "pdq" and match["bank"] == "PERCEPTUAL" and 0 <= match["distance"] <= 31
    assert rows["000000004"]["action"] == "review" and rows["000000004"]["reasons"][0]["signal_type"] == "unchecked"
    with tarfile.open(out / "00000.tar") as cleaned:
        assert {m.name.split(".")[0] for m in cleaned.getmembers()} == {"000000000", "000000002", "000000003", "000000005"}

    out = tmp_path / "dihedral"
    safeset("scan", data, "--out", out, "--store", store, "--dihedral", "--pdq-mode", "exact")
    assert {r["key"] for r in removed_rows(out) if r["action"] == "remove"} == {"000000001", "000000003"}


def test_pdq_threshold_comes_from_the_policy(tmp_path):
    known = drawn_image(5)
    data = tmp_path / "wds"
    data.mkdir()
    write_tar(data / "00000.tar", {"000000000": jpeg(known.resize((500, 375)), 60)})
    bank = tmp_path / "pdq.txt"
    bank.write_text(hash_image(jpeg(known, 95))[0] + "\n")
    store = tmp_path / "store"
    safeset("bank", "import", "P", bank, "--type", "pdq", "--store", store)
    out = tmp_path / "default"
    safeset("scan", data, "--out", out, "--store", store)
    (hit,) = removed_rows(out)
    distance = hit["reasons"][0]["distance"]
    assert distance > 0, "the copy is re-encoded and resized, not identical"
    strict = tmp_path / "strict.toml"
    strict.write_text(f'pdq_threshold = {distance - 1}\n[[rules]]\nname = "any"\naction = "remove"\nsignal_types = ["*"]\n')
    out = tmp_path / "strict"
    safeset("scan", data, "--out", out, "--store", store, "--policy", strict)
    assert removed_rows(out) == []
