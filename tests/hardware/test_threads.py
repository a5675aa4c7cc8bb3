from tray_app.hardware.cpu import CpuInfo
from tray_app.hardware.threads import recommend_threads


def cpu(physical: int, logical: int, perf: int | None = None, eff: int = 0) -> CpuInfo:
    return CpuInfo("test", physical, logical, perf if perf is not None else physical, eff, (), 16 << 30, "test")


def test_hybrid_laptop_uses_p_cores_minus_one_for_the_avatar():
    advice = recommend_threads(cpu(14, 20, perf=6, eff=8))
    assert advice.threads == 5
    assert "économes" in advice.reason and "avatar" in advice.reason


def test_hyperthreads_do_not_count():
    advice = recommend_threads(cpu(8, 16), cores_left_for_avatar=1)
    assert advice.threads == 7
    assert "hyper-threading" in advice.reason


def test_fully_on_gpu_needs_few_threads():
    assert recommend_threads(cpu(8, 16), gpu_offload_fraction=1.0).threads == 2


def test_never_below_one_thread():
    assert recommend_threads(cpu(1, 1), cores_left_for_avatar=4).threads == 1
    assert recommend_threads(cpu(2, 2), cores_left_for_avatar=0).threads == 2


def test_the_old_fixed_six_is_not_the_answer_on_a_4_core_machine():
    assert recommend_threads(cpu(4, 8)).threads == 3
