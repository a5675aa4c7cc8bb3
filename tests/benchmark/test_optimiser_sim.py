"""The simulated machines of ``benchmarks/optimiser_sim.py``: deterministic, physical, and what they say.

Their figures are checked by the benchmark itself (it prints them); here: that a seed gives the same
machine and the same measurements, that the surfaces behave as their sources say, and that the
comparison reports what the issue asks for.
"""

from __future__ import annotations

import pytest

from benchmarks import optimiser_sim as sim


def test_a_seed_gives_the_same_machine_and_the_same_measurements():
    a, b = sim.Case(sim.RTX4050, 3), sim.Case(sim.RTX4050, 3)
    assert a.optimum == b.optimum and a.optimum_at == b.optimum_at
    start = a.space.canonical(a.space.start)
    ma, mb = a.measurer(sim.NOISES["15+tout"], "x"), b.measurer(sim.NOISES["15+tout"], "x")
    assert [ma(start).gen_samples for _ in range(3)] == [mb(start).gen_samples for _ in range(3)]
    assert sim.Case(sim.RTX4050, 4).optimum != a.optimum


def test_the_simulated_measurer_keeps_its_runner_for_a_thread_change_only():
    case = sim.Case(sim.CPU4, 1)
    measure = case.measurer(sim.NOISES["15"], "x")
    start = case.space.canonical(case.space.start)
    first = measure(start)
    threads = next(v for v in case.space.dim("threads").values if v != start.get("threads"))
    other_threads = measure(case.space.canonical(start.with_value("threads", threads)))
    assert other_threads.runner == first.runner and other_threads.wall_s < first.wall_s  # no load
    batch = next(v for v in case.space.dim("batch").values if v != start.get("batch"))
    other_batch = measure(case.space.canonical(start.with_value("batch", batch)))
    assert other_batch.runner not in (None, first.runner)


def test_the_surfaces_behave_as_their_sources_say():
    inst = sim.Instance(sim.RTX4050, 0)
    n = inst.model.n_layers

    def gen(layers: int, threads: int = 3, kv: str = "q8_0", fa: bool = True, pinned: bool = False) -> float:
        return inst.truth(layers, threads, threads, kv, fa, 512, pinned, 4096).gen_tps

    # Each layer moved to the card helps generation [S1]...
    assert gen(10) < gen(15) < gen(20)
    # ...until the 6 GB card, beside the avatar, is full: Windows then spills into system memory and
    # generation collapses [S5] (the measurer rejects it as too full anyway).
    everything = inst.truth(n + 1, 3, 3, "q8_0", True, 512, False, 4096)
    assert everything.unsafe and everything.gen_tps < gen(20)
    # A q8_0 cache or flash attention frees memory: more layers fit than with f16 and no flash attention.
    def edge(kv: str, fa: bool) -> int:
        return max(k for k in range(n + 2) if inst.truth(k, 3, 3, kv, fa, 512, False, 4096).accepted)
    assert edge("q8_0", True) > edge("f16", True) > edge("f16", False)
    # E-cores slow generation down [S4]; pinning to the P-cores never hurts here.
    assert gen(20, threads=8) < gen(20, threads=4)
    assert gen(20, pinned=True) >= gen(20, pinned=False)
    # Prompt reading likes big batches on the card [S1][S6].
    assert inst.truth(20, 3, 3, "q8_0", True, 1024, False, 4096).prompt_tps > inst.truth(
        20, 3, 3, "q8_0", True, 256, False, 4096).prompt_tps


def test_a_card_without_system_memory_fallback_runs_out_of_memory():
    inst = sim.Instance(sim.GTX1650, 0)
    assert inst.truth(inst.model.n_layers + 1, 3, 3, "f16", False, 512, False, 4096).outcome == "out_of_memory"


def test_the_true_optimum_is_over_every_layer_count_not_the_grids_five():
    case = sim.Case(sim.RTX4050, 0)
    layers = case.optimum_at[0]
    assert layers not in case.space.dim("gpu_layers").values  # the coarse grid cannot even reach it
    assert case.optimum > max(case.true_gen(p) for p in case.space.grid())


def test_the_comparison_reports_median_p10_and_the_share_of_the_grid():
    rows = sim.evaluate([sim.CPU4], [sim.NOISES["15"]], ["racing", "grid", "random"], seeds=2)
    assert [r["method"] for r in rows] == ["racing", "grid", "random"]
    for r in rows:
        assert 0 < r["p10"] <= r["median"] <= 1.05
        assert r["measurements_fraction_of_grid"] > 0
    racing, grid, random_search = rows
    assert grid["measurements_fraction_of_grid"] >= 1.0  # every point once, plus its two controls
    assert random_search["measurements"] == racing["measurements"]  # equal budgets
    assert racing["measurements_fraction_of_grid"] <= 0.35


@pytest.mark.parametrize("noise", ["15+pannes", "15+rafales", "15+chaleur"])
def test_every_noise_model_runs_and_the_search_keeps_a_working_configuration(noise: str):
    case = sim.Case(sim.GTX1650, 1)
    run = sim.run_racing(case, sim.NOISES[noise])
    assert run.ratio > 0.5  # something that works on this card, whatever the disturbance
