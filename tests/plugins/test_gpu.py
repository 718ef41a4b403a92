"""GPU sampler: NVML readings become samples; no GPU is not an error."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from chainsight.framework.cli import main as cli_main
from chainsight.framework.observer import Observer
from chainsight.plugins.gpu import GpuPlugin, NvmlSampler
from chainsight.storage.query import Store


class NVMLError(Exception):
    pass


class FakeNvml:
    """The pynvml functions the sampler calls, for two GPUs; GPU 1 has no power sensor."""

    NVML_TEMPERATURE_GPU = 0

    def __init__(self, fail_init: bool = False) -> None:
        self.fail_init = fail_init
        self.calls = 0
        self.shut = False

    def nvmlInit(self) -> None:
        if self.fail_init:
            raise NVMLError("NVML Shared Library Not Found")

    def nvmlShutdown(self) -> None:
        self.shut = True

    def nvmlDeviceGetCount(self) -> int:
        return 2

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetName(self, handle: int) -> bytes:
        return b"NVIDIA H100 80GB HBM3"

    def nvmlDeviceGetUUID(self, handle: int) -> str:
        return f"GPU-{handle:04d}"

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> Any:
        self.calls += 1
        return SimpleNamespace(gpu=40 + handle * 10, memory=5)

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> Any:
        return SimpleNamespace(used=(handle + 1) * 2**30, total=80 * 2**30)

    def nvmlDeviceGetTemperature(self, handle: int, sensor: int) -> int:
        return 35

    def nvmlDeviceGetPowerUsage(self, handle: int) -> int:
        if handle == 1:
            raise NVMLError("Not Supported")
        return 71_500


def test_samples_every_metric_of_every_device() -> None:
    nvml = FakeNvml()
    sampler = NvmlSampler(nvml=nvml)
    samples = sampler.sample()
    got = {(s.name, s.labels["gpu_id"]): s.value for s in samples}
    assert got[("llm_gpu_utilization_percent", "0")] == 40.0
    assert got[("llm_gpu_utilization_percent", "1")] == 50.0
    assert got[("llm_gpu_memory_used_bytes", "1")] == float(2 * 2**30)
    assert got[("llm_gpu_power_watts", "0")] == pytest.approx(71.5)
    assert ("llm_gpu_power_watts", "1") not in got  # unsupported there; the rest still sampled
    assert ("llm_gpu_temperature_celsius", "1") in got
    assert all(s.labels["name"] == "NVIDIA H100 80GB HBM3" and s.source == "nvml" for s in samples)
    assert {s.labels["uuid"] for s in samples} == {"GPU-0000", "GPU-0001"}
    sampler.sample()
    assert nvml.calls == 8  # two metrics read utilisation, two devices, two rounds
    sampler.close()
    assert nvml.shut


def test_no_gpu_is_reported_once_and_records_nothing(caplog: pytest.LogCaptureFixture) -> None:
    sampler = NvmlSampler(nvml=FakeNvml(fail_init=True))
    with caplog.at_level("INFO", logger="chainsight.gpu"):
        assert sampler.sample() == [] and sampler.sample() == []
    assert sampler.unavailable is not None and "Library Not Found" in sampler.unavailable
    assert sum("GPU sampling off" in r.getMessage() for r in caplog.records) == 1


def test_device_selection() -> None:
    sampler = NvmlSampler(devices=[1, 7], nvml=FakeNvml())
    assert {s.labels["gpu_id"] for s in sampler.sample()} == {"1"}


def test_observer_stores_gpu_samples(sqlite_url: str, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml())  # what `import pynvml` finds
    config = tmp_path / "plugins.toml"
    config.write_text("[pipeline]\nsample_interval_s = 0.05\n")
    obs = Observer(sqlite_url, config_path=config, builtins=[("gpu", "chainsight.plugins.gpu")],
                   entry_points=False, strict=True, spill_path=tmp_path / "spill")
    plugin = obs.plugins.pm.get_plugin("gpu")
    assert isinstance(plugin, GpuPlugin)
    with obs.span("inference", kind="llm") as span:
        time.sleep(0.3)
    obs.flush(10)
    obs.shutdown(10)
    detail = Store(sqlite_url).get_trace(span.trace_id)
    assert detail is not None
    util = [s for s in detail.samples if s.name == "llm_gpu_utilization_percent"]
    assert util and {s.labels["gpu_id"] for s in util} == {"0", "1"}


def test_gpu_command_without_nvml_says_so(capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import chainsight.plugins.gpu as gpu

    monkeypatch.setattr(gpu, "NvmlSampler", lambda: NvmlSampler(nvml=FakeNvml(fail_init=True)))
    assert cli_main(["gpu", "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["available"] is False and "NVML" in out["reason"] and out["samples"] == []
    assert cli_main(["gpu"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    [line] = captured.err.splitlines()
    assert line.startswith("chainsight: error: no GPU reading: NVML unavailable: ")
