"""``desktop-mate-tray models``: the models to download, whether they fit this computer, and the download.

* ``models catalogue [--vram-mib N] [--json]`` — the curated list, each file with its badge for this
  machine (its header read from the hub: a few MB, kept in the cache) and the recommended one.
* ``models fit REPO FILE [--vram-mib N] [--ctx N] [--json]`` — the badge and the whole memory plan of a
  file of the hub, from its header alone: the same plan ``plan`` makes once the file is here.
* ``models download REPO FILE [--json]`` — into the models folder; progress on stderr (a JSON line per
  step with ``--json``), the path on stdout. Run it again after an interruption: it resumes.

The hub is ``HF_ENDPOINT`` when set (a mirror), else huggingface.co. Exit status: 0 done, 1 network or
download failure (French message on stderr), 2 bad option or unusable file, 130 interrupted (the part
already downloaded is kept).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import TYPE_CHECKING, Any

from tray_app.format_fr import about_duration_fr, int_fr, percent_fr, size_fr
from tray_app.paths import app_paths
from tray_app.planning.memory_plan import DEFAULT_CONTEXT
from tray_app.settings import Settings

if TYPE_CHECKING:  # the hub client (ssl, http.client) is imported when a sub-command runs, not with the tray
    from tray_app.planning.catalogue_fit import PlanWishes
    from tray_app.planning.fit import Machine

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2


def register(sub: argparse._SubParsersAction) -> None:
    from tray_app.commands.plan import _positive

    p = sub.add_parser("models", help="modèles à télécharger : liste, place sur cet ordinateur, téléchargement")
    actions = p.add_subparsers(dest="models_command", metavar="ACTION", required=True)

    cat = actions.add_parser("catalogue", help="la liste des modèles conseillés, avec leur place sur cet ordinateur")
    cat.add_argument("--vram-mib", type=_positive, metavar="N", help="pour une carte graphique de N Mo")
    cat.add_argument("--json", action="store_true", help="sortie JSON pour les programmes")
    cat.set_defaults(func=run_catalogue)

    fit = actions.add_parser("fit", help="un fichier du site des modèles tient-il sur cet ordinateur ?")
    fit.add_argument("repo", metavar="DEPOT", help="dépôt Hugging Face, par exemple bartowski/Qwen2.5-7B-Instruct-GGUF")
    fit.add_argument("file", metavar="FICHIER", help="fichier .gguf de ce dépôt")
    fit.add_argument("--vram-mib", type=_positive, metavar="N", help="pour une carte graphique de N Mo")
    fit.add_argument("--ctx", type=_positive, default=DEFAULT_CONTEXT, metavar="N",
                     help=f"mémoire de conversation voulue, en jetons (par défaut {DEFAULT_CONTEXT})")
    fit.add_argument("--json", action="store_true", help="sortie JSON pour les programmes")
    fit.set_defaults(func=run_fit)

    dl = actions.add_parser("download", help="télécharge un fichier dans le dossier des modèles (reprend où il "
                            "s'est arrêté)")
    dl.add_argument("repo", metavar="DEPOT", help="dépôt Hugging Face")
    dl.add_argument("file", metavar="FICHIER", help="fichier .gguf de ce dépôt")
    dl.add_argument("--json", action="store_true", help="avancement en lignes JSON sur la sortie d'erreur")
    dl.set_defaults(func=run_download)


def _machine(vram_mib: int | None) -> Machine:
    from tray_app.commands.plan import _assumed_gpu, _measured_gpu

    return _machine_of(_assumed_gpu(vram_mib) if vram_mib else _measured_gpu())


def _machine_of(gpu: Any) -> Machine:
    """The machine of ``plan``'s :class:`GpuView` (measured, or assumed with ``--vram-mib``)."""
    from tray_app.hardware.cpu import detect_cpu
    from tray_app.planning.fit import Machine

    free = gpu.free if gpu.source != "none" else None
    return Machine(free, gpu.total, gpu.offload_supported, detect_cpu())


def _wishes(settings: Settings, ctx: int = DEFAULT_CONTEXT) -> PlanWishes:
    from tray_app.planning.catalogue_fit import PlanWishes

    v = settings.values
    return PlanWishes(ctx, "f16", v.cores_left_for_avatar, v.threads)


def _print_json(document: Any) -> None:
    print(json.dumps(document, indent=2, ensure_ascii=False))


# -- catalogue ----------------------------------------------------------------------------------------
def run_catalogue(args: argparse.Namespace) -> int:
    from tray_app.models.catalogue import CatalogueError, catalogue
    from tray_app.planning.catalogue_fit import evaluate, recommended_key

    try:
        entries = catalogue()
    except CatalogueError:
        print("La liste des modèles est illisible : réinstallez le programme.", file=sys.stderr)
        return EXIT_FAILED
    settings = Settings.load(app_paths().settings_file)
    machine = _machine(args.vram_mib)
    cache = app_paths().cache_dir / "hub-headers"
    fits = [evaluate(entry, machine, _wishes(settings), cache_dir=cache) for entry in entries]
    best = recommended_key(fits)
    if args.json:
        _print_json({"models": [dict(f.to_dict(), recommended=f.entry.key == best) for f in fits],
                     "recommended": best})
        return EXIT_OK
    print("Modèles conseillés pour parler français (le badge dit comment chacun tournerait ici)")
    last_model = ""
    for f in fits:
        e = f.entry
        if e.model_id != last_model:
            print(f"\n{e.model_name} — {e.params} de paramètres, licence {e.licence}")
            print(f"  {e.description_fr}")
            last_model = e.model_id
        star = "  ← conseillé" if e.key == best else ""
        verdict = f.badge.text_fr if f.badge is not None else f"inconnu : {f.error_fr}"
        print(f"  {e.quant:<7} {size_fr(f.header.file_size if f.header else e.size):>9}  {verdict}{star}")
        print(f"          desktop-mate-tray models download {e.repo} {e.file}")
    if best is None:
        print("\nAucun de ces modèles ne peut tourner sur cet ordinateur (ou le site des modèles est injoignable).")
    return EXIT_OK


# -- fit ------------------------------------------------------------------------------------------------
def run_fit(args: argparse.Namespace) -> int:
    from tray_app.models.hub import HubError, read_remote_header
    from tray_app.planning.fit import fit_badge

    try:
        header = read_remote_header(args.repo, args.file, cache_dir=None)
    except HubError as exc:
        if args.json:
            _print_json({"error": {"kind": exc.kind, "message": exc.message_fr}})
        else:
            print(exc.message_fr, file=sys.stderr)
        return EXIT_BAD_INPUT if exc.kind in ("not_found", "not_gguf", "refused") else EXIT_FAILED
    from tray_app.commands.plan import _assumed_gpu, _measured_gpu, render_text

    settings = Settings.load(app_paths().settings_file)
    gpu = _assumed_gpu(args.vram_mib) if args.vram_mib else _measured_gpu()
    machine = _machine_of(gpu)
    wishes = _wishes(settings, args.ctx)
    badge = fit_badge(header.info, machine, wanted_ctx=wishes.wanted_ctx, kv_type=wishes.kv_type,
                      cores_left_for_avatar=wishes.cores_left_for_avatar, threads_override=wishes.threads_override)
    read = {"bytes": header.bytes_read, "requests": header.requests, "seconds": round(header.seconds, 3)}
    if args.json:
        _print_json({"model": header.info.summary_dict(), "gpu": gpu.to_dict(), "badge": badge.to_dict(),
                     "plan": badge.plan.to_dict(), "header_read": read})
        return EXIT_OK
    print(f"Sur cet ordinateur : {badge.text_fr}.")
    print(f"(en-tête lu à distance : {size_fr(header.bytes_read)} sur {size_fr(header.file_size)}, "
          f"{int_fr(header.requests)} demandes, {header.seconds:.2f} s)".replace(".", ",", 1))
    print()
    print(render_text(header.info, gpu, badge.plan))
    return EXIT_OK


# -- download -------------------------------------------------------------------------------------------
def run_download(args: argparse.Namespace) -> int:
    from tray_app.models.download import (
        PHASE_DOWNLOAD,
        PHASE_VERIFY,
        Download,
        DownloadError,
        DownloadProgress,
        DownloadStopped,
        staging_dir_for,
    )

    paths = app_paths()
    last = [0.0]

    def on_progress(p: DownloadProgress) -> None:
        now = time.monotonic()
        if p.phase in (PHASE_DOWNLOAD, PHASE_VERIFY) and now - last[0] < 1.0 and p.done < p.total:
            return
        last[0] = now
        if args.json:
            print(json.dumps(p.to_dict()), file=sys.stderr, flush=True)
        elif p.phase == PHASE_DOWNLOAD:
            eta = f", reste {about_duration_fr(p.eta_s)}" if p.eta_s is not None else ""
            print(f"Téléchargement : {percent_fr(p.fraction)} ({size_fr(p.done)} sur {size_fr(p.total)}, "
                  f"{size_fr(p.speed)}/s{eta})", file=sys.stderr, flush=True)
        elif p.phase == PHASE_VERIFY:
            print(f"Vérification du fichier : {percent_fr(p.fraction)}", file=sys.stderr, flush=True)

    download = Download(args.repo, args.file, models_dir=paths.models_dir,
                        staging_dir=staging_dir_for(paths.data_dir), on_progress=on_progress)
    try:
        path = download.run()
    except DownloadError as exc:
        if args.json:
            print(json.dumps({"error": {"kind": exc.kind, "message": exc.message_fr}}, ensure_ascii=False),
                  file=sys.stderr)
        else:
            print(exc.message_fr, file=sys.stderr)
        return EXIT_FAILED
    except (KeyboardInterrupt, DownloadStopped):
        print("Téléchargement interrompu : relancez la même commande pour le reprendre là où il s'est arrêté.",
              file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps({"path": str(path), "size": path.stat().st_size}))
    else:
        print(f"Modèle téléchargé et vérifié : {path}")
        print("Pour l'utiliser : menu de l'icône, « Choisir un modèle », ou desktop-mate-tray serve --model "
              f"\"{path}\"")
    return EXIT_OK

