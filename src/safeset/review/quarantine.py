"""Quarantine: image bytes awaiting review, encrypted at rest with AES-256-GCM.

One file per item under `<store>/quarantine/`, named by a random token (never
by a digest, which would tell anyone listing the directory what is inside).
A file is `MAGIC | key id (8) | nonce (12) | ciphertext+tag`; the file's own
name is authenticated with it, so swapping two files is detected, and the
key id gives "encrypted with another key" instead of a vague failure.

The key (32 bytes, written as 64 hex characters or base64) comes from a key
file (`--quarantine-key-file`) or the environment (`SAFESET_QUARANTINE_KEY`).
It must never sit beside the data: a key file inside the store or the
quarantine directory is refused, as is one other users may read. Without a
key nothing can be stored or read (fail closed); deleting needs no key.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import os
import re
import secrets
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping

from safeset.errors import ConfigError
from safeset.review.errors import QuarantineKeyError

KEY_ENV_VAR = "SAFESET_QUARANTINE_KEY"
KEY_FILE_ENV_VAR = "SAFESET_QUARANTINE_KEY_FILE"
QUARANTINE_DIR = "quarantine"
KEY_BYTES = 32
MAGIC = b"SSQ1"
_KEY_ID_BYTES = 8
_NONCE_BYTES = 12
_HEADER_BYTES = len(MAGIC) + _KEY_ID_BYTES + _NONCE_BYTES
_REF = re.compile(r"^[0-9a-f]{32}\.ssq$")
_TMP_PREFIX = ".tmp-"

NO_KEY_MESSAGE = (
    "no quarantine key: pass --quarantine-key-file FILE or set SAFESET_QUARANTINE_KEY "
    "(create one with `safeset review keygen --out FILE`, outside the store)"
)


def parse_key(text: str, where: str) -> bytes:
    """32 key bytes from 64 hex characters or base64; `where` names the source in errors."""
    text = text.strip()
    if re.fullmatch(r"[0-9a-fA-F]{64}", text):
        return bytes.fromhex(text)
    try:
        key = base64.b64decode(text.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != KEY_BYTES:
        raise QuarantineKeyError(f"{where}: a quarantine key is {KEY_BYTES} bytes written as 64 hex characters or base64")
    return key


def key_id(key: bytes) -> bytes:
    """A short public fingerprint of the key: tells a wrong key from a damaged file."""
    return hashlib.sha256(b"safeset quarantine key id\0" + key).digest()[:_KEY_ID_BYTES]


def _inside(path: Path, directory: Path) -> bool:
    try:
        path.resolve().relative_to(directory.resolve())
        return True
    except ValueError:
        return False


def check_key_location(key_file: Path, forbidden: list[Path]) -> None:
    """Refuse a key kept beside the data it protects."""
    for directory in forbidden:
        if _inside(key_file, directory):
            raise QuarantineKeyError(
                f"quarantine key file {key_file} lies inside {directory}: keep the key outside the store "
                "and the quarantine (whoever copies the data must not get the key with it)"
            )


def read_key_file(key_file: Path, forbidden: list[Path]) -> bytes:
    key_file = Path(key_file).expanduser()
    check_key_location(key_file, forbidden)
    try:
        mode = key_file.stat().st_mode
        text = key_file.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise QuarantineKeyError(f"cannot read quarantine key file {key_file}: {exc}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise QuarantineKeyError(
            f"quarantine key file {key_file} is accessible to other users (mode {stat.filemode(mode)}): "
            f"run `chmod 600 {key_file}`"
        )
    return parse_key(text, str(key_file))


def load_key(key_file: Path | None, forbidden: list[Path], env: Mapping[str, str] | None = None) -> bytes | None:
    """The key from `key_file`, else $SAFESET_QUARANTINE_KEY_FILE, else $SAFESET_QUARANTINE_KEY; None if none is set."""
    env = os.environ if env is None else env
    if key_file is None and env.get(KEY_FILE_ENV_VAR):
        key_file = Path(env[KEY_FILE_ENV_VAR])
    if key_file is not None:
        return read_key_file(Path(key_file), forbidden)
    if env.get(KEY_ENV_VAR):
        return parse_key(env[KEY_ENV_VAR], f"${KEY_ENV_VAR}")
    return None


def write_new_key(out: Path, forbidden: list[Path]) -> Path:
    """Create a random key file readable by its owner only; never overwrites (a lost key loses the data)."""
    out = Path(out).expanduser()
    check_key_location(out, forbidden)
    try:
        handle = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigError(f"{out} already exists; a key file is never overwritten (choose another name)") from None
    except OSError as exc:
        raise ConfigError(f"cannot create {out}: {exc}") from None
    with os.fdopen(handle, "w", encoding="ascii") as stream:
        stream.write(secrets.token_bytes(KEY_BYTES).hex() + "\n")
        stream.flush()
        os.fsync(stream.fileno())
    return out


@dataclass(frozen=True)
class StoredFile:
    ref: str
    modified: float


class Quarantine:
    """Encrypted files in one directory; `key` None means bytes can be deleted but not stored or read."""

    def __init__(self, directory: Path, key: bytes | None):
        self.directory = Path(directory)
        if key is not None and len(key) != KEY_BYTES:
            raise QuarantineKeyError(f"a quarantine key is {KEY_BYTES} bytes, not {len(key)}")
        self._key = key
        self._key_id = key_id(key) if key is not None else None

    @classmethod
    def open(
        cls,
        store_root: Path,
        key_file: Path | None = None,
        directory: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> "Quarantine":
        """The quarantine of a store (default `<store>/quarantine`), with its key if one is configured."""
        directory = Path(directory) if directory is not None else Path(store_root) / QUARANTINE_DIR
        key = load_key(key_file, [Path(store_root), directory], env)
        return cls(directory, key)

    @property
    def has_key(self) -> bool:
        return self._key is not None

    def _require_key(self):
        if self._key is None:
            raise QuarantineKeyError(NO_KEY_MESSAGE)
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        return AESGCM(self._key)

    def _path(self, ref: str) -> Path:
        if not _REF.match(ref):
            raise ValueError(f"not a quarantine reference: {ref!r}")
        return self.directory / ref

    def _ensure_directory(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            os.chmod(self.directory, 0o700)

    # -- storing and reading ------------------------------------------------------
    def put(self, data: bytes) -> str:
        """Encrypt and store `data` atomically; returns the reference (file name) to keep."""
        cipher = self._require_key()
        self._ensure_directory()
        ref = secrets.token_hex(16) + ".ssq"
        nonce = secrets.token_bytes(_NONCE_BYTES)
        header = MAGIC + self._key_id + nonce
        sealed = cipher.encrypt(nonce, bytes(data), MAGIC + self._key_id + ref.encode())
        temporary = self.directory / f"{_TMP_PREFIX}{secrets.token_hex(8)}"
        handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(handle, "wb") as stream:
                stream.write(header + sealed)
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(temporary, self._path(ref))
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()
            raise
        _fsync_directory(self.directory)
        return ref

    def get(self, ref: str) -> bytes:
        """Decrypt one stored file; a wrong key or a damaged file is a clear error, never garbage."""
        cipher = self._require_key()
        from cryptography.exceptions import InvalidTag

        path = self._path(ref)
        try:
            blob = path.read_bytes()
        except FileNotFoundError:
            raise ConfigError(f"quarantined file {ref} is missing from {self.directory}") from None
        if len(blob) < _HEADER_BYTES + 16 or not blob.startswith(MAGIC):
            raise ConfigError(f"quarantined file {path} is damaged (not a safeset quarantine file)")
        stored_id = blob[len(MAGIC) : len(MAGIC) + _KEY_ID_BYTES]
        if stored_id != self._key_id:
            raise QuarantineKeyError(f"quarantined file {ref} was encrypted with another key than the one configured")
        nonce = blob[len(MAGIC) + _KEY_ID_BYTES : _HEADER_BYTES]
        try:
            return cipher.decrypt(nonce, blob[_HEADER_BYTES:], MAGIC + stored_id + ref.encode())
        except InvalidTag:
            raise ConfigError(f"quarantined file {path} failed authentication (damaged or tampered with)") from None

    # -- deleting -----------------------------------------------------------------
    def delete(self, ref: str) -> bool:
        """Overwrite the file with zeros, then remove it; False if it was already gone."""
        path = self._path(ref)
        try:
            size = path.stat().st_size
            with open(path, "r+b", buffering=0) as stream:
                remaining = size
                while remaining > 0:
                    remaining -= stream.write(bytes(min(remaining, 1 << 20)))
                os.fsync(stream.fileno())
            path.unlink()
        except FileNotFoundError:
            return False
        _fsync_directory(self.directory)
        return True

    def stored(self) -> Iterator[StoredFile]:
        """Every stored file (for sweeping files no item refers to)."""
        if not self.directory.is_dir():
            return
        for entry in os.scandir(self.directory):
            if _REF.match(entry.name):
                with contextlib.suppress(FileNotFoundError):
                    yield StoredFile(entry.name, entry.stat().st_mtime)

    def sweep_temporaries(self, older_than_seconds: float = 3600) -> int:
        """Remove half-written files that crashed writers left behind."""
        if not self.directory.is_dir():
            return 0
        cutoff, removed = time.time() - older_than_seconds, 0
        for entry in os.scandir(self.directory):
            if entry.name.startswith(_TMP_PREFIX):
                with contextlib.suppress(FileNotFoundError):
                    if entry.stat().st_mtime < cutoff:
                        os.unlink(entry.path)
                        removed += 1
        return removed


def _fsync_directory(directory: Path) -> None:
    with contextlib.suppress(OSError):
        handle = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(handle)
        finally:
            os.close(handle)
