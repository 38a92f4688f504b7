"""Builds safeset's small C extension (digests, URL canonical form, hex parsing).

Everything else is declared in pyproject.toml.
"""
from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "safeset._native",
            sources=["src/safeset/native/_native.c"],
            extra_compile_args=["-O3", "-std=c99"],
        )
    ]
)
