"""md5, sha1, sha256: digests of an image's exact bytes."""

from safeset.signals.registry import SignalType, register
from safeset.signals.types.hexdigest import hex_key, hex_validator

DIGEST_SIZES = {"md5": 16, "sha1": 20, "sha256": 32}

for _name, _size in DIGEST_SIZES.items():
    register(
        SignalType(
            name=_name,
            description=f"{_name.upper()} of the image bytes",
            index="digest",
            validate=hex_validator(_size),
            index_key=hex_key,
            key_size=_size,
        )
    )
