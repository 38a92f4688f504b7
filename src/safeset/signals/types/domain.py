"""domain: a host name that matches itself and every subdomain."""

import idna

from safeset.signals.registry import SignalType, register


def validate_domain(value: str) -> str:
    text = value.strip().lower().rstrip(".")
    if text.startswith("*."):
        text = text[2:]
    if not text:
        raise ValueError("empty domain")
    if any(ch in text for ch in "/:@?# \t"):
        raise ValueError("not a bare host name (no scheme, path, port or spaces)")
    if not text.isascii():
        try:
            text = idna.encode(text, uts46=True).decode("ascii")
        except idna.IDNAError as exc:
            raise ValueError(f"invalid internationalised domain: {exc}") from None
    labels = text.split(".")
    if any(not label or len(label) > 63 for label in labels):
        raise ValueError("empty or over-long label")
    return text


register(
    SignalType(
        name="domain",
        description="a host; matches it and all its subdomains",
        index="domain",
        validate=validate_domain,
    )
)
