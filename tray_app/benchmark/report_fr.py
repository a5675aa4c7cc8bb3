"""The benchmark in plain French: the headline, configurations in words, notes on what disturbed it.

Speeds are told in words per second (tokens × the words-per-token ratio measured on the model's own
French answer): a non-expert knows what a word is, not a token.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable

from tray_app.benchmark.measurement import Measurement
from tray_app.benchmark.paired import Comparison
from tray_app.benchmark.result import OptimizationResult
from tray_app.benchmark.search import Trial
from tray_app.benchmark.space import (
    AFFINITY,
    ATTENTION,
    BATCH,
    GPU_LAYERS,
    P_CORES,
    THREADS,
    THREADS_BATCH,
    Point,
)
from tray_app.format_fr import decimal_fr, seconds_fr, size_fr
from tray_app.monitoring.throttle_fr import throttle_reasons_fr

BUSY_CPU_PERCENT = 25.0  # other programs above this during the requests: the figures are approximate
DRIFT_NOTE = 0.07
FREQUENCY_DROP = 0.10

ATTENTION_FR = {
    "f16": "attention standard",
    "f16_fa": "attention rapide",
    "q8_0_fa": "attention rapide et mémoire compacte",
}


def cores_fr(n: int) -> str:
    return f"{n} cœur{'s' if n > 1 else ''}"


# -- configurations in words ---------------------------------------------------------------------------


def _count(value: object) -> int:
    """A point's numeric value (layers, threads): the space only holds ints there."""
    if isinstance(value, (int, float, str)):
        return int(value)
    raise TypeError(f"not a count: {value!r}")


def part_fr(name: str, value: object, n_layers: int) -> str:
    if name == GPU_LAYERS:
        layers = _count(value)
        if layers > n_layers:
            return "tout le modèle sur la carte graphique"
        if layers == 0:
            return "processeur seul"
        return f"{layers} couches sur {n_layers} sur la carte graphique"
    if name == THREADS:
        return cores_fr(_count(value))
    if name == THREADS_BATCH:
        return f"lecture avec {cores_fr(_count(value))}" if value else ""
    if name == AFFINITY:
        return "cœurs rapides seulement" if value == P_CORES else ""
    if name == ATTENTION:
        return ATTENTION_FR.get(str(value), str(value))
    if name == BATCH:
        return f"lecture par blocs de {value}"
    return f"{name} {value}"


def describe_point_fr(point: Point, n_layers: int) -> str:
    """Every setting of ``point``: « 2 cœurs · attention rapide · lecture par blocs de 256 »."""
    parts = [part_fr(name, value, n_layers) for name, value in point.items]
    return " · ".join(p for p in parts if p)


def describe_change_fr(point: Point, start: Point, n_layers: int) -> str:
    """Only what differs from ``start``; « réglages actuels » when nothing does."""
    parts = []
    for name, value in point.items:
        if start.get(name) != value:
            text = part_fr(name, value, n_layers)
            if not text and name == THREADS_BATCH:
                text = "lecture avec les mêmes cœurs"
            elif not text and name == AFFINITY:
                text = "tous les cœurs permis"
            parts.append(text)
    return " · ".join(parts) if parts else "réglages actuels"


# -- the result ----------------------------------------------------------------------------------------


def headline_kind(result: OptimizationResult) -> str:
    """Which story the result tells: ``start_failed``, ``faster``, ``sooner``, ``more_on_gpu``, ``lighter``,
    ``small`` or ``same``.

    ``small``: the search moved, but the gain left after measuring the winner again is within the noise,
    or the two figures print the same (« 0 ms au lieu de 0 ms » cannot carry a claim). A result of the
    racing search (``final_check`` set) tells the story its interleaved final check decided.
    """
    if result.start_failed:
        return "start_failed"
    if result.final_check is not None or result.kept_because:
        if not result.improved:
            return "small" if result.final_check is not None else "same"
        return result.kept_because if result.kept_because in RACING_STORIES else "small"
    if not result.improved:
        return "same"
    gain, ttft_gain = result.gen_gain, result.ttft_gain
    words_differ = _words_fr(result, result.after) != _words_fr(result, result.before)
    if gain is not None and gain >= result.thresholds.gen and words_differ:
        return "faster"
    first_after, first_before = result.after.ttft_s, result.before.ttft_s
    delays_differ = first_after is not None and first_before is not None and (
        seconds_fr(first_after) != seconds_fr(first_before)
    )
    if ttft_gain is not None and ttft_gain >= result.thresholds.ttft and delays_differ:
        return "sooner"
    a, b = result.after, result.before
    used_after, used_before = a.peak_vram or a.peak_ram, b.peak_vram or b.peak_ram
    if used_after and used_before and used_after < used_before * 0.95:
        return "lighter"
    return "small"


RACING_STORIES = frozenset({"faster", "sooner", "more_on_gpu", "lighter"})


def signed_percent_fr(x: float) -> str:
    """« +12 % », « −8 % » (a true minus sign; no-break space before %)."""
    return f"{'+' if x >= 0 else '−'}{round(abs(x) * 100)}\u00a0%"


def interval_fr(check: Comparison) -> str:
    """« entre +12 % et +35 % »: where the gain lies, given the noise of the measurements."""
    return f"entre {signed_percent_fr(check.low)} et {signed_percent_fr(check.high)}"


def _words_fr(result: OptimizationResult, m: Measurement) -> str:
    """Words per second as the headline prints them: « 41 »."""
    return str(round(result.words_per_second(m.gen_tps) or 0))


def headline_fr(result: OptimizationResult) -> str:
    """« Réponses 23 % plus rapides : 41 mots/seconde au lieu de 33. » or why nothing changes."""
    before, after = _words_fr(result, result.before), _words_fr(result, result.after)
    kind = headline_kind(result)
    check = result.final_check
    if kind == "start_failed":
        return (
            "Vos réglages actuels ne fonctionnaient pas sur cet ordinateur ; "
            f"les nouveaux donnent {after} mots/seconde."
        )
    if kind == "faster" and check is not None:
        if before == after:  # a gain shown beyond the noise, on small figures: one decimal tells them apart
            before = decimal_fr(result.words_per_second(result.before.gen_tps) or 0, 1)
            after = decimal_fr(result.words_per_second(result.after.gen_tps) or 0, 1)
        return (
            f"Réponses {round(check.gain * 100)} % plus rapides ({interval_fr(check)} selon les mesures) : "
            f"{after} mots/seconde au lieu de {before}."
        )
    if kind == "more_on_gpu":
        tail = f" ({interval_fr(check)} selon les mesures)" if check is not None else ""
        return (
            f"Une plus grande partie du modèle tient maintenant sur la carte graphique ({after} mots/seconde). "
            f"Le gain est trop petit pour être mesuré avec certitude sur cet ordinateur{tail}."
        )
    if kind == "faster":
        gain = round((result.gen_gain or 0) * 100)
        return f"Réponses {gain} % plus rapides : {after} mots/seconde au lieu de {before}."
    if kind == "sooner":
        return (
            f"Réponses qui commencent {round((result.ttft_gain or 0) * 100)} % plus tôt : premier mot après "
            f"{seconds_fr(result.after.ttft_s or 0)} au lieu de {seconds_fr(result.before.ttft_s or 0)}."
        )
    if kind == "lighter":
        return f"Vitesse presque identique ({after} mots/seconde), avec des réglages qui prennent moins de mémoire."
    if kind == "small":
        return (
            "Vos réglages actuels sont déjà les bons : les autres réglages essayés ne font pas nettement mieux "
            f"({before} mots/seconde)."
        )
    return f"Vos réglages actuels sont déjà les meilleurs pour cet ordinateur : {before} mots/seconde."


def first_word_fr(result: OptimizationResult) -> str:
    """The time to first token, before and after; "" when the headline already says it."""
    a, b = result.after.ttft_s, result.before.ttft_s
    kind = headline_kind(result)
    if a is None or b is None or kind == "sooner":
        return ""
    if kind in ("same", "start_failed") or seconds_fr(a) == seconds_fr(b):
        return f"Le premier mot arrive après {seconds_fr(a)} pour une conversation comme celle de l'essai."
    return f"Premier mot après {seconds_fr(a)} au lieu de {seconds_fr(b)} pour une conversation comme celle de l'essai."


def notes_fr(trials: Iterable[Trial], *, drift: float | None, control_failed: bool) -> tuple[str, ...]:
    """What may have disturbed the measurements, and the configurations left out, in plain French."""
    trials = list(trials)
    measured = [t.measurement for t in trials if t.measurement.stable]
    notes: list[str] = []
    busy = [m.other_cpu_percent for m in measured if m.other_cpu_percent is not None]
    if busy and statistics.median(busy) >= BUSY_CPU_PERCENT:
        notes.append(
            f"D'autres programmes utilisaient environ {round(statistics.median(busy))} % du processeur "
            "pendant les mesures : les chiffres sont approximatifs. Fermez les programmes lourds puis "
            "relancez « Optimiser » pour des chiffres plus sûrs."
        )
    if drift is not None and drift <= -DRIFT_NOTE:
        notes.append(
            f"La vitesse a baissé de {round(-drift * 100)} % entre le début et la fin des mesures "
            "(ordinateur qui chauffe, ou autres programmes) : les chiffres sont approximatifs. Relancez "
            "« Optimiser » quand l'ordinateur est au calme."
        )
    drop = frequency_drop(measured)
    if drop is not None and drop >= FREQUENCY_DROP:
        notes.append(
            f"Le processeur a ralenti de {round(drop * 100)} % pendant les mesures : il chauffe peut-être. "
            "Branchez le chargeur et laissez les aérations dégagées."
        )
    throttle = 0
    for m in measured:
        throttle |= m.gpu_throttle
    reasons = throttle_reasons_fr(throttle)
    if reasons:
        notes.append(f"La carte graphique a été ralentie pendant les mesures ({', '.join(reasons)}).")
    unstable = [t for t in trials if not t.measurement.stable]
    if unstable:
        n = len(unstable)
        notes.append(
            f"{n} réglage{'s' if n > 1 else ''} {'ont' if n > 1 else 'a'} été écarté{'s' if n > 1 else ''} : "
            "le modèle s'y arrêtait, manquait de mémoire, chargeait trop la carte graphique ou était "
            "beaucoup trop lent."
        )
    if control_failed:
        notes.append("Le meilleur réglage s'est arrêté lors de la vérification finale : le suivant a été retenu.")
    return tuple(notes)


def frequency_drop(measured: list[Measurement]) -> float | None:
    """Relative drop of the CPU frequency from the first configuration to the slowest later one."""
    mhz = [m.cpu_mhz for m in measured if m.cpu_mhz]
    if len(mhz) < 2 or not mhz[0]:
        return None
    return max(0.0, 1 - min(mhz[1:]) / mhz[0])


FAILURE_SHORT_FR = {
    "out_of_memory": "mémoire insuffisante",
    "crashed": "arrêt brutal",
    "refused": "réglage refusé par le moteur",
    "unsafe": "carte graphique trop pleine",
    "timeout": "chargement trop long",
    "request": "réponse incomplète",
    "slow": "beaucoup trop lent",
}


def failure_short_fr(m: Measurement) -> str:
    """A few words for a table cell: why a configuration was left out."""
    return FAILURE_SHORT_FR.get(m.failure_kind, "ne fonctionne pas")


def memory_short_fr(m: Measurement) -> str:
    """« 900 Mo » or « 900 Mo / 2,1 Go » (RAM / graphics memory) for a table cell."""
    parts = [size_fr(v) for v in (m.peak_ram, m.peak_vram) if v]
    return " / ".join(parts)


def memory_fr(m: Measurement) -> str:
    parts = []
    if m.peak_ram:
        parts.append(f"{size_fr(m.peak_ram)} de mémoire vive")
    if m.peak_vram:
        parts.append(f"{size_fr(m.peak_vram)} de mémoire graphique")
    return ", ".join(parts)
