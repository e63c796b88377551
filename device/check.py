"""`lookout run --check-config`: validate the config and everything it points at, without running.

Checks: models present and intact in the model store, the policy file and whether it
allows recognition at the device's location, the public key, the gallery bundle
(signature, files, model digest, policy), the source (files and folders are opened;
cameras and streams are only described, opening them may take long), the MQTT TLS
files, and that the outbox folder is writable. Prints one line per check; exit 0 when
all pass, 2 otherwise.
"""

from __future__ import annotations

import os

from lookout.device.config import DeviceConfig
from lookout.device.runtime import check_jurisdiction, load_policy
from lookout.device.sources import CaptureSource, open_source
from lookout.device.threshold_guard import judge
from lookout.errors import LookoutError
from lookout.gallery.reader import load_bundle
from lookout.gallery.store import BundleStore
from lookout.model_store.store import ModelStore
from lookout.mqtt import tls_context
from lookout.redact import redact_url


def check_config(cfg: DeviceConfig, out=print) -> int:
    problems = 0

    def ok(what: str, detail: str = "") -> None:
        out(f"ok    {what}" + (f": {detail}" if detail else ""))

    def bad(what: str, detail: str) -> None:
        nonlocal problems
        problems += 1
        out(f"FAIL  {what}: {detail}")

    ok(
        "config",
        f"device {cfg.device_id}, source {redact_url(cfg.source.url)}, mqtt {cfg.mqtt.host}:{cfg.mqtt.port}, "
        f"topics {cfg.mqtt.topic_prefix}/{cfg.device_id}/...",
    )
    digest = None
    try:
        store = ModelStore(cfg.models.model_dir)
        for name in (cfg.models.detector, cfg.models.embedder):
            status = store.status(name)
            if status.ok:
                ok(f"model {name}")
            else:
                bad(
                    f"model {name}",
                    "; ".join(getattr(status, "problems", []) or ["missing or damaged"])
                    + f" (fetch it: lookout models fetch {name})",
                )
        digest = store.manifest(cfg.models.embedder).digest
    except (LookoutError, OSError, KeyError) as err:
        bad("models", str(err))
    policy = None
    try:
        policy = load_policy(cfg)
        ok("policy", f"{policy.version} from {policy.source}")
    except LookoutError as err:
        bad("policy", str(err))
    if policy is not None and cfg.recognition.enabled:
        try:
            ok("jurisdiction", check_jurisdiction(cfg, policy))
        except LookoutError as err:
            bad("jurisdiction", str(err))
    elif not cfg.recognition.enabled:
        ok("recognition", "disabled: detection and tracking only")
    if cfg.recognition.enabled and policy is not None:
        g = cfg.gallery
        bundle_dir = g.bundle_dir
        if g.store_dir is not None:
            # BundleStore creates its folders: only look inside one that exists.
            bundle_dir = BundleStore(g.store_dir).current_dir() if g.store_dir.is_dir() else None
            if bundle_dir is None:
                (ok if g.pull else bad)(
                    "gallery",
                    f"store {g.store_dir} holds no bundle yet" + (" (the puller will fetch one)" if g.pull else ""),
                )
        if bundle_dir is not None:
            try:
                gallery = load_bundle(
                    bundle_dir,
                    g.public_key,
                    digest,
                    policy,
                    location=cfg.location.jurisdiction,
                    gallery_id=g.gallery_id,
                    purpose=cfg.bundle_purpose,
                )
                ok(
                    "gallery",
                    f"{bundle_dir}: version {gallery.version}, {gallery.count_persons} people, "
                    f"threshold {gallery.threshold}",
                )
                verdict = judge(cfg.recognition.threshold, gallery)
                refusal = verdict.refusal(cfg.recognition.accept_fpir, cfg.recognition.accept_fnir)
                if refusal:
                    bad("threshold", f"{verdict.describe()}: {refusal}")
                else:
                    ok("threshold", f"in use {verdict.describe()}")
            except LookoutError as err:
                bad("gallery", str(err))
    try:
        source = open_source(cfg.source.url, cfg.source.kind, fps=cfg.source.fps)
        if isinstance(source, CaptureSource):
            ok("source", f"{source.name} (live; opened at start, retried with backoff if unavailable)")
        else:
            source.open()
            ok("source", f"{source.name} ({source.nominal_fps:g} fps)")
            source.close()
    except LookoutError as err:
        bad("source", str(err))
    tls = cfg.mqtt.tls
    if tls is not None:
        try:
            tls_context(tls)
            ok("mqtt.tls", f"CA {tls.ca_file or '(system)'}" + (", client certificate" if tls.cert_file else ""))
        except LookoutError as err:
            bad("mqtt.tls", str(err))
        if tls.insecure:
            out("WARN  mqtt.tls.insecure is set: the broker's certificate is NOT checked against its host name")
    if cfg.mqtt.password_env and cfg.mqtt.password_env not in os.environ:
        bad("mqtt.password_env", f"environment variable {cfg.mqtt.password_env} is not set")
    folder = cfg.outbox.path.parent
    if folder.exists() and not os.access(folder, os.W_OK):
        bad("outbox.path", f"{folder} is not writable")
    else:
        ok("outbox", str(cfg.outbox.path))
    if cfg.debug.save_frames_dir:
        out(f"WARN  debug.save_frames_dir is set: every frame will be written to {cfg.debug.save_frames_dir}")
    out("config OK" if not problems else f"{problems} problem(s)")
    return 0 if not problems else 2
