"""Allocator tuning is safe to call and says whether it applied."""

import os
import platform

import pytest

from safeset.engine.memory import keep_freed_memory, prefer_reuse_in_arrow


@pytest.mark.skipif(platform.system() != "Linux" or not platform.libc_ver()[0].startswith("glibc"), reason="glibc only")
def test_glibc_thresholds_are_set():
    assert keep_freed_memory() is True
    assert keep_freed_memory() is True  # idempotent


def test_arrow_setting_respects_an_explicit_environment(monkeypatch):
    monkeypatch.setenv("MIMALLOC_PURGE_DELAY", "250")
    prefer_reuse_in_arrow()
    assert os.environ["MIMALLOC_PURGE_DELAY"] == "250"
    monkeypatch.delenv("MIMALLOC_PURGE_DELAY")
    prefer_reuse_in_arrow()
    assert os.environ["MIMALLOC_PURGE_DELAY"] == "-1"
