"""Resource use while a benchmark runs: process CPU % and RSS, GPU memory, and power.

Power and GPU memory come from whatever this host can read: `tegrastats` on a Jetson (board input
rail and shared RAM), NVML on desktop NVIDIA GPUs, Intel RAPL energy counters on x86 CPUs. What
cannot be read is reported as None with the reason in `sources`, never guessed.

Runs on JetPack 4.6's Python 3.6 with numpy and psutil only (checked with vermin in the tests).
"""

import re
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional

RAPL_ENERGY = Path("/sys/class/powercap/intel-rapl:0/energy_uj")
RAPL_RANGE = Path("/sys/class/powercap/intel-rapl:0/max_energy_range_uj")
# Nano (JetPack 4.x): "POM_5V_IN 3176/3176"; newer JetPacks: "VDD_IN 5000mW/5000mW"
TEGRA_POWER = re.compile(r"(?:POM_5V_IN|VDD_IN)\s+(\d+)(?:mW)?/(\d+)")
TEGRA_RAM = re.compile(r"RAM\s+(\d+)/(\d+)MB")


def parse_tegrastats(line: str) -> Dict[str, Optional[float]]:
    """Board input power (mW) and used RAM (MB) from one tegrastats line."""
    power, ram = TEGRA_POWER.search(line), TEGRA_RAM.search(line)
    return {"power_mw": float(power.group(1)) if power else None, "ram_used_mb": float(ram.group(1)) if ram else None}


class ResourceMonitor:
    """Context manager sampling the current process (and the board/GPU) every `interval` s."""

    def __init__(self, interval: float = 0.05):
        self.interval = interval
        self.sources = {}  # type: Dict[str, str]
        self.rss = []  # type: List[float]
        self.power_mw = []  # type: List[float]
        self.gpu_memory = []  # type: List[float]
        self._stop = threading.Event()
        self._threads = []  # type: List[threading.Thread]
        self._tegrastats = None  # type: Optional[subprocess.Popen]
        self._nvml = None
        self._rapl_start = None  # type: Optional[float]

    # -- lifecycle
    def __enter__(self) -> "ResourceMonitor":
        import psutil

        self.process = psutil.Process()
        self.cpu_started = time.process_time()  # every thread of this process, at the clock's resolution
        self._start_power_sources()
        self.started = time.perf_counter()
        thread = threading.Thread(target=self._sample, daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def __exit__(self, *exc) -> None:
        self.elapsed = time.perf_counter() - self.started
        # psutil's cpu_percent counts in clock ticks (10 ms), which over a short benchmark gave
        # several hundred percent per core; process_time has the resolution of the CPU-time clock
        self.cpu_percent = 100.0 * (time.process_time() - self.cpu_started) / max(self.elapsed, 1e-9)
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=2)
        if self._tegrastats is not None:
            self._tegrastats.terminate()
        if self._rapl_start is not None:
            self._read_rapl_end()
        if self._nvml is not None:
            import pynvml

            pynvml.nvmlShutdown()

    # -- sources
    def _start_power_sources(self) -> None:
        if shutil.which("tegrastats"):
            self._tegrastats = subprocess.Popen(["tegrastats", "--interval", str(max(10, int(self.interval * 1000)))],
                                                stdout=subprocess.PIPE, universal_newlines=True)
            thread = threading.Thread(target=self._read_tegrastats, daemon=True)
            thread.start()
            self._threads.append(thread)
            self.sources["power"] = self.sources["gpu_memory"] = "tegrastats (board input rail; RAM shared with the GPU)"
            return
        try:
            import pynvml

            pynvml.nvmlInit()
            self._nvml = pynvml.nvmlDeviceGetHandleByIndex(0)
            self.sources["power"] = "NVML (GPU board power)"
            self.sources["gpu_memory"] = "NVML (device memory used)"
        except Exception as err:  # not installed, no driver or no GPU
            self.sources["gpu_memory"] = "not available: no NVML ({})".format(type(err).__name__)
            if RAPL_ENERGY.exists():
                try:
                    self._rapl_start = float(RAPL_ENERGY.read_text())
                    self.sources["power"] = "RAPL (CPU package energy)"
                except OSError as rapl_err:
                    self.sources["power"] = "not available: RAPL counters unreadable ({})".format(rapl_err.strerror)
            else:
                self.sources["power"] = "not available: no tegrastats, NVML or RAPL on this host"

    def _read_tegrastats(self) -> None:
        for line in self._tegrastats.stdout:
            if self._stop.is_set():
                break
            values = parse_tegrastats(line)
            if values["power_mw"] is not None:
                self.power_mw.append(values["power_mw"])
            if values["ram_used_mb"] is not None:
                self.gpu_memory.append(values["ram_used_mb"] * 2**20)

    def _read_rapl_end(self) -> None:
        try:
            end = float(RAPL_ENERGY.read_text())
        except OSError:
            return
        delta = end - self._rapl_start
        if delta < 0 and RAPL_RANGE.exists():  # the counter wrapped
            delta += float(RAPL_RANGE.read_text())
        self.power_mw.append(delta / 1000.0 / self.elapsed)  # uJ / s = uW; / 1000 = mW

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.rss.append(float(self.process.memory_info().rss))
            if self._nvml is not None:
                import pynvml

                self.power_mw.append(float(pynvml.nvmlDeviceGetPowerUsage(self._nvml)))
                self.gpu_memory.append(float(pynvml.nvmlDeviceGetMemoryInfo(self._nvml).used))
            self._stop.wait(self.interval)

    # -- results
    def summary(self) -> Dict[str, Optional[float]]:
        def mean(values: List[float]) -> Optional[float]:
            return sum(values) / len(values) if values else None

        rss_gb = max(self.rss) / 2**30 if self.rss else None
        gpu_gb = max(self.gpu_memory) / 2**30 if self.gpu_memory else None
        power = mean(self.power_mw)
        return {
            # the paper's unit: a share of the whole machine (process CPU time sums over threads: 2 busy cores = 200 %)
            "cpu_percent_of_machine": self.cpu_percent / (os.cpu_count() or 1),
            "cpu_memory_gb": rss_gb,
            "gpu_memory_gb": gpu_gb,
            "total_memory_gb": (rss_gb or 0) + (gpu_gb or 0) if rss_gb is not None else None,
            "power_mw": power,
        }
