"""Dihedral variants from one DCT: same bits as Meta's C++, and they name the right orientations."""

from __future__ import annotations

import numpy as np
import pdqhash
import pytest
from PIL import Image

from pdq_hash_util import FIXTURES, expected_rows, photo_like
from safeset.pdq import DIHEDRAL_NAMES, hamming, hash_image, hash_image_dihedral
from safeset.pdq.dihedral import dihedral_dcts

DIH = "reg-test-input/dih/"
# Fixture file for each orientation of bridge-1-original.jpg, in DIHEDRAL_NAMES order.
DIH_FILES = [
    "bridge-1-original.jpg",
    "bridge-2-rotate-90.jpg",
    "bridge-3-rotate-180.jpg",
    "bridge-4-rotate-270.jpg",
    "bridge-5-flipx.jpg",
    "bridge-6-flipy.jpg",
    "bridge-7-flip-plus-1.jpg",
    "bridge-8-flip-minus-1.jpg",
]
TRANSPOSES = {
    "rotate90": Image.Transpose.ROTATE_90,
    "rotate180": Image.Transpose.ROTATE_180,
    "rotate270": Image.Transpose.ROTATE_270,
    "flip_x": Image.Transpose.FLIP_TOP_BOTTOM,
    "flip_y": Image.Transpose.FLIP_LEFT_RIGHT,
    "flip_plus1": Image.Transpose.TRANSPOSE,
    "flip_minus1": Image.Transpose.TRANSVERSE,
}


def _vector_hex(bits: np.ndarray) -> str:
    return np.packbits(bits.astype(np.uint8)).tobytes().hex()


@pytest.mark.parametrize(
    "name", ["bridge-mods/aaa-orig.jpg", "reg-test-input/pen-and-coaster.png", "misc-images/wee.jpg"]
)
def test_exact_variants_equal_meta_compute_dihedral(name):
    with Image.open(FIXTURES / name) as image:
        rgb = np.asarray(image.convert("RGB"))
    vectors, quality = pdqhash.compute_dihedral(rgb)
    result = hash_image_dihedral(FIXTURES / name, "exact")
    assert result.hashes == tuple(_vector_hex(v) for v in vectors)
    assert result.quality == quality


def test_first_variant_is_the_plain_hash():
    row = next(r for r in expected_rows() if r["path"] == DIH + DIH_FILES[0])
    result = hash_image_dihedral(FIXTURES / row["path"])
    assert result.hashes[0] == row["pdq_pdqhash_pillow"]
    assert result.by_name()["original"] == row["pdq_pdqhash_pillow"]
    assert list(result.by_name()) == list(DIHEDRAL_NAMES)


def test_variants_match_the_rotated_fixture_files():
    expected = {r["path"]: r["pdq_pdqhash_pillow"] for r in expected_rows()}
    variants = hash_image_dihedral(FIXTURES / DIH / DIH_FILES[0]).hashes
    for variant, file_name in zip(variants, DIH_FILES):
        own = hamming(variant, expected[DIH + file_name])
        others = [hamming(variant, expected[DIH + other]) for other in DIH_FILES if other != file_name]
        assert own <= 10, file_name
        assert min(others) > 60, file_name


@pytest.mark.parametrize("mode", ["exact", "fast"])
def test_variant_names_follow_pillow_transposes(mode):
    image = photo_like(21, 720, 480)
    variants = hash_image_dihedral(image, mode).by_name()
    for name, transpose in TRANSPOSES.items():
        turned = hash_image(image.transpose(transpose), mode).hex
        # Close (the reference's even-width boxes are not symmetric, so not 0), far below
        # the match threshold of 31, and far from every other orientation.
        assert hamming(variants[name], turned) <= 16, name
        assert min(hamming(other, turned) for key, other in variants.items() if key != name) > 60, name


def test_transforms_compose_like_the_dihedral_group():
    dct = np.random.default_rng(0).standard_normal((16, 16)).astype(np.float32)
    variants = dict(zip(DIHEDRAL_NAMES, dihedral_dcts(dct)))
    rotate90 = lambda d: dihedral_dcts(d)[1]  # noqa: E731
    np.testing.assert_array_equal(rotate90(rotate90(dct)), variants["rotate180"])
    np.testing.assert_array_equal(rotate90(variants["rotate180"]), variants["rotate270"])
    np.testing.assert_array_equal(rotate90(variants["rotate270"]), dct)
    for name in ("flip_x", "flip_y", "flip_plus1", "flip_minus1"):
        twice = dict(zip(DIHEDRAL_NAMES, dihedral_dcts(variants[name])))[name]
        np.testing.assert_array_equal(twice, dct)  # mirrors are involutions


def test_unhashable_image_gives_eight_zero_hashes():
    result = hash_image_dihedral(Image.new("RGB", (3, 3), "red"))
    assert result.hashes == ("0" * 64,) * 8
    assert result.quality == 0
