"""Builds safeset's small C extensions: `_native` (digests, URL canonical form,
hex parsing) and `_pdqindex` (the exact Hamming index for PDQ hashes).

Everything else is declared in pyproject.toml.
"""
from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "safeset._native",
            sources=["src/safeset/native/_native.c"],
            extra_compile_args=["-O3", "-std=c99"],
        ),
        Extension(
            "safeset._pdqindex",
            sources=["src/safeset/native/_pdqindex.c"],
            extra_compile_args=["-O3", "-std=c99"],
        ),
    ]
)
