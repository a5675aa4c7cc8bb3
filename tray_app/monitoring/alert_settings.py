"""The alert engine's thresholds, delays and rate limits, and how they are read from the user's settings."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from tray_app.monitoring.notification import NotificationKind
from tray_app.settings import Settings
from tray_app.settings_schema import SettingValues

log = logging.getLogger(__name__)

# Shortest delay between two notifications of the same kind (seconds).
DEFAULT_COOLDOWNS: Mapping[NotificationKind, float] = MappingProxyType(
    {
        NotificationKind.VRAM_WARNING: 600.0,
        NotificationKind.VRAM_CRITICAL: 300.0,
        NotificationKind.VRAM_OVERFLOW: 600.0,
        NotificationKind.GPU_HOT: 900.0,
        NotificationKind.MODEL_UNLOADED: 60.0,
        NotificationKind.RUNNER_RESTARTED: 30.0,
        NotificationKind.PROTECTION: 600.0,
    }
)

# Kinds that report something the program did: they ignore the global cap (never the per-kind cooldown).
UNCAPPED: frozenset[NotificationKind] = frozenset({NotificationKind.PROTECTION, NotificationKind.RUNNER_RESTARTED})


_SETTING = SettingValues()  # the settings' defaults, for the thresholds the user can change


@dataclass(frozen=True)
class AlertSettings:
    """Defaults suit a 6 GB laptop GPU at 1 Hz. Fractions are of the GPU's total memory."""

    warning_fraction: float = _SETTING.vram_warning_percent / 100  # « attention » from here…
    critical_fraction: float = _SETTING.vram_critical_percent / 100  # « critique » from here…
    hysteresis: float = 0.03  # …and a level is left only below its threshold minus this
    warning_after_s: float = 5.0  # how long above the threshold before the level is entered
    critical_after_s: float = 3.0
    calm_after_s: float = 10.0  # how long below (threshold − hysteresis) before a level is left
    overflow_vram_fraction: float = 0.95  # overflow suspected: VRAM at least this full…
    overflow_speed_ratio: float = 0.40  # …and tokens/s below this share of the usual speed…
    overflow_after_s: float = 5.0  # …for this long
    hot_celsius: int = 87  # GPU too hot from here (or when the thermal slowdown bits are set)…
    hot_after_s: float = 10.0  # …for this long
    hot_margin_celsius: int = 5  # and cool again below hot_celsius − this
    protection_enabled: bool = _SETTING.vram_protection
    protection_after_s: float = _SETTING.vram_protection_delay_s  # critique (or overflow) this long → protection
    cooldowns: Mapping[NotificationKind, float] = field(default_factory=lambda: DEFAULT_COOLDOWNS)
    max_notifications: int = 4  # at most this many (capped kinds) …
    per_window_s: float = 600.0  # … in this many seconds
    muted: frozenset[NotificationKind] = frozenset()

    @classmethod
    def from_settings(cls, settings: Settings) -> AlertSettings:
        """Read the user's settings; inconsistent thresholds are corrected."""
        warning = settings.values.vram_warning_percent / 100
        critical = settings.values.vram_critical_percent / 100
        if warning >= critical:
            log.warning("alert thresholds: warning %.2f >= critical %.2f; warning lowered", warning, critical)
            warning = max(0.05, critical - 0.05)
        muted = frozenset(
            kind for kind in NotificationKind if kind.setting_key and not settings.get(kind.setting_key)
        )
        return cls(
            warning_fraction=warning,
            critical_fraction=critical,
            protection_enabled=settings.values.vram_protection,
            protection_after_s=settings.values.vram_protection_delay_s,
            muted=muted,
        )
