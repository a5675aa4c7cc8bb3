from pathlib import Path

from tray_app.hardware.cpu import (
    CoreRecord,
    detect_cpu,
    linux_cores,
    parse_cpu_list,
    summarize_cores,
)
from tray_app.hardware.cpu_windows import build_core_record, parse_core_records


def test_kernel_cpu_lists_are_parsed():
    assert parse_cpu_list("0-3,8,10-11\n") == [0, 1, 2, 3, 8, 10, 11]
    assert parse_cpu_list("") == []


def make_sysfs(root: Path, cores: list[list[int]], atom: str | None) -> Path:
    """A sysfs tree shaped like the kernel's: one topology folder per logical CPU."""
    for core_id, cpus in enumerate(cores):
        for cpu in cpus:
            topo = root / "devices" / "system" / "cpu" / f"cpu{cpu}" / "topology"
            topo.mkdir(parents=True)
            (topo / "core_id").write_text(f"{core_id * 4}\n")
            (topo / "physical_package_id").write_text("0\n")
    if atom is not None:
        (root / "devices" / "cpu_atom").mkdir(parents=True)
        (root / "devices" / "cpu_atom" / "cpus").write_text(atom + "\n")
    return root


def test_linux_hybrid_intel_counts_p_and_e_cores(tmp_path):
    # i7-12700H: 6 P-cores with hyper-threading (CPUs 0-11) and 8 E-cores (CPUs 12-19)
    cores = [[2 * i, 2 * i + 1] for i in range(6)] + [[12 + i] for i in range(8)]
    records = linux_cores(make_sysfs(tmp_path, cores, atom="12-19"))
    physical, perf, eff, p_logical = summarize_cores(records)
    assert (physical, perf, eff) == (14, 6, 8)
    assert p_logical == tuple(range(12))


def test_linux_plain_cpu_with_smt_has_no_e_cores(tmp_path):
    records = linux_cores(make_sysfs(tmp_path, [[0, 4], [1, 5], [2, 6], [3, 7]], atom=None))
    assert summarize_cores(records)[:3] == (4, 4, 0)


def test_linux_offline_cpus_are_ignored(tmp_path):
    root = make_sysfs(tmp_path, [[0], [1]], atom=None)
    (root / "devices" / "system" / "cpu" / "cpu1" / "online").write_text("0\n")
    assert len(linux_cores(root)) == 1


def test_windows_buffer_of_a_hybrid_cpu():
    # EfficiencyClass 1 = P-core (faster), 0 = E-core, as Windows reports on Alder Lake
    buffer = b"".join(build_core_record(1, [2 * i, 2 * i + 1], smt=True) for i in range(4))
    buffer += b"".join(build_core_record(0, [8 + i], smt=False) for i in range(8))
    records = parse_core_records(buffer)
    assert summarize_cores(records)[:3] == (12, 4, 8)
    assert records[0] == CoreRecord((0, 1), efficiency=False)


def test_windows_buffer_of_a_uniform_cpu_has_no_e_cores():
    buffer = b"".join(build_core_record(0, [i, i + 8], smt=True) for i in range(8))
    assert summarize_cores(parse_core_records(buffer))[:3] == (8, 8, 0)


def test_windows_processor_groups_beyond_64_cpus():
    records = parse_core_records(build_core_record(0, [64, 65], smt=True))
    assert records[0].logical_cpus == (64, 65)


def test_detection_on_this_machine_is_consistent():
    cpu = detect_cpu()
    assert 1 <= cpu.physical_cores <= cpu.logical_cpus
    assert cpu.performance_cores + cpu.efficiency_cores == cpu.physical_cores
    assert cpu.ram_total > 0 and cpu.model
