"""memcore backend for OpenViking: sessions, turns, commits, recall and notes over OpenViking's HTTP API."""

from ._backend import OpenVikingBackend, decode_session_id, encode_session_id

__all__ = ["OpenVikingBackend", "decode_session_id", "encode_session_id"]
