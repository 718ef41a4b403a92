"""Real-GPU check of the NVML sampler, for a machine with an NVIDIA GPU.

Records two spans through a real Observer into SQLite with the ``gpu`` plugin
sampling every 0.1 s: 1.5 s idle, then 3 s of bf16 matrix products (PyTorch,
when installed). Reads the samples back through the query API and prints, per
phase and GPU, the sample count and utilisation, memory, power and
temperature. Exits non-zero when no sample was stored or the loaded phase was
not busier than the idle one.

    python bench/gpu_sampler_check.py
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chainsight.framework.observer import Observer
from chainsight.storage.query import Store


def load_gpu(seconds: float) -> str:
    try:
        import torch
    except ImportError:
        time.sleep(seconds)
        return "no torch: slept instead"
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        for _ in range(10):
            a @ b
        torch.cuda.synchronize()
        n += 10
    return f"{n} bf16 8192^3 matmuls"


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "plugins.toml"
        config.write_text("[pipeline]\nsample_interval_s = 0.1\n")
        url = f"sqlite:///{tmp}/gpu.db"
        obs = Observer(url, config_path=config, builtins=[("gpu", "chainsight.plugins.gpu")],
                       entry_points=False, strict=True, spill_path=Path(tmp) / "spill")
        with obs.span("idle", kind="other") as idle:
            time.sleep(1.5)
        with obs.span("load", kind="llm") as load:
            what = load_gpu(3.0)
        sampler = obs.plugins.pm.get_plugin("gpu").sampler
        obs.flush(10)
        obs.shutdown(10)
        if sampler.unavailable:
            print(f"GPU sampler: {sampler.unavailable}")
            return 1
        store = Store(url)
        util_by_phase: dict[str, float] = {}
        for span in (idle, load):
            detail = store.get_trace(span.trace_id)
            assert detail is not None
            print(f"phase {span.name} ({(span.end_ns - span.start_ns) / 1e9:.1f} s)"  # type: ignore[operator]
                  + (f": {what}" if span is load else ""))
            by_gpu: dict[str, dict[str, list[float]]] = {}
            for s in detail.samples:
                if s.source != "nvml":
                    continue  # the pipeline's own counters are samples too
                by_gpu.setdefault(s.labels["gpu_id"], {}).setdefault(s.name, []).append(s.value)
            for gpu_id, metrics in sorted(by_gpu.items()):
                util = metrics.get("llm_gpu_utilization_percent", [0.0])
                mem = metrics.get("llm_gpu_memory_used_bytes", [0.0])
                power = metrics.get("llm_gpu_power_watts", [])
                temp = metrics.get("llm_gpu_temperature_celsius", [])
                print(f"  GPU {gpu_id}: {len(util)} samples, utilisation mean {statistics.mean(util):.0f}%"
                      f" max {max(util):.0f}%, memory used max {max(mem) / 2**30:.2f} GiB"
                      + (f", power max {max(power):.0f} W" if power else "")
                      + (f", temperature max {max(temp):.0f} C" if temp else ""))
                util_by_phase[span.name] = max(util_by_phase.get(span.name, 0.0), statistics.mean(util))
        names = {s.labels.get("name") for s in store.list_samples(name="llm_gpu_utilization_percent")}
        print(f"devices: {', '.join(sorted(n for n in names if n))}")
        if not util_by_phase.get("load"):
            print("no GPU samples stored during the load phase")
            return 1
        busier = util_by_phase["load"] > util_by_phase.get("idle", 0.0)
        print(f"loaded phase busier than idle: {busier}")
        return 0 if busier else 1


if __name__ == "__main__":
    raise SystemExit(main())
