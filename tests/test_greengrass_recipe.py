"""The Greengrass recipe template: schema, variables, access control, size. Fast, no build."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from lookout.greengrass.ipc_publisher import choose_publisher_kind
from lookout.greengrass.package import PackageOptions, PackagingError, code_zip_name, fill_recipe
from lookout.greengrass.recipe import (
    MAX_RECIPE_BYTES,
    TEMPLATE_NAME,
    access_control_problems,
    allowed_topics,
    artifact_digest,
    configuration_references,
    default_configuration,
    dump_recipe,
    load_recipe,
    lower_keys,
    recipe_problems,
    reference_problems,
)
from lookout.topics import Topics

PROJECT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("LOOKOUT_SHARED_DIR", PROJECT.parent / "shared"))
SCHEMA = SHARED / "schemas" / "greengrass-recipe.schema.json"


@pytest.fixture(scope="module")
def template() -> dict:
    return load_recipe(PROJECT / TEMPLATE_NAME)


def validate_against_schema(recipe: dict) -> None:
    """Validate as the Greengrass tooling does: keys lower-cased, size capped. Skips without ../shared."""
    if not SCHEMA.is_file():
        pytest.skip(f"Greengrass recipe schema not found at {SCHEMA} (needs ../shared/schemas beside the project)")
    import jsonschema

    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(lower_keys(recipe)), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors[:10])
    assert len(dump_recipe(recipe).encode()) < MAX_RECIPE_BYTES


def test_template_validates_against_the_published_schema(template):
    validate_against_schema(template)
    assert not recipe_problems(template), recipe_problems(template)


def test_every_configuration_reference_resolves(template):
    refs = configuration_references(template)
    assert {"/deviceId", "/bundleUrl", "/topicPrefix", "/python"} <= refs
    assert reference_problems(template) == []
    # and the check does catch a dangling one
    broken = json.loads(json.dumps(template))
    broken["Manifests"][0]["Lifecycle"]["Setenv"]["X"] = "{configuration:/noSuchKey}"
    assert any("noSuchKey" in p for p in reference_problems(broken))
    # live-applied settings are deliberately not in the lifecycle (changing them must not restart the device)
    assert not refs & {"/threshold", "/margin", "/cooldownSeconds", "/sendCrop", "/logLevel"}


def test_access_control_is_limited_to_lookouts_own_topics(template):
    assert access_control_problems(template) == []
    prefix = default_configuration(template)["topicPrefix"]
    topics = Topics(prefix)
    # exactly the topics the device publishes, as lookout.topics names them, for the thing name
    named = {topics.match("THING"), topics.status("THING"), topics.heartbeat("THING")}
    assert allowed_topics(prefix) == {t.replace("/THING/", "/{iot:thingName}/") for t in named}
    for bad in ("dt/lookout/#", "*", "dt/lookout/+/match", "dt/lookout/relay/deadletter"):
        widened = json.loads(json.dumps(template))
        policy = next(
            iter(
                widened["ComponentConfiguration"]["DefaultConfiguration"]["accessControl"][
                    "aws.greengrass.ipc.mqttproxy"
                ].values()
            )
        )
        policy["resources"].append(bad)
        assert access_control_problems(widened), bad
    subscribing = json.loads(json.dumps(template))
    policy = next(
        iter(
            subscribing["ComponentConfiguration"]["DefaultConfiguration"]["accessControl"][
                "aws.greengrass.ipc.mqttproxy"
            ].values()
        )
    )
    policy["operations"].append("aws.greengrass#SubscribeToIoTCore")
    assert access_control_problems(subscribing)


def test_filled_recipe_names_only_built_artifacts_with_their_digests(template, tmp_path):
    arch_dir = tmp_path / "artifacts"
    arch_dir.mkdir()
    (arch_dir / code_zip_name("x86_64")).write_bytes(b"code")
    (arch_dir / "lookout-models.zip").write_bytes(b"models")
    opts = PackageOptions(
        out=tmp_path,
        project=PROJECT,
        component_name="org.example.Lookout",
        version="1.2.3",
        uri_base="s3://bucket/prefix/",
    )
    recipe, archs = fill_recipe(template, opts, arch_dir)
    assert archs == ["x86_64"] and len(recipe["Manifests"]) == 1
    uris = [a["Uri"] for a in recipe["Manifests"][0]["Artifacts"]]
    assert uris == [
        "s3://bucket/prefix/org.example.Lookout/1.2.3/lookout-device-linux-x86_64.zip",
        "s3://bucket/prefix/org.example.Lookout/1.2.3/lookout-models.zip",
    ]
    assert recipe["Manifests"][0]["Artifacts"][0]["Digest"] == artifact_digest(arch_dir / code_zip_name("x86_64"))
    assert (
        "org.example.Lookout:mqttproxy:1"
        in recipe["ComponentConfiguration"]["DefaultConfiguration"]["accessControl"]["aws.greengrass.ipc.mqttproxy"]
    )
    validate_against_schema(recipe)
    (arch_dir / "lookout-models.zip").unlink()
    with pytest.raises(PackagingError, match=r"lookout-models\.zip"):
        fill_recipe(template, opts, arch_dir)


def test_publisher_selection():
    gg = {"AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT": "/greengrass/v2/ipc.socket", "SVCUID": "x"}
    assert choose_publisher_kind("auto", gg) == "greengrass"
    assert choose_publisher_kind("auto", {}) == "mqtt"
    assert choose_publisher_kind("mqtt", gg) == "mqtt"
    with pytest.raises(Exception, match="not running under the Greengrass nucleus"):
        choose_publisher_kind("greengrass", {})
