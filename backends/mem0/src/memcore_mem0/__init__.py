"""memcore backend for mem0 (mem0ai): local mode over ``mem0.Memory``. See ``README.md``."""

from ._backend import Mem0Backend
from ._ids import decode_id, encode_id

__all__ = ["Mem0Backend", "decode_id", "encode_id"]
