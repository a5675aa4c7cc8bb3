"""``desktop-mate-tray monitor``: the gauges and alerts without the tray, live or on a recording.

    desktop-mate-tray monitor --replay FILE [--json] [--speed N | --fast] [--runner-pid PID]
    desktop-mate-tray monitor [--seconds N] [--record FILE] [--json]

Each tick prints one line (French) or one JSON object ``{"type": "sample", …}``; every notification the
tray would show prints as ``{"type": "notification", …}``, every protection request as
``{"type": "protection", …}``, and a last ``{"type": "summary", …}`` counts them. Thresholds and mutings
come from the user's settings.
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tray_app.format_fr import decimal_fr, gib_fr, percent_fr, speed_fr
from tray_app.monitoring import AlertSettings, LiveMachine, Monitor, MonitorTick, ReplayMachine
from tray_app.monitoring.recording import DEFAULT_RECORD_SECONDS
from tray_app.paths import app_paths
from tray_app.settings import Settings

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("monitor", help="mémoire graphique, processeur et alertes, sans l'icône")
    p.add_argument("--replay", type=Path, metavar="FICHIER", help="rejouer un enregistrement de mesures")
    p.add_argument("--json", action="store_true", help="une ligne JSON par mesure et par notification")
    speed = p.add_mutually_exclusive_group()
    speed.add_argument("--speed", type=float, default=1.0, metavar="N", help="rejouer N fois plus vite")
    speed.add_argument("--fast", action="store_true", help="rejouer sans attendre entre les mesures")
    p.add_argument("--runner-pid", type=int, metavar="PID",
                   help="processus du modèle dans l'enregistrement (s'il ne le dit pas lui-même)")
    p.add_argument("--seconds", type=float, metavar="N", help="arrêter après N secondes de mesures")
    p.add_argument("--record", type=Path, metavar="FICHIER",
                   help=f"enregistrer les mesures dans ce fichier ({DEFAULT_RECORD_SECONDS} s par défaut)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.speed <= 0:
        print("La vitesse (--speed) doit être plus grande que 0.", file=sys.stderr)
        return 2
    settings = Settings.load(app_paths().settings_file)
    alert_settings = AlertSettings.from_settings(settings)
    if args.replay is not None:
        try:
            source: Any = ReplayMachine(args.replay, runner_pid=args.runner_pid, start_at=0.0)
        except FileNotFoundError:
            print(f"Fichier introuvable : {args.replay}. Vérifiez le chemin.", file=sys.stderr)
            return 2
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, IndexError) as exc:
            log.info("recording %s unreadable: %r", args.replay, exc)
            print(f"{args.replay} n'est pas un enregistrement de mesures lisible. Choisissez un fichier créé "
                  "par « Enregistrer 5 minutes de mesures ».", file=sys.stderr)
            return 2
        delay = 0.0 if args.fast else source.interval_s / args.speed
    else:
        source, delay = LiveMachine(), 1.0
    monitor = Monitor(source, settings=alert_settings)
    if args.record is not None:
        monitor.start_recording(args.seconds or DEFAULT_RECORD_SECONDS)
    counts: collections.Counter[str] = collections.Counter()
    protections = samples = 0
    started_at: float | None = None
    try:
        for tick in _ticks(monitor, delay, args.seconds):
            started_at = tick.sample.at if started_at is None else started_at
            samples += 1
            counts.update(n.kind.value for n in tick.notifications)
            protections += tick.protection is not None
            _print_tick(tick, args.json, started_at)
            if monitor.recorder is not None and monitor.recorder.complete:
                break
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:  # `… | head`: the reader left
        return 0
    finally:
        monitor.close()
    if args.record is not None and monitor.recorder is not None:
        try:
            monitor.recorder.write(args.record)
        except (OSError, ValueError) as exc:
            print(f"Les mesures n'ont pas pu être enregistrées dans {args.record} ({exc}).", file=sys.stderr)
            return 1
    _print_summary(samples, counts, protections, args.json, args.record)
    return 0


def _ticks(monitor: Monitor, delay: float, seconds: float | None) -> Iterator[MonitorTick]:
    deadline = time.monotonic()
    first: float | None = None
    while True:
        tick = monitor.tick()
        if tick is None:
            return
        first = tick.sample.at if first is None else first
        if seconds is not None and tick.sample.at - first >= seconds:
            return
        yield tick
        if delay:
            deadline += delay
            time.sleep(max(0.0, deadline - time.monotonic()))


def sample_record(tick: MonitorTick) -> dict[str, Any]:
    s, gpu = tick.sample, tick.sample.gpu
    record: dict[str, Any] = {"type": "sample", "t": round(s.at, 3), **tick.state.to_dict()}
    record.update(
        vram_used=s.vram_used,
        vram_total=s.vram_total,
        model_vram=s.model_vram,
        model_vram_estimated=s.model_vram_estimated,
        gpu_util=gpu.utilization_percent if gpu else None,
        temperature_c=gpu.temperature_c if gpu else None,
        power_w=gpu.power_w if gpu else None,
        throttle=list(s.throttle_fr),
        cpu_percent=round(s.cpu_percent, 1),
        ram_used=s.ram_used,
        ram_total=s.ram_total,
        model_loaded=s.model_loaded,
        tokens_per_s=s.tokens_per_second,
        gpu_unavailable_reason=s.gpu_unavailable_reason,
    )
    return record


def sample_line(tick: MonitorTick, started_at: float = 0.0) -> str:
    """One French line; the time in front is minutes:seconds since ``started_at``."""
    s, state = tick.sample, tick.state
    minutes, seconds = divmod(max(0, int(s.at - started_at)), 60)
    parts = []
    if s.gpu is None:
        parts.append(f"pas de carte NVIDIA ({s.gpu_unavailable_reason})" if s.gpu_unavailable_reason
                     else "pas de carte NVIDIA")
    else:
        g = s.gpu
        level = f" — {state.vram_level.label_fr}" if state.vram_level.rank else ""
        fraction = g.used_fraction
        if g.memory_used is None or g.memory_total is None or fraction is None:
            parts.append("mémoire graphique inconnue (le pilote ne la donne pas)")
        else:
            parts.append(f"mémoire graphique {gib_fr(g.memory_used)} / {gib_fr(g.memory_total)} "
                         f"({percent_fr(fraction)}){level}")
        if s.model_vram is not None:
            parts.append(f"modèle {gib_fr(s.model_vram)}{' (estimé)' if s.model_vram_estimated else ''}")
        if g.temperature_c is not None:
            parts.append(f"{g.temperature_c} °C")
    parts.append(f"processeur {decimal_fr(s.cpu_percent, 0)} %")
    parts.append(f"mémoire {gib_fr(s.ram_used)} / {gib_fr(s.ram_total)}")
    if s.model_loaded and s.tokens_per_second:
        parts.append(speed_fr(s.tokens_per_second))
    if state.overflow_suspected:
        parts.append("le modèle ralentit : la mémoire graphique déborde")
    if state.gpu_hot:
        parts.append("carte très chaude")
    return f"[{minutes:02d}:{seconds:02d}] " + " · ".join(parts)


def _print_tick(tick: MonitorTick, as_json: bool, started_at: float) -> None:
    if as_json:
        print(json.dumps(sample_record(tick), ensure_ascii=False))
        for note in tick.notifications:
            print(json.dumps({"type": "notification", "t": round(note.at, 3), **note.to_dict()}, ensure_ascii=False))
        if tick.protection is not None:
            print(json.dumps({"type": "protection", "t": round(tick.protection.at, 3), **tick.protection.to_dict()},
                             ensure_ascii=False))
    else:
        print(sample_line(tick, started_at))
        for note in tick.notifications:
            print(f"    → Notification : {note.text}")
        if tick.protection is not None:
            print(f"    → Protection : {tick.protection.message_fr}")
    sys.stdout.flush()


def _print_summary(samples: int, counts: collections.Counter[str], protections: int, as_json: bool,
                   record: Path | None) -> None:
    if as_json:
        print(json.dumps({"type": "summary", "samples": samples, "notifications": dict(counts),
                          "protections": protections, "recorded_to": str(record) if record else None},
                         ensure_ascii=False))
        return
    total = sum(counts.values())
    print(f"Fin : {samples} mesure{'s' if samples > 1 else ''}, {total} notification{'s' if total > 1 else ''}, "
          f"{protections} protection{'s' if protections > 1 else ''} déclenchée{'s' if protections > 1 else ''}.")
    if record:
        print(f"Mesures enregistrées dans {record}.")
