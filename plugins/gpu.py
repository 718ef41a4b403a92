"""GPU sampling through NVML (the ``nvidia-ml-py`` package, module ``pynvml``).

Implements ``collect_samples``, which the host calls on its sampler thread
every ``[pipeline] sample_interval_s`` seconds, and records per device (labels ``gpu_id``, ``name``, ``uuid``):

* ``llm_gpu_utilization_percent``: kernel activity over the last sample period
* ``llm_gpu_memory_utilization_percent``: memory-controller activity
* ``llm_gpu_memory_used_bytes`` / ``llm_gpu_memory_total_bytes``
* ``llm_gpu_temperature_celsius``, ``llm_gpu_power_watts``

A trace's detail shows the samples taken during it. Where NVML is missing (no
driver, no GPU, the package not installed) the sampler says so once, at INFO,
and records nothing: a machine without a GPU is not an error. A metric a
device does not support (power on some boards) is skipped for that device;
the others are still recorded. ``chainsight gpu`` prints one reading (and
exits 1 with the reason when there is none).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Mapping
from typing import Any, Final

from chainsight.framework import hookimpl
from chainsight.framework.commands import CommandError, print_json
from chainsight.framework.extension import CommandRegistry
from chainsight.framework.model import Sample

log = logging.getLogger("chainsight.gpu")

NAME: Final = "gpu"
SOURCE: Final = "nvml"

CONFIG_SCHEMA: Final[dict[str, Any]] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "devices": {
            "type": "array", "items": {"type": "integer", "minimum": 0}, "uniqueItems": True,
            "description": "GPU indices to sample; all when absent.",
        },
    },
}

# (metric name, reader of one device handle). Readers return None to skip.
Reader = Callable[[Any, Any], float | None]
METRICS: Final[tuple[tuple[str, Reader], ...]] = (
    ("llm_gpu_utilization_percent", lambda nvml, h: float(nvml.nvmlDeviceGetUtilizationRates(h).gpu)),
    ("llm_gpu_memory_utilization_percent",
     lambda nvml, h: float(nvml.nvmlDeviceGetUtilizationRates(h).memory)),
    ("llm_gpu_memory_used_bytes", lambda nvml, h: float(nvml.nvmlDeviceGetMemoryInfo(h).used)),
    ("llm_gpu_memory_total_bytes", lambda nvml, h: float(nvml.nvmlDeviceGetMemoryInfo(h).total)),
    ("llm_gpu_temperature_celsius",
     lambda nvml, h: float(nvml.nvmlDeviceGetTemperature(h, nvml.NVML_TEMPERATURE_GPU))),
    ("llm_gpu_power_watts", lambda nvml, h: nvml.nvmlDeviceGetPowerUsage(h) / 1000.0),
)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class NvmlSampler:
    """Samples every (or the chosen) GPU; NVML is initialised on first use,
    on the sampler thread, so a slow driver never delays start-up."""

    def __init__(self, devices: list[int] | None = None, nvml: Any = None) -> None:
        self.devices = devices
        self._nvml = nvml  # injectable for tests; the real pynvml otherwise
        self._handles: list[tuple[str, Any, dict[str, str]]] | None = None
        self.unavailable: str | None = None
        self._unsupported: set[tuple[str, str]] = set()

    def _start(self) -> None:
        try:
            if self._nvml is None:
                import pynvml

                self._nvml = pynvml
            nvml = self._nvml
            nvml.nvmlInit()
            count = int(nvml.nvmlDeviceGetCount())
            wanted = range(count) if self.devices is None else [i for i in self.devices if i < count]
            handles = []
            for index in wanted:
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                labels = {"gpu_id": str(index), "name": _text(nvml.nvmlDeviceGetName(handle)),
                          "uuid": _text(nvml.nvmlDeviceGetUUID(handle))}
                handles.append((str(index), handle, labels))
            self._handles = handles
            if not handles:
                self.unavailable = "NVML reports no GPU"
        except Exception as exc:  # ImportError, pynvml.NVMLError (LibraryNotFound...), OSError
            self._handles = []
            self.unavailable = f"NVML unavailable: {type(exc).__name__}: {exc}"
        if self.unavailable:
            log.info("GPU sampling off: %s", self.unavailable)

    def sample(self) -> list[Sample]:
        if self._handles is None:
            self._start()
        samples: list[Sample] = []
        for gpu_id, handle, labels in self._handles or ():
            for metric, read in METRICS:
                if (gpu_id, metric) in self._unsupported:
                    continue
                try:
                    value = read(self._nvml, handle)
                except Exception as exc:
                    # NotSupported and friends are permanent for a device: log once.
                    self._unsupported.add((gpu_id, metric))
                    log.info("GPU %s: %s not available (%s)", gpu_id, metric, exc)
                    continue
                if value is not None:
                    samples.append(Sample(metric, value, SOURCE, labels=labels))
        return samples

    def close(self) -> None:
        if self._handles:
            try:
                self._nvml.nvmlShutdown()
            except Exception:
                pass
        self._handles = None


class GpuPlugin:
    """One per observer (see ``create_plugin``)."""

    CONFIG_SCHEMA = CONFIG_SCHEMA

    def __init__(self) -> None:
        self.sampler = NvmlSampler()

    @hookimpl
    def configure(self, config: Mapping[str, Any]) -> None:
        self.sampler = NvmlSampler(config.get("devices"))

    @hookimpl
    def collect_samples(self) -> list[Sample]:
        return self.sampler.sample()

    @hookimpl
    def shutdown(self) -> None:
        self.sampler.close()

    @hookimpl
    def register_commands(self, cli: CommandRegistry) -> None:
        cli.add("gpu", "show one reading of every GPU (NVML)", lambda parser: None, _gpu_command)


def _gpu_command(args: argparse.Namespace) -> int:
    sampler = NvmlSampler()
    samples = sampler.sample()
    sampler.close()
    if args.json:
        print_json({
            "available": sampler.unavailable is None,
            "reason": sampler.unavailable,
            "samples": [{"name": s.name, "value": s.value, "labels": s.labels} for s in samples],
        })
        return 0 if sampler.unavailable is None else 1
    if sampler.unavailable:
        raise CommandError(f"no GPU reading: {sampler.unavailable}")
    by_gpu: dict[str, dict[str, float]] = {}
    names: dict[str, str] = {}
    for s in samples:
        by_gpu.setdefault(s.labels["gpu_id"], {})[s.name] = s.value
        names[s.labels["gpu_id"]] = s.labels["name"]
    for gpu_id, values in sorted(by_gpu.items()):
        used = values.get("llm_gpu_memory_used_bytes", 0) / 2**30
        total = values.get("llm_gpu_memory_total_bytes", 0) / 2**30
        parts = [f"GPU {gpu_id} {names[gpu_id]}",
                 f"util {values.get('llm_gpu_utilization_percent', float('nan')):.0f}%",
                 f"memory {used:.1f}/{total:.1f} GiB"]
        if "llm_gpu_temperature_celsius" in values:
            parts.append(f"{values['llm_gpu_temperature_celsius']:.0f} °C")
        if "llm_gpu_power_watts" in values:
            parts.append(f"{values['llm_gpu_power_watts']:.0f} W")
        print("  ".join(parts))
    return 0


def create_plugin() -> GpuPlugin:
    return GpuPlugin()
