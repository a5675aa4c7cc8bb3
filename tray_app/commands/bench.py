"""``desktop-mate-tray bench MODEL``: what « Optimiser » measures, without the window.

MODEL is a ``.gguf`` path or ``demo``. The search starts from the settings the program uses today and
prints each configuration as it is measured, then the best one. ``--quick`` measures less per
configuration (2 requests of 48 tokens instead of 3 of 64). ``--exhaustive`` then measures the whole
grid of the same space, so the search's claim can be checked: it prints the best generation speed and
the wall time of both, and how the search's choice did in the grid; when the grid's fastest point is
another one, the two are then measured side by side (alternately, ``--rounds`` times each), because the
fastest of many noisy measurements is flattered by its own noise; the ratio comes with its interval.
Nothing is saved or applied.
Exit status: 0 measured, 1 no configuration worked (or cancelled), 2 unusable model file.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from tray_app.benchmark.engine import BenchmarkError
from tray_app.benchmark.measurement import Measurement
from tray_app.benchmark.optimizer import DEFAULT_STRATEGY, GRID, Optimizer
from tray_app.benchmark.paired import Comparison
from tray_app.benchmark.progress import BenchProgress
from tray_app.benchmark.report_fr import (
    describe_point_fr,
    first_word_fr,
    headline_fr,
    interval_fr,
    memory_fr,
    signed_percent_fr,
)
from tray_app.benchmark.result import OptimizationResult
from tray_app.benchmark.search import BenchmarkCancelled, Trial
from tray_app.benchmark.space import Point
from tray_app.format_fr import decimal_fr, seconds_fr
from tray_app.host.hosting import ModelChoiceError, choose_model
from tray_app.paths import app_paths
from tray_app.settings import Settings

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="mesure la vitesse du modèle avec plusieurs réglages (ce que fait « Optimiser »)")
    p.add_argument("model", metavar="MODELE", help="fichier .gguf, ou « demo » pour le modèle de démonstration")
    p.add_argument("--quick", action="store_true", help="mesures plus courtes (environ deux fois plus rapide)")
    p.add_argument(
        "--exhaustive",
        action="store_true",
        help="mesure aussi toutes les combinaisons, pour vérifier que la recherche trouve la meilleure",
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="avec --exhaustive : tours du face-à-face final (chaque tour mesure les deux réglages)",
    )
    p.add_argument("--json", action="store_true", help="sortie JSON pour les programmes")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = Settings.load(app_paths().settings_file)
    try:
        model = choose_model(args.model, settings)
        engine = Optimizer(model, settings)
        summary = engine.detect()
    except ModelChoiceError as exc:
        return _fail(args, exc.message_fr, EXIT_BAD_INPUT)
    if not args.json:
        gpu = summary.gpu.name if summary.gpu is not None else summary.gpu_note_fr
        print(f"Modèle : {summary.model_name} ({summary.model_path})")
        print(f"Processeur : {summary.cpu.model}, {summary.cpu.physical_cores} cœurs physiques, "
              f"{summary.cpu.logical_cpus} fils")
        print(f"Carte graphique : {gpu}")
        print(f"Départ : {describe_point_fr(engine.space().start, summary.n_layers)}")
        print(f"Durée prévue de la recherche : {seconds_fr(engine.estimate_seconds(quick=args.quick))}")
        print()
    progress = None if args.json else _Printer(summary.n_layers)
    report: dict[str, Any] = {"machine": summary.to_dict()}
    try:
        search = engine.run(quick=args.quick, on_progress=progress, strategy=DEFAULT_STRATEGY)
        report["search"] = search.to_dict()
        if not args.json:
            _print_result("Recherche", search)
        if args.exhaustive:
            if not args.json:
                estimate = seconds_fr(engine.estimate_seconds(quick=args.quick, strategy=GRID))
                print(f"\nGrille complète : {len(engine.space().grid())} réglages, durée prévue {estimate}\n")
            grid = engine.run(quick=args.quick, on_progress=progress, strategy=GRID)
            report["grid"] = grid.to_dict()
            report["comparison"] = comparison = compare(search, grid)
            if not args.json:
                _print_result("Grille complète", grid)
                _print_comparison(comparison)
            fastest = fastest_point(grid)
            if fastest is not None and fastest != search.best_point:
                if not args.json:
                    print("\nFace-à-face (chaque réglage mesuré deux fois, en alternance) :")
                ours, theirs, paired = engine.head_to_head(
                    search.best_point, fastest, quick=args.quick, rounds=args.rounds
                )
                comparison["head_to_head"] = side_by_side(ours, theirs, paired, args.rounds)
                if not args.json:
                    _print_head_to_head(comparison["head_to_head"])
    except BenchmarkError as exc:
        return _fail(args, exc.message_fr, EXIT_FAILED)
    except BenchmarkCancelled:
        return _fail(args, "Mesure annulée.", EXIT_FAILED)
    if args.json:
        print(json.dumps(report, indent=2, ensure_ascii=False))
    return EXIT_OK


def compare(search: OptimizationResult, grid: OptimizationResult) -> dict[str, Any]:
    """The search's claim checked against the grid: its choice's speed in the grid, and the time taken."""
    grid_speeds = {t.point: t.measurement.gen_tps for t in grid.trials if not t.control and t.measurement.stable}
    best_gen = max((v for v in grid_speeds.values() if v), default=None)
    chosen_in_grid = grid_speeds.get(search.best_point)
    ratio = chosen_in_grid / best_gen if chosen_in_grid and best_gen else None
    return {
        "search_best_gen_tps": search.after.gen_tps,
        "search_wall_s": search.wall_s,
        "search_configurations": len({t.point for t in search.trials}),
        "grid_best_gen_tps": best_gen,
        "grid_chosen_gen_tps": grid.after.gen_tps,
        "grid_wall_s": grid.wall_s,
        "grid_configurations": len(grid_speeds) + len([t for t in grid.trials if not t.measurement.stable]),
        "search_choice_in_grid_gen_tps": chosen_in_grid,
        "search_choice_vs_grid_best": ratio,
        "time_ratio": search.wall_s / grid.wall_s if grid.wall_s else None,
    }


def fastest_point(grid: OptimizationResult) -> Point | None:
    """The grid's point with the highest generation speed (measured once: flattered by its noise)."""
    speeds = [
        (t.measurement.gen_tps, t.point)
        for t in grid.trials
        if not t.control and t.measurement.stable and t.measurement.gen_tps
    ]
    return max(speeds, key=lambda pair: pair[0] or 0.0)[1] if speeds else None


def side_by_side(ours: Measurement, theirs: Measurement, paired: Comparison | None, rounds: int) -> dict[str, Any]:
    """The search's choice against the grid's fastest, measured alternately: pooled medians, and the
    ratio from the measurements paired in time with its interval (``paired`` is theirs against ours)."""
    ratio = low = high = None
    if paired is not None:
        ratio, low, high = 1 / (1 + paired.gain), 1 / (1 + paired.high), 1 / (1 + paired.low)
    return {
        "rounds": rounds,
        "search_choice_gen_tps": ours.gen_tps,
        "grid_fastest_gen_tps": theirs.gen_tps,
        "search_choice_runs": list(ours.gen_samples),
        "grid_fastest_runs": list(theirs.gen_samples),
        "ratio": ratio,
        "ratio_low": low,
        "ratio_high": high,
        "noise": paired.sigma if paired is not None else None,
    }


def _print_head_to_head(h: dict[str, Any]) -> None:
    print(f"  Choix de la recherche : {decimal_fr(h['search_choice_gen_tps'] or 0, 1)} jetons/s ; "
          f"plus rapide de la grille : {decimal_fr(h['grid_fastest_gen_tps'] or 0, 1)} jetons/s")
    if h["ratio"] is not None:
        print(f"  Soit {decimal_fr(h['ratio'] * 100, 1)} % côte à côte (entre {decimal_fr(h['ratio_low'] * 100, 1)} "
              f"et {decimal_fr(h['ratio_high'] * 100, 1)} % selon les mesures)")


class _Printer:
    """Prints one line per measured configuration (the progress callback of the text output)."""

    def __init__(self, n_layers: int) -> None:
        self.n_layers = n_layers
        self.printed = 0

    def __call__(self, event: BenchProgress) -> None:
        for trial in event.trials[self.printed:]:
            print(trial_line(trial, event.total, self.n_layers), flush=True)
        self.printed = len(event.trials)
        if event.finished:
            self.printed = 0


def trial_line(trial: Trial, total: int, n_layers: int) -> str:
    m = trial.measurement
    what = ("contrôle : " if trial.control else "") + describe_point_fr(trial.point, n_layers)
    head = f"{trial.number:>3}/{total:<3} {what}"
    if not m.stable:
        return f"{head}\n         ÉCARTÉ : {m.failure_fr} [{decimal_fr(m.wall_s, 1)} s]"
    spread = f" ±{round((m.gen_spread or 0) * 50)} %" if m.gen_spread is not None else ""
    return (
        f"{head}\n         génération {decimal_fr(m.gen_tps or 0, 1)} jetons/s{spread} · premier jeton "
        f"{decimal_fr(m.ttft_s or 0, 2)} s · lecture {decimal_fr(m.prompt_tps or 0, 0)} jetons/s · "
        f"{memory_fr(m) or 'mémoire inconnue'} [{decimal_fr(m.wall_s, 1)} s]"
    )


def _print_result(title: str, r: OptimizationResult) -> None:
    a = r.after
    print(f"\n{title} : {len(r.trials)} mesures en {decimal_fr(r.wall_s, 1)} s")
    print(f"  Meilleur réglage : {describe_point_fr(r.best_point, r.n_layers)}")
    print(f"  Génération : {decimal_fr(a.gen_tps or 0, 1)} jetons/s (avant : {decimal_fr(r.before.gen_tps or 0, 1)})")
    print(f"  Premier jeton : {decimal_fr(a.ttft_s or 0, 2)} s · lecture : {decimal_fr(a.prompt_tps or 0, 0)} jetons/s")
    print(f"  Mémoire au plus haut : {memory_fr(a) or 'inconnue'}")
    print(f"  Bruit de mesure : {round(r.thresholds.gen * 100)} % d'une mesure à l'autre")
    if r.final_check is not None:
        c = r.final_check
        print(f"  Vérification finale, en alternance avec les réglages actuels : {signed_percent_fr(c.gain)} "
              f"({interval_fr(c)})")
    print(f"  {headline_fr(r)}")
    line = first_word_fr(r)
    if line:
        print(f"  {line}")
    for note in r.notes_fr:
        print(f"  Remarque : {note}")


def _print_comparison(c: dict[str, Any]) -> None:
    print("\nVérification de la recherche")
    print(f"  Meilleure génération de la grille : {decimal_fr(c['grid_best_gen_tps'] or 0, 1)} jetons/s "
          f"({c['grid_configurations']} réglages, {decimal_fr(c['grid_wall_s'], 1)} s)")
    print(f"  Choix de la recherche, mesuré dans la grille : {decimal_fr(c['search_choice_in_grid_gen_tps'] or 0, 1)} "
          f"jetons/s ({c['search_configurations']} réglages, {decimal_fr(c['search_wall_s'], 1)} s)")
    if c["search_choice_vs_grid_best"] is not None and c["time_ratio"] is not None:
        print(f"  Soit {decimal_fr(c['search_choice_vs_grid_best'] * 100, 1)} % du meilleur, en "
              f"{decimal_fr(c['time_ratio'] * 100, 1)} % du temps de la grille")


def _fail(args: argparse.Namespace, message: str, code: int) -> int:
    if args.json:
        print(json.dumps({"error": message}, indent=2, ensure_ascii=False))
    else:
        print(message, file=sys.stderr if code else sys.stdout)
    return code
