"""Windows CPU topology through ``GetLogicalProcessorInformationEx(RelationProcessorCore)``.

The parser works on the raw buffer so that it is tested on any OS with buffers built like Windows'.
Layout of one ``SYSTEM_LOGICAL_PROCESSOR_INFORMATION_EX`` record for a processor core (64-bit):
``Relationship:u32 Size:u32 Flags:u8 EfficiencyClass:u8 Reserved[20] GroupCount:u16``
then ``GroupCount`` × ``GROUP_AFFINITY`` (``Mask:u64 Group:u16 Reserved[3]:u16``) at offset 32.
A higher ``EfficiencyClass`` is a faster core; on a hybrid CPU the cores below the maximum are E-cores.
"""

from __future__ import annotations

import struct
import sys

from tray_app.hardware.cpu import CoreRecord

RELATION_PROCESSOR_CORE = 0
_HEADER = struct.Struct("<IIBB20xH")  # 32 bytes with the 2 bytes of GroupCount at offset 30
_AFFINITY = struct.Struct("<QH6x")  # 16 bytes


def parse_core_records(buffer: bytes) -> list[CoreRecord]:
    raw: list[tuple[int, tuple[int, ...]]] = []
    offset = 0
    while offset + 8 <= len(buffer):
        relationship, size = struct.unpack_from("<II", buffer, offset)
        if size <= 0:
            break
        if relationship == RELATION_PROCESSOR_CORE and size >= _HEADER.size:
            _, _, _flags, efficiency_class, group_count = _HEADER.unpack_from(buffer, offset)
            cpus: list[int] = []
            for g in range(group_count):
                mask, group = _AFFINITY.unpack_from(buffer, offset + 32 + g * _AFFINITY.size)
                cpus.extend(group * 64 + bit for bit in range(64) if mask >> bit & 1)
            raw.append((efficiency_class, tuple(cpus)))
        offset += size
    if not raw:
        return []
    fastest = max(cls for cls, _ in raw)
    return [CoreRecord(cpus, efficiency=cls < fastest) for cls, cpus in raw]


def build_core_record(efficiency_class: int, logical_cpus: list[int], smt: bool) -> bytes:
    """One record as Windows lays it out (used by tests and to document the format)."""
    groups: dict[int, int] = {}
    for cpu in logical_cpus:
        groups[cpu // 64] = groups.get(cpu // 64, 0) | (1 << (cpu % 64))
    body = b"".join(_AFFINITY.pack(mask, group) for group, mask in sorted(groups.items()))
    size = _HEADER.size + len(body)
    return _HEADER.pack(RELATION_PROCESSOR_CORE, size, 1 if smt else 0, efficiency_class, len(groups)) + body


def windows_cores() -> list[CoreRecord]:  # pragma: no cover - needs Windows
    if sys.platform != "win32":  # for type checkers too: what follows is Windows' API
        raise OSError("GetLogicalProcessorInformationEx exists on Windows only")
    import ctypes
    from ctypes import wintypes

    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    fn = kernel32.GetLogicalProcessorInformationEx
    fn.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(wintypes.DWORD)]
    fn.restype = wintypes.BOOL
    length = wintypes.DWORD(0)
    fn(RELATION_PROCESSOR_CORE, None, ctypes.byref(length))
    buf = ctypes.create_string_buffer(length.value)
    if not fn(RELATION_PROCESSOR_CORE, buf, ctypes.byref(length)):
        raise OSError(ctypes.get_last_error(), "GetLogicalProcessorInformationEx failed")
    return parse_core_records(buf.raw[: length.value])
