"""memcore backend for Honcho (Plastic Labs' memory for agents), over plain httpx."""

from ._backend import HonchoBackend, decode_id, encode_id

__all__ = ["HonchoBackend", "decode_id", "encode_id"]
