"""The contract every payload decoder passes, run once per format.

Each test builds the same readings in every format (``payload_builders``) and checks the
decoder's answer: readings in canonical units, or a rejection with the right reason.
All pure and fast: no services, no clock (the receive time is the decoder's "now").
"""

from __future__ import annotations

import json
import math
import random
from typing import Any, ClassVar

import pytest
from payload_builders import BUILDERS, PayloadBuilder

from devices.decoding import (
    RECEIVE_TIME,
    DecodeContext,
    DecodeLimits,
    DecodeResult,
    parse_json,
)
from devices.fleet import Fleet
from devices.formats import DECODERS, decode
from devices.registry import Device
from devices.topics import match_topic
from kotaflow.wire.raw import PayloadFormat
from kotaflow.wire.reasons import Reason

RX_MS = 1_795_000_000_000  # a fixed receive time, late 2026
HOUR_MS = 3_600_000

builders = pytest.mark.parametrize("builder", BUILDERS, ids=lambda b: b.format.value)


def run(
    builder: PayloadBuilder,
    fleet: Fleet,
    device: Device,
    values: dict[str, Any],
    ts_ms: int | None = RX_MS - 60_000,
    limits: DecodeLimits | None = None,
) -> DecodeResult:
    return decode_raw(builder, fleet, device, builder.payload(device, values, ts_ms), limits)


def decode_raw(
    builder: PayloadBuilder,
    fleet: Fleet,
    device: Device,
    payload: bytes,
    limits: DecodeLimits | None = None,
) -> DecodeResult:
    match = match_topic(builder.topic(device))
    assert match is not None
    assert match.format is builder.format
    ctx = DecodeContext(fleet, limits or DecodeLimits())
    return decode(payload, match, RX_MS, ctx)


def reasons(result: DecodeResult) -> list[Reason]:
    return [r.reason for r in result.rejections]


def weather(fleet: Fleet) -> Device:
    device = fleet.device("t-wx-01")
    assert device is not None
    return device


def test_every_payload_format_has_a_decoder() -> None:
    assert set(DECODERS) == set(PayloadFormat)
    assert {b.format for b in BUILDERS} == set(PayloadFormat)


@builders
def test_good_payload_gives_readings_in_canonical_units(
    builder: PayloadBuilder, fleet: Fleet
) -> None:
    ts = RX_MS - 90_000
    values = {
        "temperature": (64.4, "degF"),
        "humidity": 71,
        "pressure": (88_150, "Pa"),
        "wind_speed": (18, "km/h"),
        "rain": 0.4,
    }
    result = run(builder, fleet, weather(fleet), values, ts)
    assert result.rejections == []
    got = {r.metric: r.value for r in result.readings}
    assert got == pytest.approx(
        {"temperature": 18.0, "humidity": 71.0, "pressure": 881.5, "wind_speed": 5.0, "rain": 0.4}
    )
    assert {(r.device_id, r.ts_ms, r.flags) for r in result.readings} == {("t-wx-01", ts, ())}


@builders
def test_payload_without_time_gets_receive_time_and_flag(
    builder: PayloadBuilder, fleet: Fleet
) -> None:
    result = run(builder, fleet, weather(fleet), {"temperature": 17.5}, ts_ms=None)
    assert [(r.value, r.ts_ms, r.flags) for r in result.readings] == [
        (17.5, RX_MS, (RECEIVE_TIME,))
    ]


@builders
def test_aliases_name_the_canonical_metric(builder: PayloadBuilder, fleet: Fleet) -> None:
    result = run(builder, fleet, weather(fleet), {"temp": 20.0, "rh": 80})
    assert sorted(r.metric for r in result.readings) == ["humidity", "temperature"]


@builders
@pytest.mark.parametrize(
    ("bad_value", "reason"),
    [
        (("hot", None), Reason.BAD_TYPE),
        ((True, None), Reason.BAD_TYPE),
        ((None, None), Reason.BAD_TYPE),
        ((12.0, "furlong"), Reason.BAD_UNIT),
        ((12.0, "hPa"), Reason.BAD_UNIT),
        ((math.nan, None), Reason.NOT_FINITE),
        ((math.inf, None), Reason.NOT_FINITE),
        ((-math.inf, None), Reason.NOT_FINITE),
        ((75.0, None), Reason.OUT_OF_RANGE),
        ((-300.0, "K"), Reason.OUT_OF_RANGE),
    ],
    ids=[
        "string",
        "bool",
        "null",
        "unknown-unit",
        "wrong-dimension",
        "nan",
        "inf",
        "-inf",
        "too-hot",
        "below-absolute-zero",
    ],
)
def test_each_bad_value_is_rejected_alone_and_the_rest_kept(
    builder: PayloadBuilder, fleet: Fleet, bad_value: tuple[Any, str | None], reason: Reason
) -> None:
    value, unit = bad_value
    values = {"humidity": 64, "temperature": value if unit is None else (value, unit), "rain": 1}
    result = run(builder, fleet, weather(fleet), values)
    assert reasons(result) == [reason]
    assert result.rejections[0].metric == "temperature"
    assert result.rejections[0].device_id == "t-wx-01"
    assert sorted(r.metric for r in result.readings) == ["humidity", "rain"]


@builders
def test_unknown_metric_is_rejected_and_known_ones_kept(
    builder: PayloadBuilder, fleet: Fleet
) -> None:
    result = run(builder, fleet, weather(fleet), {"temperature": 19, "luminosity": 0.6, "pm25": 3})
    assert reasons(result) == [Reason.UNKNOWN_METRIC, Reason.UNKNOWN_METRIC]
    assert {r.metric for r in result.rejections} == {"luminosity", "pm25"}
    assert [r.metric for r in result.readings] == ["temperature"]


@builders
def test_every_value_of_a_payload_is_accounted_for(builder: PayloadBuilder, fleet: Fleet) -> None:
    values = {"temperature": 19, "humidity": "wet", "bogus": 1, "rain": math.nan, "pressure": 870}
    result = run(builder, fleet, weather(fleet), values)
    assert len(result.readings) + len(result.rejections) == len(values)


@builders
def test_boolean_metric_takes_true_false(builder: PayloadBuilder, fleet: Fleet) -> None:
    lamp = fleet.device("t-sl-01")
    assert lamp is not None
    result = run(builder, fleet, lamp, {"lamp_on": True, "power": (0.07, "kW")})
    assert {r.metric: r.value for r in result.readings} == {"lamp_on": 1.0, "power": 70.0}


@builders
def test_readings_a_day_late_are_accepted(builder: PayloadBuilder, fleet: Fleet) -> None:
    late = RX_MS - 24 * HOUR_MS
    result = run(builder, fleet, weather(fleet), {"temperature": 16.0}, ts_ms=late)
    assert result.rejections == []
    assert [r.ts_ms for r in result.readings] == [late]


@builders
@pytest.mark.parametrize(
    ("offset_ms", "reason"),
    [(10 * 60_000, Reason.TIME_IN_FUTURE), (-8 * 24 * HOUR_MS, Reason.TIME_TOO_OLD)],
    ids=["10-min-ahead", "8-days-old"],
)
def test_implausible_times_are_rejected(
    builder: PayloadBuilder, fleet: Fleet, offset_ms: int, reason: Reason
) -> None:
    result = run(builder, fleet, weather(fleet), {"temperature": 16.0}, ts_ms=RX_MS + offset_ms)
    assert result.readings == []
    assert reasons(result) == [reason]


@builders
def test_time_limits_are_parameters(builder: PayloadBuilder, fleet: Fleet) -> None:
    limits = DecodeLimits(max_future_ms=60 * 60_000, max_age_ms=HOUR_MS)
    ahead = run(builder, fleet, weather(fleet), {"rain": 1}, RX_MS + 30 * 60_000, limits)
    old = run(builder, fleet, weather(fleet), {"rain": 1}, RX_MS - 2 * HOUR_MS, limits)
    assert (len(ahead.readings), reasons(old)) == (1, [Reason.TIME_TOO_OLD])


@builders
def test_unknown_device_is_rejected(builder: PayloadBuilder, fleet: Fleet) -> None:
    stranger = weather(fleet).model_copy(
        update={"id": "nobody", "dev_eui": "0123456789abcdef", "tts_device_id": "nobody"}
    )
    result = run(builder, fleet, stranger, {"temperature": 16.0})
    assert (result.readings, reasons(result)) == ([], [Reason.UNKNOWN_DEVICE])


@builders
def test_disabled_device_is_rejected(builder: PayloadBuilder, fleet: Fleet) -> None:
    retired = fleet.device("t-wx-off")
    assert retired is not None
    result = run(builder, fleet, retired, {"temperature": 16.0})
    assert (result.readings, reasons(result)) == ([], [Reason.DEVICE_DISABLED])
    assert result.rejections[0].device_id == "t-wx-off"


@builders
@pytest.mark.parametrize(
    "payload",
    [b"", b"{", b"temperature=21", b"{'single': 'quotes'}"],
    ids=["empty", "truncated", "key-value", "python-repr"],
)
def test_not_json_is_rejected(builder: PayloadBuilder, fleet: Fleet, payload: bytes) -> None:
    result = decode_raw(builder, fleet, weather(fleet), payload)
    assert (result.readings, reasons(result)) == ([], [Reason.NOT_JSON])


INVALID_UTF8 = {
    "lone-high-surrogate": b"\xed\xa0\x80",
    "lone-low-surrogate": b"\xed\xbf\xbf",
    "surrogate-pair-as-cesu8": b"\xed\xa0\xbd\xed\xb8\x80",
    "overlong-2-byte-slash": b"\xc0\xaf",
    "overlong-3-byte-slash": b"\xe0\x80\xaf",
    "overlong-4-byte-slash": b"\xf0\x80\x80\xaf",
    "truncated-2-byte": b"\xc3",
    "truncated-3-byte": b"\xe2\x82",
    "truncated-4-byte": b"\xf0\x9f\x98",
    "lone-continuation": b"\x80",
    "byte-ff": b"\xff",
    "byte-fe": b"\xfe",
    "above-u10ffff": b"\xf4\x90\x80\x80",
    "escaped-lone-surrogate": b"\\ud800",
}
"""Every kind of ill-formed UTF-8 (RFC 3629), and the JSON escape of a lone surrogate."""


def _with_bad_text(good: bytes, bad: bytes) -> bytes:
    """``good`` with ``bad`` inside its metric name (a string every format carries)."""
    assert good.count(b'"temperature"') == 1
    return good.replace(b'"temperature"', b'"temp' + bad + b'erature"')


@builders
@pytest.mark.parametrize("bad", INVALID_UTF8.values(), ids=INVALID_UTF8.keys())
@pytest.mark.parametrize("nan", [False, True], ids=["strict-json", "with-nan-token"])
def test_invalid_utf8_is_rejected_as_not_utf8(
    builder: PayloadBuilder, fleet: Fleet, bad: bytes, nan: bool
) -> None:
    """Whichever parser reads the payload (orjson, or the ``json`` fallback a NaN token
    sends it to): no reading, one ``not_utf8`` rejection."""
    values: dict[str, Any] = {"temperature": 16.0, "pressure": math.nan if nan else 1000.0}
    payload = _with_bad_text(builder.payload(weather(fleet), values, RX_MS - 60_000), bad)
    result = decode_raw(builder, fleet, weather(fleet), payload)
    assert (result.readings, reasons(result)) == ([], [Reason.NOT_UTF8])


@builders
@pytest.mark.parametrize("bad", [b"\xed\xa0\x80", b"\xc0\xaf", b"\xe2\x82", b"\xff"])
def test_invalid_utf8_after_the_json_is_rejected(
    builder: PayloadBuilder, fleet: Fleet, bad: bytes
) -> None:
    good = builder.payload(weather(fleet), {"temperature": 16.0}, RX_MS - 60_000)
    result = decode_raw(builder, fleet, weather(fleet), good + bad)
    assert reasons(result) == [Reason.NOT_UTF8]


@builders
@pytest.mark.parametrize(
    "text", ["temp\u00e9rature".encode(), b"temp\\u00e9rature", b"temp\\ud83d\\ude00erature"]
)
def test_valid_non_ascii_text_is_not_called_invalid(
    builder: PayloadBuilder, fleet: Fleet, text: bytes
) -> None:
    """Real UTF-8, an escaped letter and an escaped surrogate pair are text: the name is
    just not a metric."""
    good = builder.payload(weather(fleet), {"temperature": 16.0}, RX_MS - 60_000)
    payload = good.replace(b'"temperature"', b'"' + text + b'"')
    assert reasons(decode_raw(builder, fleet, weather(fleet), payload)) == [Reason.UNKNOWN_METRIC]


def test_not_utf8_rejection_names_the_bytes() -> None:
    result = parse_json(b'{"a":"\xed\xa0\x80"}', DecodeLimits(), "dev-1")
    assert isinstance(result, DecodeResult)
    assert result.rejections[0].reason is Reason.NOT_UTF8
    assert "ED A0" in result.rejections[0].message


def test_a_leading_bom_is_still_tolerated() -> None:
    assert parse_json(b'\xef\xbb\xbf{"a": 1}', DecodeLimits(), "dev-1") == {"a": 1}


@builders
@pytest.mark.parametrize(
    "payload", [b"42", b'"temperature"', b"null", b"[1, 2]", b"{}", b"[]", b"[{}]"]
)
def test_wrong_shape_is_rejected(builder: PayloadBuilder, fleet: Fleet, payload: bytes) -> None:
    result = decode_raw(builder, fleet, weather(fleet), payload)
    assert result.readings == []
    assert result.rejections
    assert set(reasons(result)) <= {Reason.BAD_SHAPE}


@builders
def test_oversize_payload_is_rejected_before_parsing(builder: PayloadBuilder, fleet: Fleet) -> None:
    good = builder.payload(weather(fleet), {"temperature": 16.0}, RX_MS)
    padded = good + b" " * (64 * 1024 + 1 - len(good))
    result = decode_raw(builder, fleet, weather(fleet), padded)
    assert reasons(result) == [Reason.OVERSIZE]
    small = decode_raw(builder, fleet, weather(fleet), good, DecodeLimits(max_payload_bytes=16))
    assert reasons(small) == [Reason.OVERSIZE]


@builders
def test_garbage_never_raises_and_never_vanishes(builder: PayloadBuilder, fleet: Fleet) -> None:
    rng = random.Random(4)
    good = builder.payload(weather(fleet), {"temperature": 16.0, "humidity": 70}, RX_MS)
    samples: list[bytes] = [
        bytes(rng.randrange(256) for _ in range(rng.randrange(64))) for _ in range(200)
    ]
    for _ in range(300):  # mutated valid payloads reach deeper into each decoder
        mutated = bytearray(good)
        for _ in range(rng.randrange(1, 4)):
            mutated[rng.randrange(len(mutated))] = rng.choice(b'{}[]",:0123456789.-etnaflsu ')
        samples.append(bytes(mutated))
    samples.append(b"[" * 100_000)
    samples.append(json.dumps({"temperature": 10**400}).encode())
    for payload in samples:
        result = decode_raw(builder, fleet, weather(fleet), payload)
        assert result.readings or result.rejections, payload


@builders
def test_unexpected_failure_becomes_bad_shape(builder: PayloadBuilder, fleet: Fleet) -> None:
    class BrokenRegistry:
        by_dev_eui: ClassVar[dict[str, Device]] = {}

        def find(self, *_: object) -> Device:
            raise RuntimeError("registry exploded")

    broken = Fleet(fleet.catalogue, BrokenRegistry())  # type: ignore[arg-type]
    result = run(builder, broken, weather(fleet), {"temperature": 16.0})
    assert reasons(result) == [Reason.BAD_SHAPE]
    assert "registry exploded" in result.rejections[0].message


@pytest.mark.parametrize(
    "payload",
    [
        b'{"ts": 1764300000000, "values": {"pm25": 35.2}}',
        b"[-9223372036854775809, 18446744073709551616, 12345678901234567890123]",
        b'{"v": 1.0000000000000000000000001, "t": 1e400}',
        b'{"v": NaN, "w": -Infinity}',
        b'\xef\xbb\xbf{"v": 1}',
        b"[1, 2,]",
    ],
)
def test_payloads_parse_as_the_standard_library_parses_them(payload: bytes) -> None:
    """orjson takes the fast path only where it reads a payload as ``json`` does. (Text
    that is not UTF-8 is where they part on purpose: see the ``not_utf8`` tests.)"""
    try:
        expected: object = json.loads(payload)
    except (ValueError, TypeError) as err:
        expected = f"payload is not JSON: {err}"
    got = parse_json(payload, DecodeLimits(), "d1")
    if isinstance(got, DecodeResult):
        got = got.rejections[0].message
    assert repr(got) == repr(expected)  # repr: NaN != NaN, and ints must stay ints
