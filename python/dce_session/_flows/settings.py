"""The manager's settings, checked once, and what flows derive from them:
field names a write may use, the uid of a user, the script header."""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import json
import math
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NoReturn

from dce_session._core import (
    encode_fields,
    encode_value,
    generate_sid,
    generate_sid_in_slot,
    key_slot,
    user_key,
)
from dce_session._flows.calls import Direct
from dce_session._scripts import scripts_for
from dce_session.errors import (
    ConfigError,
    InvalidField,
    InvalidUser,
    ReservedField,
    SerializationError,
    SessionError,
    UnknownSetting,
)


def check_field(field: object) -> str:
    """A field name: a ``str`` encodable as UTF-8 (a ``str`` subclass counts as its text)."""
    if not isinstance(field, str):
        raise InvalidField(f"field names are str, not {type(field).__name__}")
    name = str.__str__(field)
    try:
        name.encode()
    except UnicodeEncodeError as error:
        raise InvalidField("a field name must be valid UTF-8 (it has a lone surrogate)") from error
    return name


def checked_mapping(mapping: object) -> Mapping[Any, Any]:
    """``mapping`` when it is a mapping of fields to values; else ``SerializationError``."""
    if not isinstance(mapping, Mapping):
        raise SerializationError(f"takes a mapping of field names to values, not "
                                 f"{type(mapping).__name__}: nothing was written")
    return mapping


def redact(sid: str) -> str:
    """A sid as it may appear in a message: its first 6 characters."""
    return f"{sid[:6]}…"


def uid_text(uid: object) -> str:
    """A uid as the decimal text keys use; ``InvalidUser`` if not in [0, 2**64)."""
    return user_key("", uid)[1:]


@dataclasses.dataclass(frozen=True)
class RenewPolicy:
    """Settings of self-regenerating sessions (``SessionManager(renew=...)``).

    ``interval_seconds``: age after which a presented sid is replaced;
    ``original_judgment_seconds``: grace after a rotation during which the old
    sid forwards to the new one; ``cloned_inactive_judgment_seconds``: after
    the grace, a successor used within this many seconds (and more recently
    than the old sid) means the client moved on. See docs/lifecycle.md.

    >>> RenewPolicy(interval_seconds=300).original_judgment_seconds
    120
    """

    interval_seconds: int = 600
    original_judgment_seconds: int = 120
    cloned_inactive_judgment_seconds: int = 60

    def __post_init__(self) -> None:
        for name in ("interval_seconds", "original_judgment_seconds",
                     "cloned_inactive_judgment_seconds"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"RenewPolicy.{name} must be a positive int, got {value!r}")


#: The grace of forwarding when the manager has no ``renew=`` (a sid rotated
#: by another service still forwards): the RenewPolicy default.
DEFAULT_GRACE = RenewPolicy().original_judgment_seconds


def check_ttl(ttl_minutes: object) -> int:
    """A ttl in minutes, 1..65535 (it is 4 hex digits of the sid)."""
    if isinstance(ttl_minutes, bool) or not isinstance(ttl_minutes, int) \
            or not 1 <= ttl_minutes <= 0xFFFF:
        raise ConfigError(f"ttl_minutes must be an int in 1..65535, got {ttl_minutes!r}")
    return ttl_minutes


#: The longest user index TTL floor: about 136 years (a setting past it is a typo).
MAX_MAPPING_TTL_SECONDS = 2**32


def _check_name(setting: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{setting} must be a non-empty str, got {value!r}")
    return value


def _check_call(manager: str, misplaced: tuple[object, ...], unknown: Mapping[str, object]) -> None:
    """``UnknownSetting`` for settings passed by position or under a name that
    is not a setting (with the closest setting's name)."""
    names = [name for name, parameter in inspect.signature(Settings).parameters.items()
             if parameter.kind is parameter.KEYWORD_ONLY]
    if misplaced:
        raise UnknownSetting(f"{manager}(client, ...) takes its settings by keyword "
                          f"({', '.join(names)}), got {len(misplaced)} more by position")
    for name in unknown:
        near = [known for known in names if known.startswith(name) or name.startswith(known)] \
            or difflib.get_close_matches(name, names, n=1, cutoff=0.5)
        hint = f"did you mean {near[0]!r}? " if near else ""
        raise UnknownSetting(f"{manager}() has no setting {name!r}: {hint}the settings are "
                          f"{', '.join(names)}")


class Settings:
    """Every setting of a ``SessionManager``, checked at once (``ConfigError``)."""

    _client_types: tuple[type, ...] = ()
    _cluster_types: tuple[type, ...] = ()
    _plain_client: type | None = None  # the door's redis-py client class (not the cluster's)

    def __init__(
        self,
        client: Any,
        *misplaced: NoReturn,
        ttl_minutes: int = 60,
        sid_name: str = "dcesid",
        user_prefix: str = "dceusmap",
        user_field: str = "$user",
        new_sid_field: str = "$newid",
        server_field: str = "$server",
        client_field: str = "$client",
        mapping_ttl_seconds: int = 604800,
        user_loader: Callable[[dict[str, Any]], Any] | None = None,
        renew: RenewPolicy | None = None,
        clock: Callable[[], float] | None = None,
        uid_field: str = "id",
        **unknown: NoReturn,
    ) -> None:
        _check_call(type(self).__name__, misplaced, unknown)
        if not isinstance(client, self._client_types):
            names = " or ".join(f"{t.__module__}.{t.__qualname__}" for t in self._client_types)
            raise ConfigError(f"this SessionManager needs a {names}, "
                              f"not {type(client).__module__}.{type(client).__qualname__}")
        self.client: Any = client
        #: True on a Redis Cluster: the user index then lies in another hash
        #: slot than the sessions (see ``index.ClusterIndexSteps``).
        self.cluster = isinstance(client, self._cluster_types)
        #: How the drivers send scripts on the client's pool themselves (None:
        #: through its ``execute_command``), chosen once for the client.
        self.direct = None if self.cluster or self._plain_client is None \
            else Direct.of(client, self._plain_client)
        self.ttl_minutes = check_ttl(ttl_minutes)
        self.sid_name = _check_name("sid_name", sid_name)
        self.user_prefix = _check_name("user_prefix", user_prefix)
        self.uid_field = _check_name("uid_field", uid_field)
        if json.dumps(uid_field, ensure_ascii=False)[1:-1] != uid_field:
            raise ConfigError(f"uid_field must need no JSON escape (the scripts find it in "
                              f"the stored user as written), got {uid_field!r}")
        fields = {name: _check_name(name, value) for name, value in (
            ("user_field", user_field), ("new_sid_field", new_sid_field),
            ("server_field", server_field), ("client_field", client_field))}
        if len(set(fields.values())) != len(fields):
            raise ConfigError(f"the bookkeeping fields must differ: {fields}")
        self.user_field, self.new_sid_field = user_field, new_sid_field
        self.server_field, self.client_field = server_field, client_field
        if isinstance(mapping_ttl_seconds, bool) or not isinstance(mapping_ttl_seconds, int) \
                or not 0 < mapping_ttl_seconds <= MAX_MAPPING_TTL_SECONDS:
            raise ConfigError(f"mapping_ttl_seconds must be an int in [1, "
                              f"{MAX_MAPPING_TTL_SECONDS}], got {mapping_ttl_seconds!r}")
        self.mapping_ttl_seconds = mapping_ttl_seconds
        for setting, value in (("user_loader", user_loader), ("clock", clock)):
            if value is not None and not callable(value):
                raise ConfigError(f"{setting} must be callable, got {value!r}")
        if renew is not None and not isinstance(renew, RenewPolicy):
            raise ConfigError(f"renew must be a RenewPolicy, got {renew!r}")
        self.user_loader = user_loader
        self.renew = renew
        self.clock: Callable[[], float] = clock or time.time
        #: The hash field of the connection bindings (one entry per connection).
        self.bindings_field = f"{server_field}s"
        if self.bindings_field in fields.values():
            raise ConfigError(f"server_field {server_field!r} + 's' names another field")
        #: The field names only their operations write (``ReservedField``).
        self.bookkeeping = frozenset((*fields.values(), self.bindings_field))
        #: Pub/sub channel of session events (``events()``), zset of server presence.
        self.events_channel = f"{self.sid_name}~events"
        self.presence_key = f"{self.sid_name}~presence"
        #: The manager's scripts, its settings written into their text.
        self.scripts = scripts_for(
            sid_name=self.sid_name, new_sid_field=new_sid_field, user_field=user_field,
            uid_field=self.uid_field, script_prefix=self.script_prefix,
            mapping_ttl_seconds=mapping_ttl_seconds, events_channel=self.events_channel,
            bindings_field=self.bindings_field, server_field=server_field,
            client_field=client_field, grace_seconds=self.grace_seconds)

    # -- names -------------------------------------------------------------------

    def writable(self, field: object) -> str:
        """A field name a write may use: not one of the bookkeeping fields."""
        name = check_field(field)
        if name in self.bookkeeping:
            raise ReservedField(f"{name!r} is a bookkeeping field: only login, rotation and "
                                "connections write it; nothing was written")
        return name

    def removals(self, fields: object) -> list[str]:
        """The field names of ``delete=`` (an iterable of names, not one str), checked."""
        if isinstance(fields, (str, bytes)) or not isinstance(fields, Iterable):
            raise InvalidField(f"delete= takes an iterable of field names, not "
                               f"{type(fields).__name__}: nothing was written")
        return [self.writable(field) for field in fields]

    def value_pairs(self, mapping: object) -> list[str]:
        """``[field, JSON, ...]`` of a mapping of values to write (fields checked)."""
        checked_mapping(mapping)
        try:
            pairs = encode_fields(mapping)
        except SerializationError:
            raise
        except TypeError as error:
            raise InvalidField(str(error)) from error
        for name in pairs[::2]:
            self.writable(name)
        return pairs

    def replay_record(self, key: str) -> str:
        """A fresh key for the record of one call's result, in ``key``'s hash slot."""
        return f"{self.sid_name}~replay:{{{key}}}:{secrets.token_hex(8)}"

    # -- sids and time -------------------------------------------------------------

    def now(self) -> int:
        """The manager's clock, in whole seconds (``ConfigError`` when it gives no time)."""
        try:
            value = self.clock()
        except Exception as error:  # the caller's clock failing is a setting's failure
            raise ConfigError(f"clock() failed: {type(error).__name__}: {error}") from error
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not math.isfinite(value):
            raise ConfigError(f"clock() must return seconds since the epoch, got {value!r}")
        return int(value)

    def fresh_sid(self, ttl_minutes: int, near: str | None = None) -> str:
        """A new sid of ``ttl_minutes`` created now (by the manager's clock).

        On a cluster, ``near`` (a key) puts the new session key in the same
        hash slot, so that one script may touch both.
        """
        if self.cluster and near is not None:
            return generate_sid_in_slot(ttl_minutes, self.now(), self.sid_name, key_slot(near))
        return generate_sid(ttl_minutes, self.now())

    @property
    def grace_seconds(self) -> int:
        """The grace period: of forwarding (SEMANTICS 3.1), and how long a sid a
        login replaced reads as ``replaced``."""
        return DEFAULT_GRACE if self.renew is None else self.renew.original_judgment_seconds

    def forward_since(self) -> int:
        """A successor created at or after this second is within grace (SEMANTICS 3.1)."""
        return max(self.now() - self.grace_seconds, 0)

    # -- users -----------------------------------------------------------------------

    @property
    def script_prefix(self) -> str:
        """The user prefix as scripts take it: empty on a cluster (no index in scripts)."""
        return "" if self.cluster else self.user_prefix

    def user_document(self, user: object) -> tuple[str, str]:
        """``(uid as decimal text, user JSON)`` of a user of any supported shape;
        ``InvalidUser`` for anything else, whatever the object raised."""
        try:
            uid, document = self._user_parts(user)
        except SessionError:
            raise
        except Exception as error:  # the user object's own failure (a property, model_dump)
            raise InvalidUser(f"the user could not be read ({type(error).__name__}: "
                              f"{error})") from error
        index_key = user_key("", uid)  # raises InvalidUser for a bad id
        return index_key[1:], encode_value(document)

    def _user_parts(self, user: object) -> tuple[Any, dict[str, Any]]:
        """``(uid, document)`` of a user of any supported shape."""
        if isinstance(user, Mapping):
            document = dict(user)
            return document.get(self.uid_field), document
        uid = getattr(user, self.uid_field, None)
        if dataclasses.is_dataclass(user) and not isinstance(user, type):
            document = dataclasses.asdict(user)
        elif callable(getattr(user, "model_dump", None)):
            document = user.model_dump(mode="json")  # type: ignore[attr-defined]
        elif hasattr(user, "__dict__"):
            document = dict(vars(user))
        else:
            raise InvalidUser(f"a user is a mapping or an object, not {type(user).__name__}")
        if not isinstance(document, dict):
            raise InvalidUser(f"the user's document is a {type(document).__name__}, not a dict")
        document.setdefault(self.uid_field, uid)
        return uid, document

    def uid_of(self, fields: Mapping[str, str] | None) -> str | None:
        """The uid (decimal text) of the user stored in ``fields``, if any."""
        raw = None if fields is None else fields.get(self.user_field)
        if raw is None:
            return None
        try:
            document = json.loads(raw)
        except (ValueError, RecursionError):
            return None
        uid = document.get(self.uid_field) if isinstance(document, dict) else None
        if isinstance(uid, bool) or not isinstance(uid, int) or not 0 <= uid < 2 ** 64:
            return None
        return str(uid)
