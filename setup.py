"""Builds safeset's small C extensions: `_native` (digests, URL canonical form,
hex parsing), `_pdqindex` (the exact Hamming index for PDQ hashes), `_pdqfast`
(PDQ's downsampling and DCT for `fast` hashing), `_parquetpages` (parquet pages
of string columns decoded straight to Arrow buffers, for scans) and `_removals`
(a removal list's index: bucket sort and lookups).

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
        Extension(
            "safeset._parquetpages",
            sources=["src/safeset/native/_parquetpages.c"],
            extra_compile_args=["-O3", "-std=c99"],
        ),
        Extension(
            "safeset._pdqfast",
            sources=["src/safeset/native/_pdqfast.c"],
            extra_compile_args=["-O3", "-std=c99"],
        ),
        Extension(
            "safeset._removals",
            sources=["src/safeset/native/_removals.c"],
            extra_compile_args=["-O3", "-std=c99"],
        ),
    ]
)
