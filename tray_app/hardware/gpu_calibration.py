"""What this card really costs beyond llama.cpp's buffers: the driver and context overhead, learnt on the
user's own machine, per graphics card + driver + engine backend.

llama.cpp's dry run knows its buffers to the byte (weights, KV cache, compute), but not what the driver
adds around them: the CUDA context and its kernels, Vulkan's pipelines and allocator, the driver's own
bookkeeping. That differs from card to card and driver to driver, so it is measured: after every real
load, the runner's memory as NVML sees it minus the device buffers llama.cpp logged
(:func:`learn_from_load`). A load that went over anyway (out-of-memory, or the spill the monitor
detects) raises it (:func:`learn_from_overflow`). The next plan reserves it.

Stored in the ``gpu_calibration`` setting as JSON (:class:`CalibrationBook`), read and written only
here. Rules: a new measurement is taken at once when it is higher (the safe side); a lower one moves the
figure only halfway down, so that one quiet load does not undo what an earlier, fuller one showed.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass

from tray_app.format_fr import MIB, size_fr
from tray_app.settings import Settings

log = logging.getLogger(__name__)

SETTING_KEY = "gpu_calibration"  # SettingValues.gpu_calibration
MAX_CARDS = 8  # a laptop has one card; a few drivers over time at most
OVERFLOW_STEP = 128 * MIB  # what a load that went over adds, at least
# Before any measurement on a card: what the backend's driver context usually takes. CUDA: its context,
# cuBLAS and the kernels (Ollama reserves 457 MiB for it); Vulkan: the instance, pipelines and the
# allocator's blocks, smaller. Replaced by the measurement after the first load.
DEFAULT_OVERHEAD = {"cuda": 450 * MIB, "hip": 450 * MIB, "vulkan": 256 * MIB}
DEFAULT_OVERHEAD_OTHER = 256 * MIB


def card_key(gpu_name: str, driver: str, backend: str) -> str:
    """Which card, driver and engine backend a calibration belongs to."""
    return f"{gpu_name or '?'}|{driver or '?'}|{backend or 'cpu'}"


@dataclass(frozen=True)
class Calibration:
    key: str  # card_key()
    overhead: int  # bytes the runner takes on the card beyond llama.cpp's device buffers
    loads: int  # real loads measured
    overflows: int  # loads that went over (out-of-memory, spill)
    last_measured: int | None  # the last load's figure, before smoothing
    updated_at: float  # time.time()

    @property
    def gpu_name(self) -> str:
        return self.key.split("|")[0]

    def describe_fr(self) -> str:
        """One line for ``plan`` and ``doctor``."""
        name, driver, backend = (self.key.split("|") + ["", "", ""])[:3]
        what = f"{self.loads} chargement{'s' if self.loads > 1 else ''} mesuré{'s' if self.loads > 1 else ''}"
        if self.overflows:
            what += f", {self.overflows} dépassement{'s' if self.overflows > 1 else ''}"
        return (f"{size_fr(self.overhead)} en plus des tampons du modèle "
                f"({name}, pilote {driver}, {backend} ; {what})")


class CalibrationBook:
    """Every card's calibration, as stored in the settings."""

    def __init__(self, entries: dict[str, Calibration] | None = None) -> None:
        self.entries = dict(entries or {})

    @classmethod
    def from_settings(cls, settings: Settings) -> CalibrationBook:
        return cls.from_json(settings.values.gpu_calibration)

    @classmethod
    def from_json(cls, text: str) -> CalibrationBook:
        if not text:
            return cls()
        try:
            data = json.loads(text)
            entries = {}
            for key, value in data.items():
                entry = Calibration(
                    key=str(key),
                    overhead=int(value["overhead"]),
                    loads=int(value.get("loads", 0)),
                    overflows=int(value.get("overflows", 0)),
                    last_measured=None if value.get("last_measured") is None else int(value["last_measured"]),
                    updated_at=float(value.get("updated_at", 0.0)),
                )
                if entry.overhead < 0:
                    raise ValueError(f"negative overhead for {key}")
                entries[entry.key] = entry
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            log.warning("gpu calibration unreadable (%s): starting again", exc)
            return cls()
        return cls(entries)

    def to_json(self) -> str:
        newest = sorted(self.entries.values(), key=lambda c: c.updated_at, reverse=True)[:MAX_CARDS]
        data = {c.key: {k: v for k, v in asdict(c).items() if k != "key"} for c in newest}
        return json.dumps(data, ensure_ascii=False, separators=(",", ":"))

    def save(self, settings: Settings) -> None:
        settings.set(SETTING_KEY, self.to_json())
        settings.save()

    def get(self, key: str) -> Calibration | None:
        return self.entries.get(key)

    def learn_from_load(
        self, key: str, runner_bytes: int, buffer_bytes: int, *, now: float | None = None
    ) -> Calibration:
        """A real load: the runner took ``runner_bytes`` on the card for ``buffer_bytes`` of llama.cpp's
        device buffers. Returns the updated calibration."""
        measured = max(0, runner_bytes - buffer_bytes)
        old = self.entries.get(key)
        if old is None:
            overhead = measured
        else:
            overhead = max(measured, (old.overhead + measured) // 2)
        entry = Calibration(
            key=key,
            overhead=overhead,
            loads=(old.loads if old else 0) + 1,
            overflows=old.overflows if old else 0,
            last_measured=measured,
            updated_at=time.time() if now is None else now,
        )
        self.entries[key] = entry
        log.info("gpu calibration %s: overhead %d MiB (measured %d MiB)", key, overhead // MIB, measured // MIB)
        return entry

    def learn_from_overflow(self, key: str, default_overhead: int, *, at_least: int = 0,
                            now: float | None = None) -> Calibration:
        """A load that went over: the overhead was too small by at least ``at_least`` bytes (or by
        :data:`OVERFLOW_STEP`). Returns the updated calibration."""
        old = self.entries.get(key)
        base = old.overhead if old else default_overhead
        entry = Calibration(
            key=key,
            overhead=base + max(OVERFLOW_STEP, at_least),
            loads=old.loads if old else 0,
            overflows=(old.overflows if old else 0) + 1,
            last_measured=old.last_measured if old else None,
            updated_at=time.time() if now is None else now,
        )
        self.entries[key] = entry
        log.warning("gpu calibration %s: a load went over, overhead now %d MiB", key, entry.overhead // MIB)
        return entry

    def forget(self, key: str) -> None:
        self.entries.pop(key, None)


def default_overhead(backend: str) -> int:
    return DEFAULT_OVERHEAD.get(backend, DEFAULT_OVERHEAD_OTHER)


def overhead_for(book: CalibrationBook, key: str, backend: str) -> tuple[int, Calibration | None]:
    """The overhead to reserve for this card: its calibration, else the backend's default."""
    entry = book.get(key)
    return (entry.overhead, entry) if entry is not None else (default_overhead(backend), None)

