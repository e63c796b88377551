"""One OpenVINO Core per process, and how models are compiled on it.

The device is chosen by config (AUTO, CPU, GPU, NPU). On CPU we ask for f32
inference: OpenVINO would otherwise pick bf16 where the CPU advertises it,
which here was slower (no AMX) and moves embeddings.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import openvino as ov

from lookout.errors import ConfigError

DEVICES = ("AUTO", "CPU", "GPU", "NPU")


@dataclass
class InferenceEngine:
    device: str = "AUTO"
    core: ov.Core = field(default_factory=ov.Core)

    def __post_init__(self) -> None:
        base = self.device.split(":")[0].split("(")[0]
        if base not in DEVICES and not self.device.startswith(("MULTI", "HETERO")):
            raise ConfigError(f"unknown OpenVINO device {self.device!r}; use one of {', '.join(DEVICES)}")

    def compile(self, model: ov.Model, hint: str = "LATENCY") -> ov.CompiledModel:
        """Compile once; callers keep the result. ``hint`` is LATENCY or THROUGHPUT."""
        config: dict[str, str] = {"PERFORMANCE_HINT": hint}
        if self.device in ("CPU", "AUTO"):
            config["INFERENCE_PRECISION_HINT"] = "f32"
        try:
            return self.core.compile_model(model, self.device, config)
        except RuntimeError as err:
            available = ", ".join(self.core.available_devices)
            first = str(err).strip().splitlines()[0]
            raise ConfigError(
                f"cannot compile on OpenVINO device {self.device!r} (available: {available}): {first}"
            ) from None
