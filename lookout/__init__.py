"""Lookout: edge-first face recognition.

``lookout/`` is the shared core, and imports no part:

- ``lookout.face``         the one face pipeline: detect, align, assess quality, embed
- ``lookout.gallery``      the gallery contract: bundle format, verification, reading, search, deltas, sync
- ``lookout.model_store``  which models exist and the verified local model cache
- ``events``, ``topics``, ``mqtt``  the MQTT contract and connection settings
- ``errors``, ``log``, ``digest``, ``config_file``, ``http_client``, ``metrics_server``, ``mosquitto``

Parts, one top-level folder each, all imported as ``lookout.<part>``:

- ``lookout.models``      (``models/``)      fetch, convert, quantise models into the store
- ``lookout.sync``        (``sync/``)        ingest, enrol, build, seal and publish galleries (cloud side)
- ``lookout.device``      (``device/``)      the camera runtime: frames to match events over MQTT
- ``lookout.relay``       (``relay/``)       match events to SMS and webhook alerts
- ``lookout.evaluation``  (``evaluation/``)  measured accuracy and threshold calibration
- ``lookout.greengrass``  (``greengrass/``)  the AWS IoT Greengrass component

and the top, which may use them all: ``lookout.cli`` (``cli/``, the `lookout` command) and
``lookout.demo`` (``demo/``). tests/test_import_rules.py enforces the layering.
"""

__version__ = "0.1.0"
