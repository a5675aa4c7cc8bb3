"""The bounded, compact history and the model-share estimator."""

from __future__ import annotations

import math

from tests.monitor_helpers import GIB, MIB, RUNNER, gpu, sample
from tray_app.hardware.gpu import GpuProcess
from tray_app.monitoring import HostMetrics, SampleHistory
from tray_app.monitoring.model_share import ModelShareEstimator


def test_history_keeps_the_last_hour_in_order():
    history = SampleHistory(capacity=100)
    for t in range(250):
        history.append(sample(float(t), 0.5))
    assert len(history) == 100
    window = history.window()
    assert list(window["at"]) == [float(t) for t in range(150, 250)]
    last_minute = history.window(60)
    assert list(last_minute["at"])[0] == 189.0 and len(last_minute["vram_used_mib"]) == 61


def test_missing_values_are_nan_and_the_size_is_fixed():
    history = SampleHistory(capacity=3600)
    size = history.nbytes()
    assert size <= 160 * 1024  # 3600 × (8 + 8 × 4) bytes
    for t in range(5000):
        history.append(sample(float(t), None))
    assert history.nbytes() == size
    window = history.window(10)
    assert all(math.isnan(v) for v in window["vram_used_mib"])
    assert all(math.isnan(v) for v in window["tokens_per_s"])
    assert all(v == 50.0 for v in window["ram_percent"])


def test_columns_are_buffers_numpy_reads_without_copy():
    import numpy as np

    history = SampleHistory(capacity=10)
    history.append(sample(1.0, 0.5))
    column = history.window()["vram_used_mib"]
    assert np.frombuffer(column, dtype=np.float32)[0] == 3 * 1024


def host(pid=RUNNER, loaded=True):
    return HostMetrics(pid, None, None, loaded)


def test_share_reported_by_the_driver_is_used_as_is():
    estimator = ModelShareEstimator()
    reading = gpu(0.8, processes=(GpuProcess(RUNNER, 3 * GIB), GpuProcess(1200, None)))
    assert estimator.update(reading, host(), 0.0) == (3 * GIB, False)


def test_share_is_estimated_from_the_vram_before_the_load_then_frozen():
    estimator = ModelShareEstimator(settle_s=5)
    assert estimator.update(gpu(0.2), host(pid=None, loaded=False), 0.0) == (None, False)
    estimator.update(gpu(0.4), host(loaded=False), 1.0)  # loading
    share, estimated = estimator.update(gpu(0.7), host(), 2.0)  # loaded
    assert estimated and abs(share - 0.5 * 6 * GIB) < MIB
    estimator.update(gpu(0.72), host(), 5.0)  # still settling: a last buffer
    frozen, _ = estimator.update(gpu(0.95), host(), 30.0)  # a game starts later: not the model
    assert abs(frozen - 0.52 * 6 * GIB) < MIB


def test_a_restarted_runner_starts_from_the_other_programs_share():
    estimator = ModelShareEstimator(settle_s=5)
    estimator.update(gpu(0.2), host(pid=None, loaded=False), 0.0)
    estimator.update(gpu(0.7), host(), 1.0)
    estimator.update(gpu(0.7), host(), 20.0)
    share, _ = estimator.update(gpu(0.6), host(pid=999), 21.0)  # new runner, smaller plan
    assert abs(share - 0.4 * 6 * GIB) < MIB


def test_no_estimate_without_a_before_figure():
    estimator = ModelShareEstimator()
    assert estimator.update(gpu(0.7), host(), 0.0) == (None, False)  # model already loaded at start
    assert estimator.update(None, host(), 1.0) == (None, False)


def test_other_programs_use_over_a_window_is_the_card_minus_the_model():
    from tray_app.hardware.gpu import GpuReading
    from tray_app.monitoring.sample import MonitorSample

    def sample(at: float, used_mib: int, model_mib: int | None) -> MonitorSample:
        gpu = GpuReading(0, "GPU", "", "", 6144 * MIB, used_mib * MIB, (6144 - used_mib) * MIB, 0, 40, 10.0,
                         80.0, 0, ())
        return MonitorSample(at, gpu, "", 5.0, 16 << 30, 8 << 30, None,
                             model_vram=None if model_mib is None else model_mib * MIB)

    history = SampleHistory(capacity=100)
    assert history.other_vram() is None
    for at, used, model in ((0, 1300, None), (60, 4300, 3000), (120, 5100, 3000), (180, 4400, 3000)):
        history.append(sample(at, used, model))
    others = history.other_vram()
    assert others is not None
    assert (others.now, others.peak, others.low) == (1400 * MIB, 2100 * MIB, 1300 * MIB)
    assert (others.seconds, others.samples) == (180, 4)
    assert history.other_vram(seconds=70).samples == 2  # the window counts back from the newest sample
