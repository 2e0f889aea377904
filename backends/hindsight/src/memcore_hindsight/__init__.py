"""memcore backend for Hindsight (vectorize.io's agent memory), over plain httpx."""

from ._backend import HindsightBackend, decode_id, encode_id

__all__ = ["HindsightBackend", "decode_id", "encode_id"]
