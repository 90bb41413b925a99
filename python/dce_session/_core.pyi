"""Type stubs of the compiled Rust core (``dce_session._core``), checked by stubtest."""

from typing import final

__all__ = [
    "SID_MAX_LEN",
    "SID_MIN_LEN",
    "RenewDecision",
    "Stored",
    "encode_fields",
    "encode_value",
    "generate_sid",
    "generate_sid_in_slot",
    "is_valid_sid",
    "key_slot",
    "parse_sid",
    "renew_decision",
    "session_key",
    "user_key",
]

SID_MIN_LEN: int
SID_MAX_LEN: int

def generate_sid(ttl_minutes: int, created_at: int | None = None) -> str: ...
def parse_sid(sid: object) -> tuple[int, int]: ...
def is_valid_sid(sid: object) -> bool: ...
def session_key(prefix: str, sid: str) -> str: ...
def key_slot(key: str) -> int: ...
def generate_sid_in_slot(ttl_minutes: int, created_at: int, prefix: str, slot: int) -> str: ...
def user_key(prefix: str, uid: object) -> str: ...
def encode_value(value: object) -> str: ...
def encode_fields(mapping: object) -> list[str]: ...
@final
class Stored:
    LIVE: Stored
    FORWARDING: Stored
    SUPERSEDED: Stored
    ENDED: Stored
    GONE: Stored
    def __eq__(self, value: object, /) -> bool: ...
    def __hash__(self) -> int: ...
    def __int__(self) -> int: ...

@final
class RenewDecision:
    KEEP: RenewDecision
    ROTATE: RenewDecision
    FOLLOW: RenewDecision
    DESTROY: RenewDecision
    REISSUE: RenewDecision
    REFUSE: RenewDecision
    NEWBORN: RenewDecision
    @property
    def label(self) -> str: ...
    def __eq__(self, value: object, /) -> bool: ...
    def __hash__(self) -> int: ...

def renew_decision(
    interval: int,
    grace: int,
    inactive: int,
    now: int,
    created_at: int,
    idle: int = 0,
    stored: Stored | None = None,
    successor_idle: int = 0,
) -> RenewDecision: ...
