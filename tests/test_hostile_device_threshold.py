"""The device's own threshold under the rule of an operator's (attack finding A31).

``recognition.threshold`` (config, ``--set``, a Greengrass live update) used to be applied whatever it predicted:
-0.5 matches every face in view to its nearest person. Now it is judged at the gallery's size: predicted far above
the gallery's target, it is refused at start and in ``--check-config`` (which prints the threshold actually in use),
and not applied as a live update, unless ``recognition.accept_fpir: true``; the threshold in use and its predicted
FPIR are exported. Real models, a real signed bundle.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from lookout.device.check import check_config
from lookout.device.config import DeviceConfig
from lookout.device.publisher import MemoryPublisher
from lookout.device.runtime import RecognitionRefused, Runtime
from lookout.gallery.keys import generate_keys
from lookout.sync.build import build_gallery
from lookout.sync.records import PhotoRecord

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, pipeline, grace_hopper, astronaut):
    root = tmp_path_factory.mktemp("threshold-bundle")
    private, public = generate_keys(root / "keys")
    cv2.imwrite(str(root / "grace.jpg"), grace_hopper)
    cv2.imwrite(str(root / "eileen.jpg"), astronaut)
    records = [
        PhotoRecord(person_id=p, name=p.title(), photo=str(root / f"{p}.jpg"), jurisdiction="US-NY")
        for p in ("grace", "eileen")
    ]
    build_gallery(records, root / "v1", private, pipeline, progress=False)
    frames = root / "frames"
    frames.mkdir()
    cv2.imwrite(str(frames / "empty.png"), np.full((240, 320, 3), 128, np.uint8))  # nobody in view
    return root, public


def _cfg(root, public, tmp_path, **recognition) -> DeviceConfig:
    return DeviceConfig.model_validate(
        {
            "device_id": "cam-threshold",
            "location": {"jurisdiction": "US-NY"},
            "source": {"url": str(root / "frames"), "realtime": False},
            "models": {"device": "CPU"},
            "recognition": recognition,
            "gallery": {"bundle_dir": str(root / "v1"), "public_key": str(public)},
            "outbox": {"path": str(tmp_path / "outbox.sqlite")},
        }
    )


def _check(cfg: DeviceConfig) -> list[str]:
    lines: list[str] = []
    check_config(cfg, out=lines.append)
    return lines


def test_check_config_judges_the_override_and_prints_the_threshold_in_use(bundle, tmp_path):
    root, public = bundle
    (line,) = [x for x in _check(_cfg(root, public, tmp_path, threshold=-0.5)) if "threshold:" in x and "FAIL" in x]
    assert "override (recognition.threshold)" in line and "recognition.accept_fpir" in line
    accepted = _check(_cfg(root, public, tmp_path, threshold=-0.5, accept_fpir=True))
    assert [x for x in accepted if x.startswith("ok    threshold: in use -0.5, override")], accepted
    own = _check(_cfg(root, public, tmp_path))
    assert [x for x in own if x.startswith("ok    threshold: in use") and "the gallery's" in x], own


def test_the_device_refuses_to_start_with_an_override_far_above_the_target(bundle, tmp_path, pipeline):
    root, public = bundle
    runtime = Runtime(_cfg(root, public, tmp_path, threshold=-0.5), pipeline=pipeline, publisher=MemoryPublisher())
    with pytest.raises(RecognitionRefused, match=r"recognition.threshold -0.5: predicted FPIR .*accept_fpir"):
        runtime.run()
    accepted = Runtime(
        _cfg(root, public, tmp_path, threshold=-0.5, accept_fpir=True), pipeline=pipeline, publisher=MemoryPublisher()
    )
    assert accepted.run() == 0
    text = accepted.metrics.prometheus("cam-threshold")
    assert 'lookout_threshold{device="cam-threshold"} -0.5' in text
    assert 'lookout_predicted_fpir{device="cam-threshold"} 1' in text


def test_a_live_update_far_above_the_target_is_not_applied(bundle, tmp_path, pipeline):
    root, public = bundle
    runtime = Runtime(_cfg(root, public, tmp_path), pipeline=pipeline, publisher=MemoryPublisher())
    runtime.galleries.open(pipeline.embedder.digest)
    runtime.apply_live(threshold=-0.5, min_margin=0.1, cooldown_s=30, crop=False)
    assert runtime.tuning.threshold is None and runtime.decider.min_margin == 0.1  # the rest is applied
    runtime.apply_live(threshold=0.5, min_margin=0.1, cooldown_s=30, crop=False)
    assert runtime.tuning.threshold == 0.5 and runtime.metrics.threshold == 0.5
    assert runtime.metrics.predicted_fpir is not None and runtime.metrics.predicted_fpir < 0.01


def test_an_override_that_would_never_match_anyone_needs_accept_fnir(bundle, tmp_path, pipeline):
    """A41: 0.99 (a typo for 0.35) keeps a missing-persons camera silent while it reports healthy."""
    root, public = bundle
    lines = _check(_cfg(root, public, tmp_path, threshold=0.99))
    (line,) = [x for x in lines if x.startswith("FAIL  threshold")]
    assert "FNIR 100%" in line and "recognition.accept_fnir" in line
    accepted = _check(_cfg(root, public, tmp_path, threshold=0.99, accept_fnir=True))
    assert [x for x in accepted if x.startswith("ok    threshold: in use 0.99")], accepted
    runtime = Runtime(_cfg(root, public, tmp_path, threshold=0.99), pipeline=pipeline, publisher=MemoryPublisher())
    with pytest.raises(RecognitionRefused, match="predicted FNIR"):
        runtime.run()
    live = Runtime(_cfg(root, public, tmp_path), pipeline=pipeline, publisher=MemoryPublisher())
    live.galleries.open(pipeline.embedder.digest)
    live.apply_live(threshold=0.99, min_margin=0.05, cooldown_s=60, crop=False)
    assert live.tuning.threshold is None
