"""``desktop-mate-tray self-test``: the whole chain, end to end, with figures.

Detect the machine → plan → start the gateway (on a free port, so a running tray is not disturbed) →
stream a short French answer through it (the first request loads the model) → unload and check the
runner is gone. Exit status: 0 when everything worked, 1 when the model did not answer, 2 when the model
file cannot be used.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import psutil

from tray_app.format_fr import seconds_fr
from tray_app.hardware.cpu import detect_cpu
from tray_app.host.chat_probe import ChatProbeError, stream_chat
from tray_app.host.host_state import HostState
from tray_app.host.hosting import Host, ModelChoiceError, choose_model, plan_host
from tray_app.paths import app_paths
from tray_app.settings import Settings

QUESTION = [
    {"role": "system", "content": "Tu es un assistant. Réponds toujours en français, en une phrase courte."},
    {"role": "user", "content": "Dis bonjour et présente-toi en une phrase."},
]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("self-test", help="vérifie de bout en bout que le modèle répond, avec les mesures")
    p.add_argument("--model", metavar="FICHIER", help="fichier .gguf (par défaut : celui des paramètres, "
                   "sinon le modèle de démonstration)")
    p.add_argument("--max-tokens", type=int, default=48, metavar="N", help="longueur maximale de la réponse")
    p.add_argument("--timeout", type=float, default=300.0, metavar="SECONDES", help="attente maximale")
    p.add_argument("--json", action="store_true", help="sortie JSON pour les programmes")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    report: dict[str, Any] = {"ok": False}
    lines: list[str] = []
    code = _check(args, report, lines)
    report["ok"] = code == 0
    if args.json:
        print(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        print("\n".join(lines))
    return code


def _check(args: argparse.Namespace, report: dict[str, Any], lines: list[str]) -> int:
    settings = Settings.load(app_paths().settings_file)
    cpu = detect_cpu()
    report["cpu"] = {"model": cpu.model, "physical_cores": cpu.physical_cores, "logical_cpus": cpu.logical_cpus}
    lines.append(f"Processeur : {cpu.model} ({cpu.physical_cores} cœurs physiques).")
    try:
        model = choose_model(args.model, settings)
        plan = plan_host(model, settings)
    except ModelChoiceError as exc:
        return _fail(report, lines, exc.message_fr, 2)
    report.update(model=str(model), plan=plan.explanation_fr, config=plan.config.to_dict(), planner=plan.planner)
    lines += [f"Modèle : {model.name}", f"Réglages : {plan.explanation_fr}"]

    host = Host(plan, port=0, keep_alive_s=-1, load_timeout_s=args.timeout)
    try:
        host.start()
        started = time.perf_counter()
        try:
            result = stream_chat(host.gateway.url, QUESTION, max_tokens=args.max_tokens, timeout=args.timeout)
        except ChatProbeError as exc:
            return _fail(report, lines, exc.message, 1)
        except OSError as exc:
            return _fail(report, lines, f"Le modèle n'a pas répondu à temps ({exc.__class__.__name__}).", 1)
        cold_first_token = result.ttft_s if result.ttft_s is not None else time.perf_counter() - started
        status = host.supervisor.status()
        metrics = host.gateway.metrics.last()
        pids = list(status.pids)
        unload_started = time.perf_counter()
        host.supervisor.unload(wait=True)
        gone = _all_gone(pids, 5.0)
        unload_s = time.perf_counter() - unload_started
    finally:
        host.close()

    report.update(
        answer=result.text,
        tokens=result.tokens,
        load_s=status.load_seconds,
        cold_first_token_s=cold_first_token,
        ttft_s=metrics.ttft_s if metrics else result.ttft_s,
        tokens_per_s=result.tokens_per_s,
        unload_s=unload_s,
        memory_returned=gone,
        fallbacks=len(status.failed_configs),
    )
    if status.failed_configs:
        lines.append(f"Attention : {len(status.failed_configs)} réglage(s) ont échoué avant celui-ci.")
    lines += [
        f"Réponse : {result.text.strip() or '(vide)'}",
        f"Chargement du modèle : {seconds_fr(status.load_seconds or 0.0)}",
        f"Premier jeton (modèle déjà chargé) : {seconds_fr(report['ttft_s'] or 0.0)}",
        f"Premier jeton depuis l'arrêt complet : {seconds_fr(cold_first_token)}",
        f"Vitesse : {result.tokens_per_s or 0:.1f} jetons par seconde ({result.tokens} jetons)".replace(".", ","),
        f"Mémoire rendue après déchargement : {'oui' if gone else 'NON'} ({seconds_fr(unload_s)})",
    ]
    if result.tokens == 0 or not result.text.strip() or not result.complete:
        return _fail(report, lines, "Le modèle n'a rien répondu. Essayez un autre modèle ; les détails sont "
                     f"dans le journal : {app_paths().log_file}", 1)
    if not gone:
        return _fail(report, lines, "Le moteur du modèle ne s'est pas arrêté : sa mémoire n'a pas été rendue.", 1)
    if status.state is HostState.ERROR:
        return _fail(report, lines, status.message, 1)
    lines.append("Tout fonctionne.")
    return 0


def _fail(report: dict[str, Any], lines: list[str], reason: str, code: int) -> int:
    report["reason"] = reason
    lines.append(f"Échec : {reason}")
    return code


def _all_gone(pids: list[int], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(psutil.pid_exists(pid) and _running(pid) for pid in pids):
            return True
        time.sleep(0.02)
    return False


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
