"""Lookout: edge-first face recognition.

Parts (one folder each, all importable as ``lookout.<part>``):

- ``lookout.face``   the face pipeline core: detect, quality, align, embed.
- ``lookout.models`` (``models/``) fetch, convert, verify and describe models.
- ``lookout.sync``   (``sync/``)   gallery ingest, enrolment, index bundles, device sync.
- ``lookout.device`` (``device/``) the camera runtime: frames to match events over MQTT.
- ``lookout.relay``  (``relay/``)  match events to SMS and webhook alerts.
"""

__version__ = "0.1.0"
