"""Memory peaks and slowdown signs sampled while a configuration runs (NVML faked at its boundary)."""

from __future__ import annotations

import subprocess
import sys
import time

from tray_app.benchmark.sampler import MachineCpuMeter, ResourceSampler
from tray_app.hardware.gpu import GpuProcess, GpuReading

GIB = 1 << 30


class FakeNvml:
    """Answers like :class:`NvmlReader`: 1 GiB used before the runner, then 3 GiB, thermal throttling."""

    available = True

    def __init__(self, pid: int, per_process: int | None) -> None:
        self.pid, self.per_process, self.reads = pid, per_process, 0

    def read(self) -> tuple[GpuReading, ...]:
        self.reads += 1
        first = self.reads == 1
        used = GIB if first else 3 * GIB
        procs = () if first else (GpuProcess(self.pid, self.per_process), GpuProcess(1, 512 << 20))
        return (GpuReading(0, "RTX", "GPU-1", "566.36", 6 * GIB, used, 6 * GIB - used, 90, 87, 70.0, 80.0,
                           0 if first else 0x20 | 0x1, procs),)


def run_sampler(per_process: int | None) -> ResourceSampler:
    child = subprocess.Popen([sys.executable, "-c", "import time; x = bytearray(40 << 20); time.sleep(3)"])
    try:
        time.sleep(0.5)
        sampler = ResourceSampler(lambda: [child.pid], FakeNvml(child.pid, per_process))
        sampler.start()
        with sampler.measuring():
            time.sleep(1.2)
        sampler.stop()
        return sampler
    finally:
        child.kill()
        child.wait()


def test_windows_wddm_gives_the_growth_of_the_card_used_memory():
    sampler = run_sampler(per_process=None)  # WDDM: no per-process figure
    assert sampler.peak_vram == 2 * GIB and sampler.peak_vram_device == 3 * GIB
    assert sampler.gpu_throttle == 0x20  # software thermal slowdown; « idle » left out
    assert sampler.peak_ram and sampler.peak_ram > 40 << 20
    assert sampler.other_cpu_percent is not None and 0 <= sampler.other_cpu_percent <= 100


def test_per_process_figures_are_used_when_the_driver_gives_them():
    sampler = run_sampler(per_process=1800 << 20)
    assert sampler.peak_vram == 1800 << 20


def test_machine_cpu_meter_is_a_percentage():
    meter = MachineCpuMeter()
    sum(i * i for i in range(200000))
    assert 0.0 <= meter.percent() <= 100.0
