"""The `lookout` command as a user runs it: a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from lookout.model_store.catalog import DEFAULT_EMBEDDER

pytestmark = pytest.mark.slow  # see README, Tests


def lookout(*args: str, model_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lookout", *args, "--model-dir", str(model_dir), "--device", "CPU"],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_help_lists_every_part() -> None:
    out = subprocess.run([sys.executable, "-m", "lookout", "--help"], capture_output=True, text=True).stdout
    for command in ("models", "detect", "embed", "bench"):
        assert command in out


def test_detect_json_annotate_and_bad_files(model_store, grace_hopper, tmp_path) -> None:
    good = tmp_path / "grace.jpg"
    cv2.imwrite(str(good), grace_hopper)
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(good.read_bytes()[:300])
    missing = tmp_path / "missing.png"
    annotated = tmp_path / "out.png"
    result = lookout(
        "detect",
        "--jurisdiction",
        "US-CA",
        str(corrupt),
        str(good),
        str(missing),
        "--json",
        "--annotate",
        str(annotated),
        model_dir=model_store.root,
    )
    assert result.returncode == 1
    docs = [json.loads(line) for line in result.stdout.splitlines()]
    assert [d["image"] for d in docs] == [str(good)]
    assert len(docs[0]["faces"]) == 1
    face = docs[0]["faces"][0]
    assert len(face["box"]) == 4 and set(face["keypoints"]) >= {"right_eye", "left_eye", "nose_tip", "mouth"}
    assert face["quality"]["ok"] is True
    assert f"{corrupt}: not a readable image" in result.stderr
    assert f"{missing}: no such file" in result.stderr
    assert cv2.imread(str(tmp_path / "out-grace.png")) is not None


def test_embed_json_prints_unit_vectors(model_store, grace_hopper, tmp_path) -> None:
    path = tmp_path / "grace.png"
    cv2.imwrite(str(path), grace_hopper)
    result = lookout("embed", "--jurisdiction", "US-CA", str(path), "--json", model_dir=model_store.root)
    assert result.returncode == 0, result.stderr
    vector = json.loads(result.stdout)["faces"][0]["embedding"]
    default = model_store.available(DEFAULT_EMBEDDER)  # its PyPI fallback where the OMZ model is not installed
    assert len(vector) == model_store.manifest(default).output_dim
    assert abs(sum(v * v for v in vector) - 1) < 1e-3


def test_models_verify_reports_ok(model_store) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "lookout", "models", "verify", "--model-dir", str(model_store.root)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0
    assert "facenet: ok" in result.stdout
