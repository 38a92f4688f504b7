"""url, url_md5, url_sha1, url_sha256: a URL, or a digest of one.

A digest entry matches a row when it equals the digest of the row's raw URL
string or of its canonical form (lists differ in convention). A plain URL
entry is canonicalised and kept as the MD5 of that form, so it is matched by
digest against the row's canonical URL.
"""

import hashlib

from safeset.signals.registry import SignalType, register
from safeset.signals.types.hexdigest import hex_key, hex_validator

URL_DIGEST_SIZES = {"url_md5": 16, "url_sha1": 20, "url_sha256": 32}


def validate_url(value: str) -> str:
    from safeset.signals.url import canonical_url

    text = value.strip()
    if not text:
        raise ValueError("empty URL")
    if "://" not in text:
        raise ValueError("missing scheme (expected e.g. https://...)")
    return canonical_url(text)


def url_key(canonical: str) -> bytes:
    return hashlib.md5(canonical.encode("utf-8", "surrogatepass")).digest()


register(
    SignalType(
        name="url",
        description="a URL, compared in canonical form",
        index="digest",
        validate=validate_url,
        index_key=url_key,
        key_size=16,
    )
)

for _name, _size in URL_DIGEST_SIZES.items():
    register(
        SignalType(
            name=_name,
            description=f"{_name[4:].upper()} of the URL string (raw or canonical)",
            index="digest",
            validate=hex_validator(_size),
            index_key=hex_key,
            key_size=_size,
        )
    )
