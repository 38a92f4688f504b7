"""Quarantine: bytes encrypted at rest, a key kept away from the data, deletion that overwrites."""

from __future__ import annotations

import base64
import os
import stat

import pytest

from e2e_util import safeset
from review_util import drawn_image, jpeg, new_key
from safeset.errors import ConfigError
from safeset.review.errors import QuarantineKeyError
from safeset.review.quarantine import KEY_ENV_VAR, Quarantine, load_key, parse_key, write_new_key


def test_bytes_are_encrypted_and_decrypt_only_with_their_key(tmp_path):
    image = jpeg(drawn_image(7))
    key = new_key()
    quarantine = Quarantine(tmp_path / "store" / "quarantine", key)
    ref = quarantine.put(image)
    (path,) = list(quarantine.directory.iterdir())
    stored = path.read_bytes()
    assert path.name == ref and len(ref) == 36  # random name, no digest of the content
    assert image not in stored and image[:64] not in stored and stored != image
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(quarantine.directory.stat().st_mode) == 0o700
    assert quarantine.get(ref) == image

    with pytest.raises(QuarantineKeyError, match="another key"):
        Quarantine(quarantine.directory, new_key()).get(ref)
    with pytest.raises(QuarantineKeyError, match="no quarantine key"):
        Quarantine(quarantine.directory, None).get(ref)
    with pytest.raises(QuarantineKeyError, match="no quarantine key"):
        Quarantine(quarantine.directory, None).put(image)


def test_tampering_and_swapping_are_detected(tmp_path):
    key = new_key()
    quarantine = Quarantine(tmp_path / "q", key)
    first, second = quarantine.put(b"first benign bytes"), quarantine.put(b"second benign bytes")
    path = quarantine.directory / first
    blob = bytearray(path.read_bytes())
    blob[-1] ^= 1
    path.write_bytes(bytes(blob))
    with pytest.raises(ConfigError, match="failed authentication"):
        quarantine.get(first)
    # a file renamed to another item's name does not decrypt as that item
    os.replace(quarantine.directory / second, path)
    with pytest.raises(ConfigError, match="failed authentication"):
        quarantine.get(first)


def test_delete_overwrites_and_removes(tmp_path):
    quarantine = Quarantine(tmp_path / "q", new_key())
    ref = quarantine.put(b"benign")
    assert quarantine.delete(ref) is True
    assert not (quarantine.directory / ref).exists()
    assert quarantine.delete(ref) is False
    assert Quarantine(tmp_path / "q", None).delete(quarantine.put(b"x")) is True  # deleting needs no key


def test_key_forms_and_sources(tmp_path):
    key = new_key()
    assert parse_key(key.hex(), "t") == key
    assert parse_key(base64.b64encode(key).decode() + "\n", "t") == key
    assert parse_key(base64.urlsafe_b64encode(key).decode(), "t") == key
    for bad in ("", "abc", key.hex()[:-2], base64.b64encode(key[:16]).decode()):
        with pytest.raises(QuarantineKeyError, match="32 bytes"):
            parse_key(bad, "t")
    assert load_key(None, [], env={}) is None
    assert load_key(None, [], env={KEY_ENV_VAR: key.hex()}) == key


def test_key_file_beside_the_data_or_readable_by_others_is_refused(tmp_path):
    store = tmp_path / "store"
    inside = write_new_key(tmp_path / "outside.key", [])
    (store / "quarantine").mkdir(parents=True)
    os.replace(inside, store / "k.key")
    with pytest.raises(QuarantineKeyError, match="inside"):
        Quarantine.open(store, key_file=store / "k.key", env={})
    with pytest.raises(QuarantineKeyError, match="inside"):
        write_new_key(store / "quarantine" / "new.key", [store])

    loose = tmp_path / "loose.key"
    loose.write_text(new_key().hex())
    os.chmod(loose, 0o644)
    with pytest.raises(QuarantineKeyError, match="chmod 600"):
        Quarantine.open(store, key_file=loose, env={})
    os.chmod(loose, 0o600)
    assert Quarantine.open(store, key_file=loose, env={}).has_key


def test_keygen_cli_creates_a_private_key_and_never_overwrites(tmp_path):
    key_file = tmp_path / "keys" / "quarantine.key"
    key_file.parent.mkdir()
    safeset("review", "keygen", "--out", key_file, "--store", tmp_path / "store")
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = parse_key(key_file.read_text(), "t")
    assert len(key) == 32
    again = safeset("review", "keygen", "--out", key_file, "--store", tmp_path / "store", check=2)
    assert "never overwritten" in again.stderr and "Traceback" not in again.stderr
    assert parse_key(key_file.read_text(), "t") == key
    refused = safeset("review", "keygen", "--out", tmp_path / "store" / "k.key", "--store", tmp_path / "store", check=2)
    assert "outside the store" in refused.stderr
