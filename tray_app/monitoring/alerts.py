"""The alert engine: from one sample per tick to a level, rate-limited French notifications and protection.

Pure and deterministic: it reads only the samples (and their ``at`` times) and the host events it is
given, so a recorded timeline replays exactly. Rules (thresholds in :class:`AlertSettings`):

* VRAM level « attention » / « critique »: entered when VRAM stays at or above the threshold for
  ``warning_after_s`` / ``critical_after_s``; left only when it stays below (threshold − hysteresis) for
  ``calm_after_s`` (hysteresis: noise around a threshold never makes the level blink).
* Overflow suspected (Windows spills VRAM into system RAM instead of failing): VRAM ≥
  ``overflow_vram_fraction`` while tokens/s < ``overflow_speed_ratio`` × the usual speed, for
  ``overflow_after_s``. The usual speed is the host's baseline (the « Optimiser » measurement), or else
  the best speed seen with this runner while VRAM was below the overflow threshold.
* GPU hot: temperature ≥ ``hot_celsius`` or thermal slowdown bits, for ``hot_after_s``.
* Protection: « critique » or overflow held for ``protection_after_s`` while a model is loaded → one
  :class:`ProtectionRequest` per episode (and at most one per protection cooldown).
* Notifications: one when a level is entered (never when it is left), at most one per kind per
  cooldown, at most ``max_notifications`` per ``per_window_s`` (except the ones that report an action
  the program took), none for muted kinds.
"""

from __future__ import annotations

import collections
import logging
import time
from dataclasses import dataclass
from enum import Enum

from tray_app.hardware.gpu import GpuReading
from tray_app.monitoring import alert_messages as msg
from tray_app.monitoring.alert_settings import UNCAPPED, AlertSettings
from tray_app.monitoring.host_metrics import HostNotice, HostNoticeKind
from tray_app.monitoring.notification import Notification, NotificationKind
from tray_app.monitoring.protection import ProtectionAction, ProtectionReason, ProtectionRequest
from tray_app.monitoring.sample import MonitorSample
from tray_app.monitoring.throttle_fr import is_thermal

log = logging.getLogger(__name__)


class VramLevel(str, Enum):
    NO_GPU = "no_gpu"
    NORMAL = "normal"
    ATTENTION = "attention"
    CRITIQUE = "critique"

    @property
    def rank(self) -> int:
        return _RANK[self]

    @property
    def label_fr(self) -> str:
        return _LABEL[self]


_RANK = {VramLevel.NO_GPU: 0, VramLevel.NORMAL: 0, VramLevel.ATTENTION: 1, VramLevel.CRITIQUE: 2}
_LABEL = {
    VramLevel.NO_GPU: "pas de carte NVIDIA",
    VramLevel.NORMAL: "normale",
    VramLevel.ATTENTION: "attention",
    VramLevel.CRITIQUE: "critique",
}


@dataclass(frozen=True, slots=True)
class AlertState:
    vram_level: VramLevel = VramLevel.NO_GPU
    vram_fraction: float | None = None
    overflow_suspected: bool = False
    gpu_hot: bool = False
    protection_requested: bool = False  # during the current critical/overflow episode

    @property
    def alerts(self) -> tuple[VramLevel, bool, bool, bool]:
        """What the icon and the tooltip depend on (the exact fraction left out): compare these."""
        return (self.vram_level, self.overflow_suspected, self.gpu_hot, self.protection_requested)

    @property
    def needs_attention(self) -> bool:
        """True when the tray icon should show the warning state."""
        return self.vram_level.rank >= 1 or self.overflow_suspected or self.gpu_hot

    def to_dict(self) -> dict[str, object]:
        return {
            "level": self.vram_level.value,
            "vram_fraction": None if self.vram_fraction is None else round(self.vram_fraction, 4),
            "overflow_suspected": self.overflow_suspected,
            "gpu_hot": self.gpu_hot,
            "protection_requested": self.protection_requested,
        }


@dataclass(frozen=True, slots=True)
class AlertUpdate:
    state: AlertState
    notifications: tuple[Notification, ...] = ()
    protection: ProtectionRequest | None = None


class _Held:
    """For how long a condition has been true without interruption."""

    __slots__ = ("since",)

    def __init__(self) -> None:
        self.since: float | None = None

    def update(self, condition: bool, at: float) -> float | None:
        """Seconds the condition has held (0 at its first tick), None when it is false."""
        if not condition:
            self.since = None
            return None
        if self.since is None or at < self.since:  # first tick, or the clock went back
            self.since = at
        return at - self.since

    def reset(self) -> None:
        self.since = None


def _held_for(value: float | None, seconds: float) -> bool:
    return value is not None and value >= seconds


class AlertEngine:
    def __init__(self, settings: AlertSettings | None = None) -> None:
        self.settings = settings or AlertSettings()
        self.state = AlertState()
        self._level = VramLevel.NO_GPU
        self._above_warning, self._above_critical, self._calm = _Held(), _Held(), _Held()
        self._overflow, self._overflow_cond, self._overflow_clear = False, _Held(), _Held()
        self._hot, self._hot_cond, self._hot_clear = False, _Held(), _Held()
        self._danger = _Held()  # « critique » or overflow, for the protection
        self._protected_episode = False
        self._last_protection: float | None = None
        self._baseline_pid: int | None = None
        self._learned_baseline: float | None = None
        self._last_sent: dict[NotificationKind, float] = {}
        self._recent: collections.deque[float] = collections.deque()

    def configure(self, settings: AlertSettings) -> None:
        """New thresholds or mutings, effective from the next tick; levels and rate limits are kept."""
        self.settings = settings

    # -- ticks -----------------------------------------------------------------------------------
    def update(self, sample: MonitorSample) -> AlertUpdate:
        gpu = sample.gpu
        fraction = gpu.used_fraction if gpu is not None else None
        if gpu is None or fraction is None:  # no GPU, or the driver does not tell its memory: no alert
            self._forget_gpu()
            self.state = AlertState()
            return AlertUpdate(self.state)
        at = sample.at
        out: list[Notification | None] = []
        previous, self._level = self._level, self._next_level(fraction, at)
        if self._level.rank > previous.rank:
            out.append(self._level_notification(sample, fraction))
        out.append(self._update_overflow(sample, fraction, at))
        out.append(self._update_hot(gpu, at))
        protection = self._update_protection(sample, gpu, at)
        if protection is not None:
            out.append(self._record(NotificationKind.PROTECTION, protection.message_fr, at))
        self.state = AlertState(
            vram_level=self._level,
            vram_fraction=fraction,
            overflow_suspected=self._overflow,
            gpu_hot=self._hot,
            protection_requested=self._protected_episode,
        )
        return AlertUpdate(self.state, tuple(n for n in out if n is not None), protection)

    def host_event(self, event: HostNotice, now: float | None = None) -> tuple[Notification, ...]:
        """A host event (model unloaded, runner restarted): the notification to show, if any."""
        at = event.at if event.at is not None else (now if now is not None else time.time())
        if event.kind is HostNoticeKind.MODEL_UNLOADED_IDLE:
            note = self._emit(NotificationKind.MODEL_UNLOADED, msg.model_unloaded(event.idle_seconds), at)
        elif event.kind is HostNoticeKind.RUNNER_RESTARTED_SAFER:
            self._learned_baseline = None  # a safer plan is slower: learn its speed again
            note = self._emit(NotificationKind.RUNNER_RESTARTED, msg.runner_restarted(event.detail_fr), at)
        elif event.kind is HostNoticeKind.RUNNER_RESTARTED:
            note = self._emit(NotificationKind.RUNNER_RESTARTED, msg.runner_crashed(event.detail_fr), at)
        else:  # pragma: no cover - a new kind without a rule
            log.warning("host event %r has no notification rule", event.kind)
            note = None
        return (note,) if note is not None else ()

    # -- VRAM level ------------------------------------------------------------------------------
    def _next_level(self, fraction: float, at: float) -> VramLevel:
        s = self.settings
        current = VramLevel.NORMAL if self._level is VramLevel.NO_GPU else self._level
        above_warning = self._above_warning.update(fraction >= s.warning_fraction, at)
        above_critical = self._above_critical.update(fraction >= s.critical_fraction, at)
        entered = VramLevel.NORMAL
        if _held_for(above_critical, s.critical_after_s):
            entered = VramLevel.CRITIQUE
        elif _held_for(above_warning, s.warning_after_s):
            entered = VramLevel.ATTENTION
        if entered.rank > current.rank:
            self._calm.reset()
            return entered
        if fraction >= s.critical_fraction - s.hysteresis:
            supported = VramLevel.CRITIQUE
        elif fraction >= s.warning_fraction - s.hysteresis:
            supported = VramLevel.ATTENTION
        else:
            supported = VramLevel.NORMAL
        if supported.rank < current.rank:
            if _held_for(self._calm.update(True, at), s.calm_after_s):
                self._calm.reset()
                return supported
            return current
        self._calm.reset()
        return current

    def _level_notification(self, sample: MonitorSample, fraction: float) -> Notification | None:
        s = self.settings
        if self._level is VramLevel.CRITIQUE:
            text = msg.vram_critical(fraction, protection_follows=s.protection_enabled and sample.model_loaded)
            note = self._emit(NotificationKind.VRAM_CRITICAL, text, sample.at)
            self._last_sent[NotificationKind.VRAM_WARNING] = sample.at  # the user knows: no warning soon
            return note
        return self._emit(NotificationKind.VRAM_WARNING, msg.vram_warning(fraction), sample.at)

    # -- overflow into system RAM ---------------------------------------------------------------
    def _usual_speed(self, sample: MonitorSample, fraction: float) -> float | None:
        host = sample.host
        if host is None:
            return None
        if host.runner_pid != self._baseline_pid:
            self._baseline_pid, self._learned_baseline = host.runner_pid, None
        if host.baseline_tokens_per_second:
            return host.baseline_tokens_per_second
        speed = host.tokens_per_second
        if host.model_loaded and speed and fraction < self.settings.overflow_vram_fraction:
            self._learned_baseline = max(self._learned_baseline or 0.0, speed)
        return self._learned_baseline

    def _update_overflow(self, sample: MonitorSample, fraction: float, at: float) -> Notification | None:
        s = self.settings
        usual = self._usual_speed(sample, fraction)
        speed = sample.tokens_per_second
        condition = bool(
            sample.model_loaded
            and usual
            and speed is not None
            and fraction >= s.overflow_vram_fraction
            and speed < s.overflow_speed_ratio * usual
        )
        held = self._overflow_cond.update(condition, at)
        if not self._overflow:
            if _held_for(held, s.overflow_after_s) and usual and speed is not None:
                self._overflow = True
                self._overflow_clear.reset()
                return self._emit(NotificationKind.VRAM_OVERFLOW, msg.vram_overflow(usual / max(speed, 0.01)), at)
        elif _held_for(self._overflow_clear.update(not condition, at), s.calm_after_s):
            self._overflow = False
        return None

    # -- temperature -----------------------------------------------------------------------------
    def _update_hot(self, gpu: GpuReading, at: float) -> Notification | None:
        s = self.settings
        temp, thermal = gpu.temperature_c, is_thermal(gpu.throttle_reasons)
        held = self._hot_cond.update(thermal or (temp is not None and temp >= s.hot_celsius), at)
        if not self._hot:
            if _held_for(held, s.hot_after_s):
                self._hot = True
                self._hot_clear.reset()
                return self._emit(NotificationKind.GPU_HOT, msg.gpu_hot(temp, thermal), at)
            return None
        cool = not thermal and (temp is None or temp < s.hot_celsius - s.hot_margin_celsius)
        if _held_for(self._hot_clear.update(cool, at), s.calm_after_s):
            self._hot = False
        return None

    # -- protection ------------------------------------------------------------------------------
    def _update_protection(
        self, sample: MonitorSample, gpu: GpuReading, at: float
    ) -> ProtectionRequest | None:
        s = self.settings
        critical = self._level is VramLevel.CRITIQUE
        held = self._danger.update(critical or self._overflow, at)
        if held is None:
            self._protected_episode = False
            return None
        if self._protected_episode or not s.protection_enabled or not sample.model_loaded:
            return None
        if not _held_for(held, s.protection_after_s):
            return None
        cooldown = s.cooldowns.get(NotificationKind.PROTECTION, 0.0)
        if self._last_protection is not None and 0 <= at - self._last_protection < cooldown:
            return None
        self._protected_episode = True
        self._last_protection = at
        reason = ProtectionReason.VRAM_CRITICAL if critical else ProtectionReason.VRAM_OVERFLOW
        text = msg.protection_critical(held) if critical else msg.protection_overflow(held)
        log.warning("VRAM protection requested (%s, held %.0f s)", reason.value, held)
        return ProtectionRequest(
            actions=(ProtectionAction.NEXT_LOAD_SAFER, ProtectionAction.UNLOAD_WHEN_IDLE),
            reason=reason,
            vram_used=gpu.memory_used or 0,  # known here: update() stops first when it is not
            vram_total=gpu.memory_total or 0,
            runner_pid=sample.host.runner_pid if sample.host else None,
            held_for_s=held,
            at=at,
            message_fr=text,
        )

    # -- rate limits -----------------------------------------------------------------------------
    def _emit(self, kind: NotificationKind, text: str, at: float) -> Notification | None:
        s = self.settings
        if kind in s.muted:
            log.info("notification %s muted by the user", kind.value)
            return None
        last = self._last_sent.get(kind)
        if last is not None and 0 <= at - last < s.cooldowns.get(kind, 0.0):
            log.info("notification %s not shown: one was shown %.0f s ago", kind.value, at - last)
            return None
        if kind not in UNCAPPED:
            while self._recent and not 0 <= at - self._recent[0] < s.per_window_s:
                self._recent.popleft()
            if len(self._recent) >= s.max_notifications:
                log.info("notification %s not shown: %d already in %.0f s", kind.value, len(self._recent),
                         s.per_window_s)
                return None
            self._recent.append(at)
        return self._record(kind, text, at)

    def _record(self, kind: NotificationKind, text: str, at: float) -> Notification:
        self._last_sent[kind] = at
        log.info("notification %s: %s", kind.value, text)
        return Notification(kind, msg.fit_balloon(text), at)

    def _forget_gpu(self) -> None:
        self._level = VramLevel.NO_GPU
        for held in (self._above_warning, self._above_critical, self._calm, self._overflow_cond,
                     self._overflow_clear, self._hot_cond, self._hot_clear, self._danger):
            held.reset()
        self._overflow = self._hot = self._protected_episode = False
