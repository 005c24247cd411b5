from typing_extensions import disjoint_base

def message_record(
    room: str,
    seq: int,
    msg_id: str,
    sender: str,
    sender_kind: str,
    ts: int,
    body_json: bytes,
    reply_to_json: bytes | None,
    meta_json: bytes | None,
) -> bytes: ...
def ack_record(
    rid_json: bytes | None,
    room: str,
    seq: int,
    msg_id: str,
    client_msg_id_json: bytes | None,
    duplicate: bool = False,
) -> bytes: ...

@disjoint_base
class EventIds:
    def __init__(self) -> None: ...
    def head(self, now_ms: int) -> None: ...
    def next(self) -> str: ...
