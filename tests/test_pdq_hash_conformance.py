"""`exact` reproduces the reference PDQ bits on every conformance image; `fast` stays close."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pdq_hash_util import FIXTURES, expected_rows
from safeset.pdq import hamming, hash_image
from safeset.pdq.core import dct_from_luma, hash_bytes_from_dct

ROWS = expected_rows()


def test_fixture_copy_is_complete_and_carries_its_licence_notice():
    notice = (FIXTURES / "README.md").read_text()
    assert "Meta Platforms" in notice and "Redistribution and use" in notice
    assert len(ROWS) == 42
    for row in ROWS:
        assert (FIXTURES / row["path"]).is_file(), row["path"]


@pytest.mark.parametrize("row", ROWS, ids=[row["path"] for row in ROWS])
def test_exact_matches_the_reference_bit_for_bit(row):
    digest, quality = hash_image(FIXTURES / row["path"], "exact")
    assert digest == row["pdq_pdqhash_pillow"]
    assert quality == int(row["quality"])


def test_bytes_and_pil_inputs_hash_like_paths():
    row = next(r for r in ROWS if r["path"].endswith("q0746.jpg"))
    path = FIXTURES / row["path"]
    assert hash_image(path.read_bytes()).hex == row["pdq_pdqhash_pillow"]
    with Image.open(path) as image:
        assert hash_image(image).hex == row["pdq_pdqhash_pillow"]
    assert hash_image(str(path)) == hash_image(path)


@pytest.mark.parametrize(
    "name",
    ["bridge-mods/aaa-orig.jpg", "bridge-mods/shrink-a-lot.jpg", "misc-images/wee.jpg",
     "misc-images/small.jpg", "reg-test-input/labelme-subset/q0291.jpg", "reg-test-input/pen-and-coaster.png"],
)
def test_numpy_filter_model_at_full_scale_matches_the_reference(name):
    # The weights fast mode uses, at scale 1, are the reference's own filter.
    row = next(r for r in ROWS if r["path"] == name)
    with Image.open(FIXTURES / name) as image:
        rgb = np.asarray(image.convert("RGB"))
    luma = (rgb[:, :, 0] * 0.299 + rgb[:, :, 1] * 0.587 + rgb[:, :, 2] * 0.114).astype(np.float32)
    dct, quality = dct_from_luma(luma, luma.shape[0], luma.shape[1], scale=1)
    assert hash_bytes_from_dct(dct).hex() == row["pdq_pdqhash_pillow"]
    assert quality == int(row["quality"])


def test_fast_is_within_the_conformance_distance_on_good_quality_fixtures():
    for row in ROWS:
        if int(row["quality"]) < 80:
            continue
        fast, quality = hash_image(FIXTURES / row["path"], "fast")
        assert hamming(fast, row["pdq_pdqhash_pillow"]) <= 10, row["path"]
        assert abs(quality - int(row["quality"])) <= 5, row["path"]
