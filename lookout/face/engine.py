"""One OpenVINO Core per process, and how models are compiled on it.

The device is chosen by config (AUTO, CPU, GPU, NPU); the precision per model
(``lookout.model_store.precision``): FP32 unless a measured choice says otherwise.
OpenVINO on its own would pick bf16 on CPUs that advertise it, unasked and unmeasured;
here the precision is always set explicitly, so embeddings only change precision
when ``lookout models precision`` found that their scores agree with FP32's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import openvino as ov

from lookout.errors import ConfigError
from lookout.model_store.precision import OV_HINTS, PRECISIONS

DEVICES = ("AUTO", "CPU", "GPU", "NPU")
# OPTIMIZATION_CAPABILITIES a device must list to compute in a precision.
_CAPABILITY = {"bf16": "BF16"}


@dataclass
class InferenceEngine:
    device: str = "AUTO"
    core: ov.Core = field(default_factory=ov.Core)

    def __post_init__(self) -> None:
        base = self.device.split(":")[0].split("(")[0]
        if base not in DEVICES and not self.device.startswith(("MULTI", "HETERO")):
            raise ConfigError(f"unknown OpenVINO device {self.device!r}; use one of {', '.join(DEVICES)}")

    def supports(self, precision: str) -> bool:
        """Whether this device can compute in ``precision`` (fp32 and int8 IRs run everywhere)."""
        needed = _CAPABILITY.get(precision)
        if needed is None:
            return True
        target = "CPU" if self.device == "AUTO" else self.device
        try:
            return needed in self.core.get_property(target, "OPTIMIZATION_CAPABILITIES")
        except RuntimeError:
            return False

    def compile(self, model: ov.Model, hint: str = "LATENCY", precision: str = "fp32") -> ov.CompiledModel:
        """Compile once; callers keep the result. ``hint`` is LATENCY or THROUGHPUT; ``precision`` one of
        fp32, bf16, int8 (an INT8 IR: its float parts in f32)."""
        if precision not in PRECISIONS:
            raise ConfigError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
        if not self.supports(precision):
            raise ConfigError(f"OpenVINO device {self.device!r} cannot compute in {precision}")
        config: dict[str, str] = {"PERFORMANCE_HINT": hint}
        if self.device in ("CPU", "AUTO", "GPU"):
            config["INFERENCE_PRECISION_HINT"] = OV_HINTS[precision]
        try:
            return self.core.compile_model(model, self.device, config)
        except RuntimeError as err:
            available = ", ".join(self.core.available_devices)
            first = str(err).strip().splitlines()[0]
            raise ConfigError(
                f"cannot compile on OpenVINO device {self.device!r} (available: {available}): {first}"
            ) from None
