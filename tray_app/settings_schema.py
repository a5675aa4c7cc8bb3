"""Every setting of the program, declared once: key, default, French label and validation.

Add a setting here and it is loaded, validated, saved and (when ``label`` is set) shown in the
« Paramètres » dialog without any other change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class SettingError(ValueError):
    """A value that a setting refuses; the message is French and shown to the user."""


@dataclass(frozen=True)
class IntSetting:
    key: str
    default: int
    minimum: int
    maximum: int
    label: str = ""
    help: str = ""
    section: str = "Général"  # the « Paramètres » tab it is shown on
    special_zero: str = ""  # what 0 means in the dialog (« Automatique »), empty when 0 is a plain number
    unit: str = ""

    def validate(self, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise SettingError(f"« {self.label or self.key} » doit être un nombre entier.")
        if not self.minimum <= value <= self.maximum:
            raise SettingError(
                f"« {self.label or self.key} » doit être entre {self.minimum} et {self.maximum}."
            )
        return value


@dataclass(frozen=True)
class BoolSetting:
    key: str
    default: bool
    label: str = ""
    help: str = ""
    section: str = "Général"  # the « Paramètres » tab it is shown on

    def validate(self, value: Any) -> bool:
        if not isinstance(value, bool):
            raise SettingError(f"« {self.label or self.key} » doit être oui ou non.")
        return value


@dataclass(frozen=True)
class TextSetting:
    key: str
    default: str
    label: str = ""
    help: str = ""
    section: str = "Général"  # the « Paramètres » tab it is shown on
    max_length: int = 4096

    def validate(self, value: Any) -> str:
        if not isinstance(value, str) or len(value) > self.max_length:
            raise SettingError(f"« {self.label or self.key} » doit être un texte.")
        return value


@dataclass(frozen=True)
class ChoiceSetting:
    key: str
    default: str
    choices: tuple[tuple[str, str], ...]  # (stored value, French label)
    label: str = ""
    help: str = ""
    section: str = "Général"  # the « Paramètres » tab it is shown on

    def validate(self, value: Any) -> str:
        allowed = [v for v, _ in self.choices]
        if value not in allowed:
            raise SettingError(f"« {self.label or self.key} » : choix inconnu ({value!r}).")
        return str(value)


@dataclass(frozen=True)
class PathListSetting:
    """A list of folder or file paths (kept as typed: ``~`` and variables are expanded where used)."""

    key: str
    default: tuple[str, ...] = ()
    label: str = ""
    help: str = ""
    section: str = "Général"  # the « Paramètres » tab it is shown on
    max_items: int = 64
    max_length: int = 4096

    def validate(self, value: Any) -> tuple[str, ...]:
        name = self.label or self.key
        if not isinstance(value, (list, tuple)) or len(value) > self.max_items:
            raise SettingError(f"« {name} » doit être une liste d'au plus {self.max_items} dossiers.")
        paths: list[str] = []
        for item in value:
            if not isinstance(item, str) or not item.strip() or len(item) > self.max_length:
                raise SettingError(f"« {name} » : chaque élément doit être un chemin de dossier.")
            if item.strip() not in paths:
                paths.append(item.strip())
        return tuple(paths)


Setting = IntSetting | BoolSetting | TextSetting | ChoiceSetting | PathListSetting

SCHEMA_VERSION = 1

# The tabs of the « Paramètres » dialog, in this order (a setting's ``section`` names one).
SECTIONS = ("Modèle", "Avatar", "Mémoire graphique", "Dépannage", "Général")

SETTINGS: tuple[Setting, ...] = (
    IntSetting(
        "threads",
        section="Modèle",
        default=0,
        minimum=0,
        maximum=256,
        label="Cœurs du processeur pour le modèle",
        help="Automatique choisit les cœurs rapides et en laisse pour l'avatar.",
        special_zero="Automatique",
    ),
    IntSetting(
        "cores_left_for_avatar",
        section="Modèle",
        default=1,
        minimum=0,
        maximum=8,
        label="Cœurs laissés à l'avatar",
        help="Cœurs que le modèle n'utilise pas, pour que l'avatar reste fluide.",
    ),
    BoolSetting(
        "verbose_log",
        section="Dépannage",
        default=False,
        label="Journal détaillé",
        help="Écrit plus de détails dans le journal, utile pour signaler un problème.",
    ),
    IntSetting(
        "avatar_port",
        section="Avatar",
        default=5555,
        minimum=1,
        maximum=65535,
        label="Port de l'avatar",
        help="Numéro sur lequel l'avatar Desktop-Mate attend l'icône. Ne le changez que si vous "
        "l'avez aussi changé dans l'avatar.",
    ),
    BoolSetting(
        "avatar_emotions",
        section="Avatar",
        default=True,
        label="Expressions de l'avatar selon les réponses",
        help="L'avatar sourit, rit, se fâche ou s'attriste selon le ton des réponses, puis revient "
        "à une expression neutre.",
    ),
    TextSetting(
        "model_path",
        default="",
        # No label: chosen with « Choisir un modèle… » in the tray menu (list and file picker).
        help="Le fichier .gguf du modèle de langue. Laissez vide pour le modèle de démonstration.",
    ),
    # Folders where the user keeps other models, scanned with LM Studio's, Ollama's and Hugging Face's.
    # No label: edited from the model list, not from the generic « Paramètres » dialog.
    PathListSetting(
        "model_folders",
        default=(),
        help="Dossiers où chercher d'autres modèles .gguf.",
    ),
    # -- hosting the model (tray_app.host) --
    IntSetting(
        "api_port",
        section="Modèle",
        default=11435,
        minimum=1024,
        maximum=65535,
        label="Port de l'API locale",
        help="Les programmes parlent au modèle à l'adresse http://127.0.0.1:PORT/v1. Si ce port est pris, "
        "le suivant libre est utilisé et le menu de l'icône l'indique.",
    ),
    ChoiceSetting(
        "keep_alive",
        section="Modèle",
        default="300",
        choices=(
            ("0", "Libérer après chaque réponse"),
            ("60", "1 minute"),
            ("300", "5 minutes"),
            ("1800", "30 minutes"),
            ("3600", "1 heure"),
            ("-1", "Toujours"),
        ),
        label="Garder le modèle en mémoire",
        help="Après ce délai sans demande, le modèle quitte la mémoire (il se recharge à la demande "
        "suivante, en quelques secondes).",
    ),
    IntSetting(
        "context_size",
        section="Modèle",
        default=4096,
        minimum=512,
        maximum=131072,
        label="Mémoire de conversation",
        help="Nombre de jetons (morceaux de mots) dont le modèle se souvient. Plus grand : l'avatar "
        "retient plus de conversation, mais le modèle prend plus de mémoire.",
        unit="jetons",
    ),
    # -- graphics-memory gauges and alerts (tray_app.monitoring) --
    IntSetting(
        "vram_warning_percent",
        section="Mémoire graphique",
        default=90,
        minimum=50,
        maximum=99,
        label="Seuil « attention » de la mémoire graphique",
        help="Au-delà, l'icône passe en alerte et vous êtes prévenu une fois.",
        unit="%",
    ),
    IntSetting(
        "vram_critical_percent",
        section="Mémoire graphique",
        default=97,
        minimum=60,
        maximum=100,
        label="Seuil « critique » de la mémoire graphique",
        help="Au-delà, le modèle risque de devenir très lent ou de s'arrêter. Doit être plus haut que "
        "le seuil « attention ».",
        unit="%",
    ),
    BoolSetting(
        "vram_protection",
        section="Mémoire graphique",
        default=True,
        label="Protection si la mémoire graphique est pleine",
        help="Si elle reste pleine, le modèle est retiré de la mémoire après sa réponse, puis rechargé "
        "avec plus de marge.",
    ),
    IntSetting("vram_protection_delay_s", default=20, minimum=5, maximum=600, unit="s"),
    # One per notification kind; no label: they are ticked in the tray's « Notifications » submenu
    # (tray_app/ui/monitor_menu.py), which keeps the « Paramètres » dialog short.
    BoolSetting("notify_vram_warning", default=True),
    BoolSetting("notify_vram_critical", default=True),
    BoolSetting("notify_vram_overflow", default=True),
    BoolSetting("notify_gpu_hot", default=True),
    BoolSetting("notify_model_unloaded", default=True),
    BoolSetting("notify_runner_restarted", default=True),
    # -- « Optimiser » (tray_app.benchmark): no label, written by the wizard, never by the dialog --
    # The applied optimisation (JSON, see tray_app.planning.applied_tuning.Tuning); empty = never optimised.
    TextSetting("optimized_config", default="", max_length=8192),
    # The very first start proposes « Optimiser » once; True once proposed, whatever the answer.
    BoolSetting("optimize_offered", default=False),
)


def spec(key: str) -> Setting:
    for s in SETTINGS:
        if s.key == key:
            return s
    raise KeyError(key)
