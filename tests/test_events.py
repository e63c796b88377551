"""The match event: the pydantic model and the published JSON Schema accept exactly the same messages."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import timedelta
from pathlib import Path

import jsonschema
import pytest

from lookout.errors import InputError
from lookout.events import MAX_CROP_BYTES, DeviceStatus, Heartbeat, MatchEvent, parse_match_event, utc_now

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "schemas" / "match-event.v1.json"
DIGEST = "0123456789abcdef" * 4
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 100


def _valid() -> dict:
    return {
        "schema_version": "1",
        "event_id": "6f1c2f0e-8a9b-4c3d-9e2f-0a1b2c3d4e5f",
        "device_id": "cam-01",
        "seen_at": "2025-01-31T12:00:00.123Z",
        "expires_at": "2025-01-31T12:05:00.123Z",
        "person_id": "p-42",
        "score": 0.81,
        "margin": 0.12,
        "track_length": 7,
        "model": {"name": "facenet-512", "digest": DIGEST},
        "bundle_version": "2025.01.3",
        "policy_version": "pol-7",
        "box": [10, 20, 110, 140],
    }


def _with(**changes) -> dict:
    doc = _valid()
    for key, value in changes.items():
        if value is ...:
            doc.pop(key)
        else:
            doc[key] = value
    return doc


VALID = {
    "minimal": _valid(),
    "all_optional": _with(
        gallery_id="missing-nl",
        crop_jpeg_b64=base64.b64encode(JPEG).decode(),
        device_name="Front door",
        location={"name": "Main St 1", "lat": 52.37, "lon": 4.89},
    ),
    "optional_nulls": _with(gallery_id=None, crop_jpeg_b64=None, device_name=None, location=None),
    "plus_zero_offset": _with(seen_at="2025-01-31T12:00:00+00:00"),
    "no_fraction": _with(seen_at="2025-01-31T12:00:00Z"),
    "integer_score": _with(score=1),
    "integral_float_count": _with(track_length=7.0, box=[10.0, 20, 110, 140]),
    "negative_score": _with(score=-0.2),
    "sha256_prefix": _with(model={"name": "m", "digest": "sha256:" + DIGEST}),
    "uppercase_uuid": _with(event_id="6F1C2F0E-8A9B-4C3D-9E2F-0A1B2C3D4E5F"),
    "empty_location": _with(location={}),
    "max_crop": _with(crop_jpeg_b64=base64.b64encode(b"\xff\xd8\xff" + b"\x00" * (MAX_CROP_BYTES - 3)).decode()),
}

INVALID = {
    "missing_event_id": _with(event_id=...),
    "missing_box": _with(box=...),
    "wrong_version": _with(schema_version="2"),
    "version_as_int": _with(schema_version=1),
    "not_uuid": _with(event_id="not-a-uuid"),
    "uuid_without_dashes": _with(event_id="6f1c2f0e8a9b4c3d9e2f0a1b2c3d4e5f"),
    "urn_uuid": _with(event_id="urn:uuid:6f1c2f0e-8a9b-4c3d-9e2f-0a1b2c3d4e5f"),
    "device_with_slash": _with(device_id="cam/1"),
    "device_wildcard": _with(device_id="cam+"),
    "empty_person": _with(person_id=""),
    "long_person": _with(person_id="x" * 129),
    "score_string": _with(score="0.8"),
    "score_too_high": _with(score=1.5),
    "negative_margin": _with(margin=-0.1),
    "track_zero": _with(track_length=0),
    "track_fraction": _with(track_length=7.5),
    "track_bool": _with(track_length=True),
    "box_three": _with(box=[1, 2, 3]),
    "box_five": _with(box=[1, 2, 3, 4, 5]),
    "box_negative": _with(box=[-1, 2, 3, 4]),
    "box_float": _with(box=[1.5, 2, 3, 4]),
    "local_time": _with(seen_at="2025-01-31T13:00:00+01:00"),
    "no_timezone": _with(seen_at="2025-01-31T12:00:00"),
    "epoch_time": _with(seen_at=1738324800),
    "date_only": _with(expires_at="2025-01-31"),
    "unknown_field": _with(colour="blue"),
    "model_missing_digest": _with(model={"name": "m"}),
    "model_bad_digest": _with(model={"name": "m", "digest": "xyz"}),
    "model_extra": _with(model={"name": "m", "digest": DIGEST, "x": 1}),
    "crop_not_jpeg": _with(crop_jpeg_b64=base64.b64encode(b"\x89PNG....").decode()),
    "crop_too_big": _with(crop_jpeg_b64=base64.b64encode(b"\xff\xd8\xff" + b"\x00" * MAX_CROP_BYTES).decode()),
    "crop_not_base64": _with(crop_jpeg_b64="/9j/@@@@"),
    "lat_out_of_range": _with(location={"lat": 91.0}),
    "location_extra": _with(location={"city": "x"}),
    "bundle_empty": _with(bundle_version=""),
    "gallery_number": _with(gallery_id=5),
}


@pytest.fixture(scope="module")
def validator() -> jsonschema.Validator:
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_examples_pass_model_and_schema(name, validator):
    doc = VALID[name]
    validator.validate(doc)
    event = parse_match_event(json.dumps(doc).encode())
    assert str(event.event_id) == doc["event_id"].lower()


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_examples_fail_model_and_schema(name, validator):
    doc = INVALID[name]
    assert not validator.is_valid(doc), f"schema accepted {name}"
    with pytest.raises(InputError):
        parse_match_event(json.dumps(doc).encode())


def test_created_event_round_trips_and_matches_schema(validator):
    event = MatchEvent.create(
        device_id="cam-1",
        person_id="p1",
        score=0.9,
        margin=0.3,
        track_length=4,
        model={"name": "m", "digest": DIGEST},
        bundle_version="b",
        policy_version="p",
        box=(1, 2, 3, 4),
        crop_jpeg=JPEG,
        ttl=timedelta(seconds=30),
    )
    wire = event.to_json()
    validator.validate(json.loads(wire))
    again = parse_match_event(wire)
    assert again == event
    assert again.crop_jpeg() == JPEG
    assert again.expires_at - again.seen_at == timedelta(seconds=30)
    assert not again.is_stale()
    assert again.is_stale(again.expires_at)
    assert b"null" not in wire  # absent optionals are left out


@pytest.mark.parametrize(
    "payload, reason",
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "expected a JSON object, got list"),
        (b'{"schema_version": "9"}', "unsupported schema_version '9'"),
        (b"\xff\xfe", "not JSON"),
        (b"{" + b" " * 70_000 + b"}", "more than the 65536 allowed"),
        (json.dumps(_with(score=3)).encode(), "score: Input should be less than or equal to 1"),
    ],
)
def test_parse_errors_name_the_input_and_reason(payload, reason):
    with pytest.raises(InputError) as err:
        parse_match_event(payload, source="message on dt/lookout/cam-1/match")
    assert err.value.source == "message on dt/lookout/cam-1/match"
    assert reason in err.value.reason


def test_status_and_heartbeat_models():
    status = DeviceStatus(device_id="cam-1", state="online", at=utc_now(), bundle_version="b1")
    assert DeviceStatus.model_validate_json(status.model_dump_json()) == status
    beat = Heartbeat(device_id="cam-1", at=utc_now(), fps=24.5, stage_ms={"detect": 9.1}, queue_depth=0)
    assert Heartbeat.model_validate_json(beat.model_dump_json()).fps == 24.5
    with pytest.raises(ValueError):
        DeviceStatus.model_validate_json(
            json.dumps({"device_id": "cam-1", "state": "sleeping", "at": "2025-01-01T00:00:00Z"})
        )


def test_schema_and_model_list_the_same_fields():
    schema = json.loads(SCHEMA_PATH.read_text())
    assert set(schema["properties"]) == set(MatchEvent.model_fields)
    required = {n for n, f in MatchEvent.model_fields.items() if f.is_required()} | {"schema_version"}
    assert set(schema["required"]) == required
    assert uuid.UUID(VALID["minimal"]["event_id"])
