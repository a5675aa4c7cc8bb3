"""The French sentences of the notifications: what happened, then what to do.

Kept in one place so that they can be read (and later translated) together. The Qt layer shows them
as they are; they are not Qt strings because the headless ``monitor`` command prints them too.
Windows cuts a tray balloon at 255 characters: every sentence here stays below (tested with the
longest values), and :func:`fit_balloon` shortens anything that would not.
"""

from __future__ import annotations

from tray_app.format_fr import duration_fr, percent_fr

MAX_BALLOON_CHARS = 255  # NOTIFYICONDATA.szInfo holds 256 characters, the last one is the terminator
CLOSE_PROGRAMS = "Fermez les jeux, vidéos ou onglets que vous n'utilisez pas"


def fit_balloon(text: str) -> str:
    if len(text) <= MAX_BALLOON_CHARS:
        return text
    cut = text[: MAX_BALLOON_CHARS - 1].rsplit(" ", 1)[0]
    return cut + "…"


def vram_warning(fraction: float) -> str:
    return (
        f"La mémoire de la carte graphique est presque pleine ({percent_fr(fraction)}). "
        f"{CLOSE_PROGRAMS}, pour que l'avatar et le modèle restent rapides."
    )


def vram_critical(fraction: float, *, protection_follows: bool) -> str:
    text = (
        f"La mémoire de la carte graphique est pleine ({percent_fr(fraction)}) : le modèle risque de "
        f"ralentir fortement ou de s'arrêter. {CLOSE_PROGRAMS}."
    )
    if protection_follows:
        text += " Sinon, le modèle sera retiré de la mémoire dans quelques secondes."
    return text


def vram_overflow(slowdown: float) -> str:
    times = max(2, round(slowdown))
    return (
        f"Le modèle répond environ {times} fois plus lentement que d'habitude : la mémoire de la carte "
        f"graphique déborde. {CLOSE_PROGRAMS}, ou lancez « Optimiser »."
    )


def gpu_hot(temperature_c: int | None, thermal_slowdown: bool) -> str:
    what = f"La carte graphique est très chaude ({temperature_c} °C)" if temperature_c else (
        "La carte graphique chauffe trop"
    )
    if thermal_slowdown:
        what += " et ralentit pour se protéger"
    return f"{what}. Posez l'ordinateur sur une surface dure et dégagez ses aérations."


def model_unloaded(idle_seconds: float | None) -> str:
    after = f" après {duration_fr(idle_seconds)} sans question" if idle_seconds else ""
    return (
        f"Le modèle a été retiré de la mémoire{after}, pour libérer la carte graphique. "
        "Il se rechargera tout seul à la prochaine question."
    )


def runner_restarted(detail_fr: str) -> str:
    detail = detail_fr.strip().rstrip(".")
    if len(detail) > 90:
        detail = detail[:89].rsplit(" ", 1)[0] + "…"
    plan = f" ({detail})" if detail else ""
    return (
        f"Le moteur du modèle s'est arrêté. Il a été relancé avec des réglages plus prudents{plan}. "
        "Les réponses peuvent être un peu plus lentes ; rien à faire de votre côté."
    )


def runner_crashed(sentence_fr: str = "") -> str:
    """The runner died with no cause found and restarts with the same settings: one plain sentence."""
    return sentence_fr.strip() or "Le moteur du modèle s'est arrêté ; il redémarre."


def protection_critical(held_for_s: float) -> str:
    return (
        f"La mémoire graphique est restée pleine {duration_fr(held_for_s)} : le modèle sera retiré "
        "de la mémoire dès qu'il aura fini de répondre, puis rechargé avec plus de marge à la prochaine "
        "question."
    )


def protection_overflow(held_for_s: float) -> str:
    return (
        f"Le modèle ralentit depuis {duration_fr(held_for_s)} faute de mémoire graphique : il sera retiré de "
        "la mémoire dès qu'il aura fini de répondre, puis rechargé avec plus de marge à la prochaine question."
    )
