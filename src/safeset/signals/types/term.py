"""term: a word or phrase matched in captions after text normalisation."""

from safeset.signals.registry import SignalType, register


def validate_term(value: str) -> str:
    from safeset.signals.text import normalize_text

    text = normalize_text(value)
    if not text:
        raise ValueError("empty term after normalisation")
    return text


register(
    SignalType(
        name="term",
        description="a caption word or phrase (normalised, whole-word)",
        index="term",
        validate=validate_term,
    )
)
