"""Decoders against the examples their formats' own documents publish.

* SenML: RFC 8428 section 5 examples (names as device URNs ``urn:dev:ow:...``).
* ChirpStack v4: the ``up`` event example of the ChirpStack documentation (integrations,
  event types); it has no ``object`` because no codec is configured there.
* The Things Stack v3: the uplink message example of its "Data Formats" documentation.
Devices named by these examples are registered in small test fleets.
"""

from __future__ import annotations

import json

import pytest
from payload_builders import BuildFleet

from devices.decoding import RECEIVE_TIME, DecodeContext, DecodeResult
from devices.fleet import Fleet
from devices.formats import decode
from devices.topics import match_topic
from kotaflow.wire.reasons import Reason


def decode_on(topic: str, payload: str | bytes, rx_ms: int, fleet: Fleet) -> DecodeResult:
    match = match_topic(topic)
    assert match is not None
    raw = payload.encode() if isinstance(payload, str) else payload
    return decode(raw, match, rx_ms, DecodeContext(fleet))


def reasons(result: DecodeResult) -> list[Reason]:
    return [r.reason for r in result.rejections]


# --- RFC 8428 -------------------------------------------------------------------------

RFC8428_SINGLE_DATAPOINT = '[{"n":"urn:dev:ow:10e2073a01080063","u":"Cel","v":23.1}]'
RFC8428_MULTIPLE_DATAPOINTS = """[
  {"bn":"urn:dev:ow:10e2073a01080063:","n":"voltage","u":"V","v":120.1},
  {"n":"current","u":"A","v":1.2}
]"""
RFC8428_MULTIPLE_DATAPOINTS_AND_TIME = """[
  {"bn":"urn:dev:ow:10e2073a0108006:","bt":1.276020076001e+09,
   "bu":"A","bver":5,
   "n":"voltage","u":"V","v":120.1},
  {"n":"current","t":-5,"v":1.2},
  {"n":"current","t":-4,"v":1.3},
  {"n":"current","t":-3,"v":1.4},
  {"n":"current","t":-2,"v":1.5},
  {"n":"current","t":-1,"v":1.6},
  {"n":"current","v":1.7}
]"""
RFC8428_MULTIPLE_MEASUREMENTS = """[
  {"bn":"urn:dev:ow:10e2073a01080063","bt":1.320067464e+09,
   "bu":"%RH","v":20},
  {"u":"lon","v":24.30621},
  {"u":"lat","v":60.07965},
  {"t":60,"v":20.3},
  {"u":"lon","t":60,"v":24.30622},
  {"u":"lat","t":60,"v":60.07965},
  {"t":120,"v":20.7},
  {"u":"lon","t":120,"v":24.30623},
  {"u":"lat","t":120,"v":60.07966},
  {"u":"%EL","t":150,"v":98},
  {"t":180,"v":21.2},
  {"u":"lon","t":180,"v":24.30628},
  {"u":"lat","t":180,"v":60.07967}
]"""
RFC8428_MULTIPLE_DATA_TYPES = """[
  {"bn":"urn:dev:ow:10e2073a01080063:","n":"temp","u":"Cel","v":23.1},
  {"n":"label","vs":"Machine Room"},
  {"n":"open","vb":false},
  {"n":"nfc-reader","vd":"aGkgCg"}
]"""
RFC8428_COLLECTION_OF_RESOURCES = """[
  {"bn":"2001:db8::2/","bt":1.320078429e+09,
   "n":"temperature","u":"Cel","v":25.2},
  {"n":"humidity","u":"%RH","v":30},
  {"bn":"2001:db8::1/","n":"temperature","u":"Cel","v":12.3},
  {"n":"humidity","u":"%RH","v":67}
]"""


@pytest.fixture(scope="module")
def one_wire_weather(build_fleet: BuildFleet) -> Fleet:
    """A weather station known by the RFC's 1-wire address (as its DevEUI)."""
    return build_fleet({"id": "ow-wx", "type": "weather", "dev_eui": "10e2073a01080063"})


def test_rfc8428_single_datapoint_unit_picks_the_metric(one_wire_weather: Fleet) -> None:
    rx = 1_795_000_000_000
    result = decode_on("kotaflow/ow-wx/senml", RFC8428_SINGLE_DATAPOINT, rx, one_wire_weather)
    assert result.rejections == []
    assert [(r.metric, r.value, r.ts_ms, r.flags) for r in result.readings] == [
        ("temperature", 23.1, rx, (RECEIVE_TIME,))
    ]


def test_rfc8428_multiple_datapoints(build_fleet: BuildFleet) -> None:
    fleet = build_fleet({"id": "ow-lamp", "type": "streetlight", "dev_eui": "10e2073a01080063"})
    result = decode_on("kotaflow/ow-lamp/senml", RFC8428_MULTIPLE_DATAPOINTS, 10**12, fleet)
    assert {r.metric: r.value for r in result.readings} == {"voltage": 120.1, "current": 1.2}


def test_rfc8428_base_time_base_unit_and_relative_times(build_fleet: BuildFleet) -> None:
    # the 1-wire address of this example has 15 digits: it is the device's own id here
    fleet = build_fleet({"id": "10e2073a0108006", "type": "streetlight"})
    bt_ms = 1_276_020_076_001
    result = decode_on(
        "kotaflow/10e2073a0108006/senml", RFC8428_MULTIPLE_DATAPOINTS_AND_TIME, bt_ms + 500, fleet
    )
    assert result.rejections == []
    got = [(r.metric, r.value, r.ts_ms) for r in result.readings]
    assert got[0] == ("voltage", 120.1, bt_ms)
    assert got[1:] == [
        ("current", value, bt_ms - back * 1000)
        for value, back in [(1.2, 5), (1.3, 4), (1.4, 3), (1.5, 2), (1.6, 1), (1.7, 0)]
    ]


def test_rfc8428_multiple_measurements_keep_humidity_reject_position(
    one_wire_weather: Fleet,
) -> None:
    bt_ms = 1_320_067_464_000
    result = decode_on(
        "kotaflow/ow-wx/senml", RFC8428_MULTIPLE_MEASUREMENTS, bt_ms + 200_000, one_wire_weather
    )
    assert [(r.metric, r.value, r.ts_ms - bt_ms) for r in result.readings] == [
        ("humidity", 20.0, 0),
        ("humidity", 20.3, 60_000),
        ("humidity", 20.7, 120_000),
        ("humidity", 21.2, 180_000),
    ]
    # lon/lat (8 records) and %EL (battery %, 1 record) identify no metric of a weather station
    assert reasons(result) == [Reason.UNKNOWN_METRIC] * 9


def test_rfc8428_multiple_data_types(one_wire_weather: Fleet) -> None:
    result = decode_on(
        "kotaflow/ow-wx/senml", RFC8428_MULTIPLE_DATA_TYPES, 10**12, one_wire_weather
    )
    assert [(r.metric, r.value) for r in result.readings] == [("temperature", 23.1)]
    assert sorted(r.metric or "" for r in result.rejections) == ["label", "nfc-reader", "open"]
    assert reasons(result) == [Reason.UNKNOWN_METRIC] * 3


def test_rfc8428_collection_of_other_devices_is_a_mismatch(one_wire_weather: Fleet) -> None:
    result = decode_on(
        "kotaflow/ow-wx/senml",
        RFC8428_COLLECTION_OF_RESOURCES,
        1_320_078_429_000,
        one_wire_weather,
    )
    assert result.readings == []
    assert reasons(result) == [Reason.DEVICE_MISMATCH] * 4


def test_senml_must_understand_label_refuses_the_pack(one_wire_weather: Fleet) -> None:
    pack = json.loads(RFC8428_MULTIPLE_DATAPOINTS)
    pack[1]["rounding_"] = "floor"
    result = decode_on("kotaflow/ow-wx/senml", json.dumps(pack), 10**12, one_wire_weather)
    assert (result.readings, reasons(result)) == ([], [Reason.MUST_UNDERSTAND])
    assert "rounding_" in result.rejections[0].message


def test_senml_newer_version_refuses_the_pack(one_wire_weather: Fleet) -> None:
    pack = [{"bver": 11, "n": "temperature", "v": 20}]
    result = decode_on("kotaflow/ow-wx/senml", json.dumps(pack), 10**12, one_wire_weather)
    assert reasons(result) == [Reason.UNSUPPORTED_VERSION]


def test_senml_names_with_a_device_prefix_must_name_the_topic_device(fleet: Fleet) -> None:
    pack = [
        {"bn": "manggarai/t-wx-01/", "n": "temperature", "v": 19.0},
        {"n": "humidity", "v": 70},
        {"bn": "urn:dev:mac:a84041000000beef:", "n": "rain", "v": 0.2},
        {"bn": "t-wx-02/", "n": "temperature", "v": 30.0},
    ]
    result = decode_on("kotaflow/t-wx-01/senml", json.dumps(pack), 10**12, fleet)
    assert [r.metric for r in result.readings] == ["temperature", "humidity", "rain"]
    assert reasons(result) == [Reason.DEVICE_MISMATCH]
    assert "t-wx-02/temperature" in result.rejections[0].message


def test_senml_sum_and_string_values_are_refused_one_by_one(fleet: Fleet) -> None:
    pack = [
        {"bn": "t-wx-01/", "n": "rain", "s": 12.5},
        {"n": "temperature", "vs": "warm"},
        {"n": "humidity", "v": 70, "vb": True},
        {"n": "pressure", "v": 870, "t": "yesterday"},
        {"n": "rain", "v": 0.5},
    ]
    result = decode_on("kotaflow/t-wx-01/senml", json.dumps(pack), 10**12, fleet)
    assert [r.metric for r in result.readings] == ["rain"]
    assert reasons(result) == [
        Reason.BAD_TYPE,
        Reason.BAD_TYPE,
        Reason.BAD_SHAPE,
        Reason.BAD_TIME,
    ]


def test_senml_base_value_is_added(fleet: Fleet) -> None:
    pack = [{"bn": "t-wx-01/", "bv": 860, "n": "pressure", "u": "hPa", "v": 12.5}]
    result = decode_on("kotaflow/t-wx-01/senml", json.dumps(pack), 10**12, fleet)
    assert [r.value for r in result.readings] == [872.5]


# --- ChirpStack v4 ----------------------------------------------------------------------

CHIRPSTACK_V4_UP = """{
	"deduplicationId": "3ac7e3c4-4401-4b8d-9386-a5c902f9202d",
	"time": "2022-07-18T09:34:15.775023242+00:00",
	"deviceInfo": {
		"tenantId": "52f14cd4-c6f1-4fbd-8f87-4025e1d49242",
		"tenantName": "ChirpStack",
		"applicationId": "17c82e96-be03-4f38-aef3-f83d48582d97",
		"applicationName": "Test application",
		"deviceProfileId": "14855bf7-d10d-4aee-b618-ebfcb64dc7ad",
		"deviceProfileName": "Test device-profile",
		"deviceName": "Test device",
		"devEui": "0101010101010101",
		"tags": {
			"key": "value"
		}
	},
	"devAddr": "00189440",
	"dr": 1,
	"fPort": 1,
	"data": "qg==",
	"rxInfo": [{
		"gatewayId": "0016c001f153a14c",
		"uplinkId": 4217106255,
		"rssi": -36,
		"snr": 10.5,
		"context": "E3OWOQ==",
		"metadata": {
			"region_name": "eu868",
			"region_common_name": "EU868"
		}
	}],
	"txInfo": {
		"frequency": 867100000,
		"modulation": {
			"lora": {
				"bandwidth": 125000,
				"spreadingFactor": 11,
				"codeRate": "CR_4_5"
			}
		}
	}
}"""
CHIRPSTACK_TOPIC = (
    "application/17c82e96-be03-4f38-aef3-f83d48582d97/device/0101010101010101/event/up"
)
CHIRPSTACK_TIME_MS = 1_658_136_855_775
"""2022-07-18T09:34:15.775Z"""


@pytest.fixture(scope="module")
def chirpstack_fleet(build_fleet: BuildFleet) -> Fleet:
    return build_fleet({"id": "cs-rg", "type": "rain_gauge", "dev_eui": "0101010101010101"})


def test_chirpstack_documented_uplink_without_codec_is_refused(chirpstack_fleet: Fleet) -> None:
    result = decode_on(
        CHIRPSTACK_TOPIC, CHIRPSTACK_V4_UP, CHIRPSTACK_TIME_MS + 900, chirpstack_fleet
    )
    assert reasons(result) == [Reason.BAD_SHAPE]
    assert "codec" in result.rejections[0].message
    assert result.rejections[0].device_id == "cs-rg"


def test_chirpstack_documented_uplink_with_decoded_object(chirpstack_fleet: Fleet) -> None:
    event = json.loads(CHIRPSTACK_V4_UP)
    event["object"] = {"rain": 0.2, "rain_rate": {"v": 0.1, "u": "in/h"}, "battery": 3.61}
    result = decode_on(
        CHIRPSTACK_TOPIC, json.dumps(event), CHIRPSTACK_TIME_MS + 900, chirpstack_fleet
    )
    assert result.rejections == []
    assert {r.metric: r.value for r in result.readings} == pytest.approx(
        {"rain": 0.2, "rain_rate": 2.54, "battery": 3.61}
    )
    assert {(r.device_id, r.ts_ms) for r in result.readings} == {("cs-rg", CHIRPSTACK_TIME_MS)}


def test_chirpstack_topic_and_payload_deveui_must_agree(chirpstack_fleet: Fleet) -> None:
    event = json.loads(CHIRPSTACK_V4_UP)
    event["deviceInfo"]["devEui"] = "0202020202020202"
    event["object"] = {"rain": 0.2}
    result = decode_on(CHIRPSTACK_TOPIC, json.dumps(event), CHIRPSTACK_TIME_MS, chirpstack_fleet)
    assert reasons(result) == [Reason.DEVICE_MISMATCH]


def test_chirpstack_v3_shaped_uplink_is_unsupported(chirpstack_fleet: Fleet) -> None:
    v3_shaped = {
        "applicationID": "1",
        "applicationName": "rain",
        "deviceName": "cs-rg",
        "devEUI": "AQEBAQEBAQE=",
        "fCnt": 10,
        "fPort": 1,
        "data": "qg==",
        "objectJSON": '{"rain":0.2}',
    }
    result = decode_on(CHIRPSTACK_TOPIC, json.dumps(v3_shaped), 10**12, chirpstack_fleet)
    assert reasons(result) == [Reason.UNSUPPORTED_VERSION]
    assert "objectJSON" in result.rejections[0].message


# --- The Things Stack v3 -----------------------------------------------------------------

TTS_V3_UPLINK = """{
  "end_device_ids" : {
    "device_id" : "dev1",
    "application_ids" : {
      "application_id" : "app1"
    },
    "dev_eui" : "0004A30B001C0530",
    "join_eui" : "800000000000000C",
    "dev_addr" : "00BCB929"
  },
  "correlation_ids" : [
    "as:up:01E0WZGT6Y7657CPFPE5WEYDSQ",
    "gs:conn:01E0WDEC6T5T4XXBAX7S1VMFKE",
    "gs:uplink:01E0WZGSZWT07NE5TS2APTV1Z9",
    "ns:uplink:01E0WZGSZXZXZS8RFAWZX0F2FY",
    "rpc:/ttn.lorawan.v3.GsNs/HandleUplink:01E0WZGSZXGE1KS577PFBWRJEE"
  ],
  "received_at" : "2020-02-12T15:15:46.014773143Z",
  "uplink_message" : {
    "session_key_id" : "AXA50tHUGUucuzS/bCGMNw==",
    "f_cnt" : 1,
    "frm_payload" : "gkHe",
    "decoded_payload" : {
      "temperature": 1.0,
      "luminosity": 0.64
    },
    "rx_metadata" : [ {
      "gateway_ids" : {
        "gateway_id" : "gtw1",
        "eui" : "9C5C8E00001A05C4"
      },
      "time" : "2020-02-12T15:15:45.787Z",
      "timestamp" : 2463457000,
      "rssi" : -35,
      "channel_rssi" : -35,
      "snr" : 5,
      "uplink_token" : "ChIKEAoEZ3R3MRIInFyOAAAaBcQQ6L3Vlgk=",
      "channel_index" : 2
    } ],
    "settings" : {
      "data_rate" : {
        "lora" : {
          "bandwidth" : 125000,
          "spreading_factor" : 7
        }
      },
      "data_rate_index" : 5,
      "coding_rate" : "4/6",
      "frequency" : "868300000",
      "timestamp" : 2463457000,
      "time" : "2020-02-12T15:15:45.787Z"
    },
    "consumed_airtime": "0.056576s",
    "locations": {
      "user": {
        "latitude": 37.97155556731436,
        "longitude": 23.72678801175413,
        "altitude": 10,
        "source": "SOURCE_REGISTRY"
      }
    },
    "received_at" : "2020-02-12T15:15:45.789585559Z"
  }
}"""
TTS_TIME_MS = 1_581_520_546_014
"""2020-02-12T15:15:46.014Z, the application server's received_at."""


@pytest.fixture(scope="module")
def tts_fleet(build_fleet: BuildFleet) -> Fleet:
    return build_fleet(
        {"id": "tts-wx", "type": "weather", "tts_device_id": "dev1", "dev_eui": "0004a30b001c0530"},
        {"id": "other", "type": "weather", "dev_eui": "0004a30b00000002"},
        {"id": "by-eui-only", "type": "weather", "dev_eui": "0004a30b00000003"},
    )


def test_tts_documented_uplink(tts_fleet: Fleet) -> None:
    result = decode_on("v3/app1@ttn/devices/dev1/up", TTS_V3_UPLINK, TTS_TIME_MS + 50, tts_fleet)
    assert [(r.device_id, r.metric, r.value, r.ts_ms) for r in result.readings] == [
        ("tts-wx", "temperature", 1.0, TTS_TIME_MS)
    ]
    assert [(r.reason, r.metric) for r in result.rejections] == [
        (Reason.UNKNOWN_METRIC, "luminosity")
    ]


def test_tts_device_found_by_deveui_when_the_id_is_not_registered(tts_fleet: Fleet) -> None:
    uplink = json.loads(TTS_V3_UPLINK)
    uplink["end_device_ids"].update(device_id="renamed-on-tts", dev_eui="0004A30B00000003")
    result = decode_on(
        "v3/app1@ttn/devices/renamed-on-tts/up", json.dumps(uplink), TTS_TIME_MS, tts_fleet
    )
    assert [r.device_id for r in result.readings] == ["by-eui-only"]


@pytest.mark.parametrize(
    ("topic_device", "payload_ids"),
    [
        ("dev1", {"device_id": "dev2"}),
        ("dev1", {"dev_eui": "0004A30B00000002"}),
        ("dev1", {"dev_eui": "0004A30BFFFFFFFF"}),
    ],
    ids=["topic-vs-payload-id", "id-vs-other-devices-eui", "id-vs-unregistered-eui"],
)
def test_tts_ids_naming_different_devices_are_a_mismatch(
    tts_fleet: Fleet, topic_device: str, payload_ids: dict[str, str]
) -> None:
    uplink = json.loads(TTS_V3_UPLINK)
    uplink["end_device_ids"].update(payload_ids)
    result = decode_on(
        f"v3/app1@ttn/devices/{topic_device}/up", json.dumps(uplink), TTS_TIME_MS, tts_fleet
    )
    assert (result.readings, reasons(result)) == ([], [Reason.DEVICE_MISMATCH])


def test_tts_uplink_without_payload_formatter_is_refused(tts_fleet: Fleet) -> None:
    uplink = json.loads(TTS_V3_UPLINK)
    del uplink["uplink_message"]["decoded_payload"]
    result = decode_on("v3/app1@ttn/devices/dev1/up", json.dumps(uplink), TTS_TIME_MS, tts_fleet)
    assert reasons(result) == [Reason.BAD_SHAPE]
    assert "payload formatter" in result.rejections[0].message


def test_ttn_v2_uplink_is_unsupported(tts_fleet: Fleet) -> None:
    v2 = {
        "app_id": "app1",
        "dev_id": "dev1",
        "hardware_serial": "0004A30B001C0530",
        "payload_fields": {"temperature": 1.0},
    }
    result = decode_on("v3/app1@ttn/devices/dev1/up", json.dumps(v2), TTS_TIME_MS, tts_fleet)
    assert reasons(result) == [Reason.UNSUPPORTED_VERSION]
