"""memcore backend for OpenViking: sessions, turns, commits, recall, notes and forget over OpenViking's HTTP API."""

from ._backend import OpenVikingBackend, decode_session_id, encode_session_id, is_openviking_id, openviking_user_id

__all__ = ["OpenVikingBackend", "decode_session_id", "encode_session_id", "is_openviking_id", "openviking_user_id"]
