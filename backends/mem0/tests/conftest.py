"""Test support: the deterministic OpenAI-compatible endpoint (``support/fake_openai.py``), served in this process on
loopback once per session, and a fresh mem0 store per test."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from support.fake_openai import DIM, FakeOpenAI
from support.fake_platform import FakePlatform

# mem0 warns once per process that spaCy and fastembed are not installed (lemmas, entities and BM25 are then off).
logging.getLogger("mem0").setLevel(logging.ERROR)


@pytest.fixture(scope="session")
def fake_openai() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
def settings(fake_openai: FakeOpenAI, tmp_path: Path) -> dict[str, Any]:
    """Keyword arguments for a Mem0Backend on an empty store under ``tmp_path``."""
    return {
        "path": tmp_path / "mem0",
        "base_url": fake_openai.url,
        "api_key": "test-key",
        "embedding_model": "fake-embedding",
        "embedding_dims": DIM,
        "llm_model": "fake-llm",
        "threshold": 0.0,
    }


@pytest.fixture(scope="session")
def fake_platform() -> Iterator[FakePlatform]:
    with FakePlatform() as fake:
        yield fake
