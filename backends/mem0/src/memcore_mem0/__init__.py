"""memcore backends for mem0 (mem0ai): local mode over ``mem0.Memory``, platform mode over mem0's hosted API. See
``README.md``."""

from ._backend import Mem0Backend
from ._ids import decode_id, encode_id
from ._platform import Mem0PlatformBackend

__all__ = ["Mem0Backend", "Mem0PlatformBackend", "decode_id", "encode_id"]
