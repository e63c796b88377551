"""What may change while the device runs (a Greengrass configuration update): read at every use.

The frame loop reads ``threshold`` each frame and the event emitter ``crop`` each event;
``Runtime.apply_live`` changes them (and the decider's margin and cooldown) in place.
"""

from __future__ import annotations

from dataclasses import dataclass

from lookout.device.config import DeviceConfig


@dataclass
class Tuning:
    threshold: float | None  # None: the gallery's own (calibrated) threshold
    crop: bool  # attach a face crop to match events (where the policy allows crops)

    @classmethod
    def from_config(cls, cfg: DeviceConfig) -> Tuning:
        return cls(threshold=cfg.recognition.threshold, crop=cfg.events.crop)
