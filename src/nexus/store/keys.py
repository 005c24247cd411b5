"""Key layout. Seqs are 8-byte big-endian so a cursor walks a room in seq order.

room key   = tenant 0x1F room            (neither part may hold 0x1F or 0x00)
log key    = room key 0x00 seq(8, BE)
client key = tenant 0x1F sender 0x1F client_msg_id
member key = room key 0x00 user id
user key   = tenant 0x1F user id
"""

from __future__ import annotations

import struct

_SEQ = struct.Struct(">Q")
SEP = "\x1f"


def room_key(tenant: str, room: str) -> str:
    return f"{tenant}{SEP}{room}"


def split_room_key(key: str) -> tuple[str, str]:
    tenant, _, room = key.partition(SEP)
    return tenant, room


def log_prefix(rkey: str) -> bytes:
    return rkey.encode() + b"\x00"


def log_key(rkey: str, seq: int) -> bytes:
    return rkey.encode() + b"\x00" + _SEQ.pack(seq)


def seq_of(key: bytes) -> int:
    return int(_SEQ.unpack_from(key, len(key) - 8)[0])


def client_key(tenant: str, sender: str, client_msg_id: str) -> bytes:
    return f"{tenant}{SEP}{sender}{SEP}{client_msg_id}".encode()


def member_key(rkey: str, user_id: str) -> bytes:
    return f"{rkey}\x00{user_id}".encode()


def user_key(tenant: str, user_id: str) -> bytes:
    return f"{tenant}{SEP}{user_id}".encode()
