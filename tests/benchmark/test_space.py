"""The explored space: which values, around the plan, on small, hybrid and GPU machines."""

from __future__ import annotations

from tests.benchmark.test_search import FakeSurface
from tray_app.benchmark.search import coordinate_search, estimate_trials
from tray_app.benchmark.space import (
    P_CORES,
    Point,
    affinity_for,
    build_space,
    config_for,
    gpu_layer_values,
)
from tray_app.hardware.cpu import CpuInfo
from tray_app.planning.runner_config import RunnerConfig

TWO_CORES = CpuInfo("AMD EPYC", 2, 2, 2, 0, (), 24 << 30, "sysfs")
# Intel i7-13700H: 6 P-cores with hyper-threading (12 logical) + 8 E-cores = 20 logical CPUs.
HYBRID = CpuInfo("Intel Core i7-13700H", 14, 20, 6, 8, tuple(range(12)), 16 << 30, "test")
BASE = RunnerConfig("model.gguf", n_gpu_layers=0, n_ctx=4096, n_threads=1, n_threads_batch=1)


def test_two_core_machine_without_gpu():
    space = build_space(BASE, TWO_CORES, n_layers=30, gpu_usable=False)
    assert [d.name for d in space.dims] == ["threads", "attention", "threads_batch", "batch"]
    assert space.dim("threads").values == (1, 2)
    assert space.dim("batch").values == (128, 256, 512)
    assert space.start == Point.of(threads=1, attention="f16", threads_batch=0, batch=512)
    grid = space.grid()
    assert len(grid) == len(set(grid)) == 27  # threads 1 (2 prompt-thread choices) or 2, × 3 × 3
    assert Point.of(threads=2, attention="f16", threads_batch=0, batch=512) in grid
    assert space.canonical(Point.of(threads=2, attention="f16", threads_batch=2, batch=512)).get("threads_batch") == 0


def test_quantized_cache_left_out_when_heads_are_too_narrow():
    space = build_space(BASE, TWO_CORES, n_layers=2, gpu_usable=False, quantized_kv_ok=False)
    assert space.dim("attention").values == ("f16", "f16_fa")


def test_hybrid_cpu_with_gpu_explores_layers_and_p_core_pinning():
    base = BASE.with_changes(n_gpu_layers=20, n_threads=5, n_threads_batch=5)
    space = build_space(base, HYBRID, n_layers=32, gpu_usable=True)
    names = [d.name for d in space.dims]
    assert names == ["gpu_layers", "threads", "affinity", "attention", "threads_batch", "batch"]
    assert space.dim("gpu_layers").values == (10, 15, 20, 26, 33)  # ½, ¾, plan, halfway, everything
    assert space.dim("threads").values == (2, 3, 5, 6, 12, 14, 20)
    assert space.dim("batch").values == (256, 512, 1024, 2048)
    pinned_too_many = Point.of(gpu_layers=20, threads=14, affinity=P_CORES, attention="f16", threads_batch=0, batch=512)
    assert not space.valid(pinned_too_many)  # 12 logical CPUs on the P-cores
    pinned = pinned_too_many.with_value("threads", 6)
    assert space.valid(pinned) and affinity_for(pinned, HYBRID) == tuple(range(12))
    assert affinity_for(pinned.with_value("affinity", ""), HYBRID) == ()
    assert estimate_trials(space) < 0.1 * len(space.grid())


def test_config_for_turns_a_point_into_runner_settings():
    point = Point.of(gpu_layers=33, threads=6, attention="q8_0_fa", threads_batch=12, batch=1024)
    config = config_for(BASE, point, n_layers=32)
    assert config.n_gpu_layers == -1  # 33 = every layer and the output layer
    assert (config.n_threads, config.n_threads_batch) == (6, 12)
    assert (config.type_k, config.type_v, config.flash_attn) == ("q8_0", "q8_0", True)
    assert (config.n_batch, config.n_ubatch) == (1024, 1024)
    same = config_for(BASE, point.with_value("threads_batch", 0).with_value("gpu_layers", 12), n_layers=32)
    assert same.n_threads_batch == 6 and same.n_gpu_layers == 12


def test_gpu_layer_values_stay_within_the_model():
    assert gpu_layer_values(33, 32) == (16, 25, 33)
    assert gpu_layer_values(0, 32) == (0, 16, 33)


def test_search_on_a_hybrid_space_measures_few_configurations():
    base = BASE.with_changes(n_gpu_layers=20, n_threads=5, n_threads_batch=5)
    space = build_space(base, HYBRID, n_layers=32, gpu_usable=True)

    class Surface(FakeSurface):
        def true_gen(self, p):
            pinned = 1.15 if p.get("affinity") == P_CORES else 1.0
            layers = p.get("gpu_layers") / 33
            threads = {2: 0.7, 3: 0.8, 5: 0.95, 6: 1.0, 12: 0.85, 14: 0.8, 20: 0.6}[p.get("threads")]
            return 40 * (0.3 + layers) * threads * pinned

        def true_ttft(self, p):
            return 1.0

    surface = Surface(crash_layers=33)
    outcome = coordinate_search(space, surface)
    assert outcome.best.point.get("affinity") == P_CORES
    assert outcome.best.point.get("threads") == 6
    assert outcome.best.point.get("gpu_layers") == 26  # 33 ran out of memory
    crashed = [t for t in outcome.trials if not t.measurement.stable]
    assert len(crashed) == 1  # 33 layers did not fit: not tried again with other threads or pinning
    assert len(outcome.trials) <= 25 < len(space.grid()) / 50
