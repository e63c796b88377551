"""The one face pipeline: each model a uniform stage (sync and async alike), one enrolment rule
shared by the gallery build and the evaluation."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from lookout.evaluation.datasets import PhotoCapture
from lookout.face.subject import NO_FACE, NO_FACE_IN_BOX, SEVERAL_FACES, SubjectRule, choose_subject
from lookout.face.types import Face
from lookout.gallery.policy import Policy
from lookout.sync.enrol import ENROLLED, FAILED, Enroller
from lookout.sync.records import PhotoRecord
from tests.helpers import PROJECT_ROOT
from tests.test_import_rules import PARTS


def _face(x: float, y: float, size: float) -> Face:
    box = np.array([x, y, x + size, y + size], np.float32)
    return Face(box, 0.9, np.zeros((6, 2), np.float32))


# -- the enrolment rule, alone ------------------------------------------------------------------


def test_the_default_rule_keeps_a_clearly_dominant_face_and_refuses_a_tie():
    big, small, close = _face(0, 0, 100), _face(200, 0, 30), _face(400, 0, 90)
    assert choose_subject([]).reason == NO_FACE
    assert choose_subject([small]).face is small
    assert choose_subject([small, big]).face is big  # 11x the area: the person the photo is of
    tie = choose_subject([big, close])
    assert tie.face is None and tie.reason == SEVERAL_FACES and "2 faces" in tie.detail
    refused = choose_subject([big, small], rule=SubjectRule(several_faces="refuse"))
    assert refused.face is None and refused.reason == SEVERAL_FACES


def test_enrolment_refuses_only_faces_too_small_to_carry_identity():
    rule = SubjectRule()
    assert rule.refusals(("pose_yaw", "too_blurred")) == ()
    assert rule.refusals(("too_small", "pose_yaw")) == ("too_small",)


def test_a_box_says_which_face_and_a_box_on_nobody_is_refused():
    left, right = _face(0, 0, 100), _face(300, 0, 100)
    assert choose_subject([left, right], box=(290, 0, 400, 100)).face is right
    missed = choose_subject([left, right], box=(150, 150, 250, 250))
    assert missed.face is None and missed.reason == NO_FACE_IN_BOX and "best IoU 0.00" in missed.detail


def test_a_dominant_face_is_kept_only_when_the_rule_says_so_and_it_clearly_dominates():
    dominant = SubjectRule(several_faces="dominant", dominant_ratio=2.0)
    big, small, close = _face(0, 0, 100), _face(200, 0, 30), _face(400, 0, 90)
    assert choose_subject([small, big], rule=dominant).face is big  # 11x the area
    tie = choose_subject([big, close], rule=dominant)
    assert tie.face is None and tie.reason == SEVERAL_FACES and "under 2x" in tie.detail
    assert choose_subject([big, close], rule=SubjectRule(several_faces="largest")).face is big


# -- stages: one code path, two forms -------------------------------------------------------------


def test_async_stages_give_what_the_synchronous_calls_give(pipeline, grace_hopper, astronaut):
    for image in (grace_hopper, astronaut):
        faces = pipeline.detector.run(image)
        pending = pipeline.submit_detection(image)
        streamed = pipeline.collect_detection(pending)
        assert len(faces) == len(streamed) == 1
        assert np.allclose(faces[0].box, streamed[0].box) and np.allclose(faces[0].keypoints, streamed[0].keypoints)
    chips = np.concatenate([pipeline.align(im, pipeline.detect(im)) for im in (grace_hopper, astronaut)])
    chips = np.concatenate([chips] * 10)  # 20 chips: several requests of at most embed_batch each
    vectors = pipeline.embed(chips)
    streamed = pipeline.collect_embedding(pipeline.submit_embedding(chips))
    assert vectors.shape == (20, pipeline.embedder.dim) and np.allclose(vectors, streamed, atol=1e-5)
    assert pipeline.collect_embedding(pipeline.submit_embedding(chips[:0])).shape == (0, pipeline.embedder.dim)


def test_nothing_outside_a_stage_reaches_into_its_compiled_model():
    """prepare/infer/decode are the stage's own: no module runs a model's requests by hand."""
    reach = re.compile(r"\.(_?compiled|create_infer_request)\b")
    offenders = [
        f"{path.relative_to(PROJECT_ROOT)}:{n} {line.strip()}"
        for path in (p for folder in ("lookout", *PARTS) for p in (PROJECT_ROOT / folder).rglob("*.py"))
        if path.name != "stage.py"
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if reach.search(line)
    ]
    assert not offenders, offenders


# -- build and evaluation enrol the same way -------------------------------------------------------


@pytest.fixture(scope="module")
def two_people_photo(grace_hopper, astronaut, tmp_path_factory) -> Path:
    """Two real faces side by side, one about three times the other's width."""
    big = cv2.resize(astronaut, (600, 600))
    small = cv2.resize(grace_hopper, (200, int(200 * grace_hopper.shape[0] / grace_hopper.shape[1])))
    canvas = np.full((600, 900, 3), 128, np.uint8)
    canvas[:, :600] = big
    canvas[100 : 100 + small.shape[0], 650:850] = small
    path = tmp_path_factory.mktemp("photos") / "two.png"
    cv2.imwrite(str(path), canvas)
    return path


def _build_result(pipeline, photo: Path, rule: SubjectRule | None):
    record = PhotoRecord(person_id="p1", name="Eileen", photo=str(photo), jurisdiction="US-TX")
    return Enroller(pipeline, Policy.default(), rule=rule).enrol(record)


def test_build_and_evaluation_refuse_the_same_multi_face_photo_when_told_to(pipeline, two_people_photo):
    refuse = SubjectRule(several_faces="refuse")
    built = _build_result(pipeline, two_people_photo, refuse)
    measured, chip = PhotoCapture(pipeline, quality_gate=True, enrolment_rule=refuse).capture(
        two_people_photo, "p1", "two", enrolment=True
    )
    assert built.status == FAILED and built.reason == SEVERAL_FACES
    assert measured.reasons == (SEVERAL_FACES,) and chip is None


def test_build_and_evaluation_keep_the_dominant_face_by_default(pipeline, two_people_photo):
    rule = None  # the default rule: a clearly dominant face is the subject
    built = _build_result(pipeline, two_people_photo, rule)
    measured, chip = PhotoCapture(pipeline, quality_gate=True, enrolment_rule=rule).capture(
        two_people_photo, "p1", "two", enrolment=True
    )
    assert built.status == ENROLLED and measured.ok and chip is not None
    assert built.box is not None and built.box[2] <= 610  # the large face, on the left
    assert float(np.dot(built.embedding, pipeline.embed(chip[None])[0])) > 0.999
