"""Every setting of the program, declared once: name, type, default, French label and validation.

:class:`SettingValues` is the declaration: one field per setting, its Python type, its default and its
spec (validation, label, tab). Add a field here and the setting is loaded, validated, saved, typed for
its readers (``settings.values.context_size`` is an ``int``; a mistyped name fails in mypy and at run
time) and, when it has a ``label``, shown in the « Paramètres » dialog, without any other change.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any


class SettingError(ValueError):
    """A value that a setting refuses; the message is French and shown to the user."""


@dataclass(frozen=True)
class IntSetting:
    minimum: int
    maximum: int
    label: str = ""
    help: str = ""
    section: str = "Général"  # the « Paramètres » tab it is shown on
    special_zero: str = ""  # what 0 means in the dialog (« Automatique »), empty when 0 is a plain number
    unit: str = ""
    key: str = ""  # these two come from the SettingValues field that declares it
    default: int = 0

    def validate(self, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise SettingError(f"« {self.label or self.key} » doit être un nombre entier.")
        if not self.minimum <= value <= self.maximum:
            raise SettingError(f"« {self.label or self.key} » doit être entre {self.minimum} et {self.maximum}.")
        return value


@dataclass(frozen=True)
class BoolSetting:
    label: str = ""
    help: str = ""
    section: str = "Général"  # the « Paramètres » tab it is shown on
    key: str = ""
    default: bool = False

    def validate(self, value: Any) -> bool:
        if not isinstance(value, bool):
            raise SettingError(f"« {self.label or self.key} » doit être oui ou non.")
        return value


@dataclass(frozen=True)
class TextSetting:
    label: str = ""
    help: str = ""
    section: str = "Général"  # the « Paramètres » tab it is shown on
    max_length: int = 4096
    key: str = ""
    default: str = ""

    def validate(self, value: Any) -> str:
        if not isinstance(value, str) or len(value) > self.max_length:
            raise SettingError(f"« {self.label or self.key} » doit être un texte.")
        return value


@dataclass(frozen=True)
class ChoiceSetting:
    choices: tuple[tuple[str, str], ...]  # (stored value, French label)
    label: str = ""
    help: str = ""
    section: str = "Général"  # the « Paramètres » tab it is shown on
    key: str = ""
    default: str = ""

    def validate(self, value: Any) -> str:
        allowed = [v for v, _ in self.choices]
        if value not in allowed:
            raise SettingError(f"« {self.label or self.key} » : choix inconnu ({value!r}).")
        return str(value)


@dataclass(frozen=True)
class PathListSetting:
    """A list of folder or file paths (kept as typed: ``~`` and variables are expanded where used)."""

    label: str = ""
    help: str = ""
    section: str = "Général"  # the « Paramètres » tab it is shown on
    max_items: int = 64
    max_length: int = 4096
    key: str = ""
    default: tuple[str, ...] = ()

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


def _declared(default: Any, spec: Setting) -> Any:
    return field(default=default, metadata={"spec": spec})


@dataclass(frozen=True)
class SettingValues:
    """The settings' values, typed; its fields, in order, are the program's settings (and the dialog's rows)."""

    threads: int = _declared(
        0,
        IntSetting(
            section="Modèle",
            minimum=0,
            maximum=256,
            label="Cœurs du processeur pour le modèle",
            help="Automatique choisit les cœurs rapides et en laisse pour l'avatar.",
            special_zero="Automatique",
        ),
    )
    cores_left_for_avatar: int = _declared(
        1,
        IntSetting(
            section="Modèle",
            minimum=0,
            maximum=8,
            label="Cœurs laissés à l'avatar",
            help="Cœurs que le modèle n'utilise pas, pour que l'avatar reste fluide.",
        ),
    )
    verbose_log: bool = _declared(
        False,
        BoolSetting(
            section="Dépannage",
            label="Journal détaillé",
            help="Écrit plus de détails dans le journal, utile pour signaler un problème.",
        ),
    )
    avatar_port: int = _declared(
        5555,
        IntSetting(
            section="Avatar",
            minimum=1,
            maximum=65535,
            label="Port de l'avatar",
            help="Numéro sur lequel l'avatar Desktop-Mate attend l'icône. Ne le changez que si vous "
            "l'avez aussi changé dans l'avatar.",
        ),
    )
    avatar_emotions: bool = _declared(
        True,
        BoolSetting(
            section="Avatar",
            label="Expressions de l'avatar selon les réponses",
            help="L'avatar sourit, rit, se fâche ou s'attriste selon le ton des réponses, puis revient "
            "à une expression neutre.",
        ),
    )
    model_path: str = _declared(
        "",
        TextSetting(
            # No label: chosen with « Choisir un modèle… » in the tray menu (list and file picker).
            help="Le fichier .gguf du modèle de langue. Laissez vide pour le modèle de démonstration.",
        ),
    )
    # Folders where the user keeps other models, scanned with LM Studio's, Ollama's and Hugging Face's.
    # No label: edited from the model list, not from the generic « Paramètres » dialog.
    model_folders: tuple[str, ...] = _declared((), PathListSetting(help="Dossiers où chercher d'autres modèles .gguf."))
    # -- hosting the model (tray_app.host) --
    api_port: int = _declared(
        11435,
        IntSetting(
            section="Modèle",
            minimum=1024,
            maximum=65535,
            label="Port de l'API locale",
            help="Les programmes parlent au modèle à l'adresse http://127.0.0.1:PORT/v1. Si ce port est pris, "
            "le suivant libre est utilisé et le menu de l'icône l'indique.",
        ),
    )
    keep_alive: str = _declared(
        "300",
        ChoiceSetting(
            section="Modèle",
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
    )
    # -- another computer's model, and sharing this one's (tray_app.host.remote, tray_app.host.sharing) --
    model_location: str = _declared(
        "local",
        ChoiceSetting(
            section="Modèle",
            choices=(("local", "Sur cet ordinateur"), ("remote", "Sur un autre ordinateur")),
            label="Où tourne le modèle",
            help="« Sur un autre ordinateur » : le modèle d'un ordinateur de la maison (Ollama, LM Studio, "
            "llama-server ou un autre Desktop-Mate) répond à la place de celui-ci ; l'avatar et vos programmes "
            "gardent la même adresse.",
        ),
    )
    remote_address: str = _declared(
        "",
        TextSetting(
            section="Modèle",
            label="Adresse de l'autre ordinateur",
            help="Par exemple http://192.168.1.20:11434 (Ollama), :1234 (LM Studio), :8080 (llama-server), "
            "ou l'adresse qu'affiche l'autre Desktop-Mate.",
            max_length=300,
        ),
    )
    remote_key: str = _declared(
        "",
        TextSetting(
            section="Modèle",
            label="Clé de l'autre ordinateur",
            help="Seulement si l'autre ordinateur en demande une (un autre Desktop-Mate l'affiche).",
            max_length=300,
        ),
    )
    remote_model: str = _declared("", TextSetting(max_length=300))  # its model to use; empty: the first listed
    share_model: bool = _declared(
        False,
        BoolSetting(
            section="Modèle",
            label="Partager le modèle avec les autres ordinateurs de la maison",
            help="Les autres ordinateurs s'en servent avec l'adresse et la clé que donne le menu de l'icône "
            "(« Copier l'adresse et la clé du partage »). Sans la clé, tout est refusé. Windows demandera "
            "peut-être si « Python » peut communiquer sur les réseaux : cochez « Réseaux privés », laissez "
            "« Réseaux publics » décoché, puis cliquez sur « Autoriser l'accès ».",
        ),
    )
    share_key: str = _declared("", TextSetting(max_length=100))  # made when sharing is first turned on
    share_port: int = _declared(11436, IntSetting(minimum=1024, maximum=65535))
    context_size: int = _declared(
        4096,
        IntSetting(
            section="Modèle",
            minimum=512,
            maximum=131072,
            label="Mémoire de conversation",
            help="Nombre de jetons (morceaux de mots) dont le modèle se souvient. Plus grand : l'avatar "
            "retient plus de conversation, mais le modèle prend plus de mémoire.",
            unit="jetons",
        ),
    )
    # -- graphics-memory gauges and alerts (tray_app.monitoring) --
    vram_warning_percent: int = _declared(
        90,
        IntSetting(
            section="Mémoire graphique",
            minimum=50,
            maximum=99,
            label="Seuil « attention » de la mémoire graphique",
            help="Au-delà, l'icône passe en alerte et vous êtes prévenu une fois.",
            unit="%",
        ),
    )
    vram_critical_percent: int = _declared(
        97,
        IntSetting(
            section="Mémoire graphique",
            minimum=60,
            maximum=100,
            label="Seuil « critique » de la mémoire graphique",
            help="Au-delà, le modèle risque de devenir très lent ou de s'arrêter. Doit être plus haut que "
            "le seuil « attention ».",
            unit="%",
        ),
    )
    vram_protection: bool = _declared(
        True,
        BoolSetting(
            section="Mémoire graphique",
            label="Protection si la mémoire graphique est pleine",
            help="Si elle reste pleine, le modèle est retiré de la mémoire après sa réponse, puis rechargé "
            "avec plus de marge.",
        ),
    )
    vram_protection_delay_s: int = _declared(20, IntSetting(minimum=5, maximum=600, unit="s"))
    # One per notification kind; no label: they are ticked in the tray's « Notifications » submenu
    # (tray_app/ui/monitor_menu.py), which keeps the « Paramètres » dialog short.
    notify_vram_warning: bool = _declared(True, BoolSetting())
    notify_vram_critical: bool = _declared(True, BoolSetting())
    notify_vram_overflow: bool = _declared(True, BoolSetting())
    notify_gpu_hot: bool = _declared(True, BoolSetting())
    notify_model_unloaded: bool = _declared(True, BoolSetting())
    notify_runner_restarted: bool = _declared(True, BoolSetting())
    # -- « Optimiser » (tray_app.benchmark): no label, written by the wizard, never by the dialog --
    # The applied optimisation (JSON, see tray_app.planning.applied_tuning.Tuning); empty = never optimised.
    optimized_config: str = _declared("", TextSetting(max_length=8192))
    # The very first start proposes « Optimiser » once; True once proposed, whatever the answer.
    optimize_offered: bool = _declared(False, BoolSetting())
    # -- the memory plan (tray_app.hardware.gpu_calibration): no label, learnt after each load --
    # What the graphics driver takes beyond llama.cpp's buffers, per card + driver + engine backend
    # (JSON, see CalibrationBook); empty = nothing measured yet.
    gpu_calibration: str = _declared("", TextSetting(max_length=8192))


SETTINGS: tuple[Setting, ...] = tuple(
    replace(f.metadata["spec"], key=f.name, default=f.default) for f in fields(SettingValues)
)
_TYPES = {
    IntSetting: "int",
    BoolSetting: "bool",
    TextSetting: "str",
    ChoiceSetting: "str",
    PathListSetting: "tuple[str, ...]",
}
for _field, _spec in zip(fields(SettingValues), SETTINGS):
    if _field.type != _TYPES[type(_spec)]:  # checked at import: a setting's type matches its spec
        raise TypeError(f"setting {_field.name}: type {_field.type} for a {type(_spec).__name__}")
    _spec.validate(_spec.default)  # and its default is valid


def spec(key: str) -> Setting:
    for s in SETTINGS:
        if s.key == key:
            return s
    raise KeyError(key)
