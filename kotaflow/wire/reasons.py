"""Why a record was refused: the one reason vocabulary of every dead letter.

Shared by the decoders (``devices``), the bridge and every stage: each dead-letter record on
``kotaflow.deadletter`` (:mod:`kotaflow.wire.deadletter`) carries one of these values in
``reason``, and the ``kotaflow_deadletter_total{reason}`` counter and the dashboards count
them. The values are part of the dead-letter schema (version 1): add, never rename.
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """Stable, machine-readable rejection reasons. Never rename one: dashboards count them."""

    NOT_JSON = "not_json"
    BAD_SHAPE = "bad_shape"
    BAD_TYPE = "bad_type"
    UNKNOWN_METRIC = "unknown_metric"
    BAD_UNIT = "bad_unit"
    NOT_FINITE = "not_finite"
    OUT_OF_RANGE = "out_of_range"
    TIME_IN_FUTURE = "time_in_future"
    TIME_TOO_OLD = "time_too_old"
    UNKNOWN_DEVICE = "unknown_device"
    DEVICE_DISABLED = "device_disabled"
    DEVICE_MISMATCH = "device_mismatch"
    UNSUPPORTED_VERSION = "unsupported_version"
    MUST_UNDERSTAND = "must_understand"
    OVERSIZE = "oversize"
    UNKNOWN_TOPIC = "unknown_topic"
    RATE_LIMITED = "rate_limited"
    BAD_ENVELOPE = "bad_envelope"
    BAD_TIME = "bad_time"
    """A timestamp that cannot be read (not epoch ms / RFC 3339, no UTC offset, ...)."""
    NOT_UTF8 = "not_utf8"
    """Text that is not valid UTF-8 (RFC 3629): a lone surrogate, an overlong or truncated
    sequence, a byte that never occurs in UTF-8 (0xC0, 0xC1, 0xF5-0xFF), or a JSON escape
    of a lone surrogate (``\\ud800``), which no UTF-8 text can carry."""
