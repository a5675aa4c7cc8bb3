"""The settings file: one versioned JSON document under the user config folder.

A file that cannot be read or is invalid is never lost: it is kept beside as a backup, defaults are
restored, and ``Settings.notice`` carries one French sentence for the user. Values are validated with
the declarations in :mod:`tray_app.settings_schema`; a single bad value is reset alone.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from tray_app.settings_schema import SCHEMA_VERSION, SettingError, SettingValues, spec

log = logging.getLogger(__name__)


class Settings:
    """The settings file's values. Read them typed: ``settings.values.context_size`` (an ``int``).

    :meth:`get` and :meth:`set` take a setting's name, for the code that goes through every setting (the
    « Paramètres » dialog, the notifications submenu); an unknown name raises ``KeyError`` at once.
    """

    def __init__(self, path: Path, values: dict[str, Any] | None = None, notice: str = "") -> None:
        self.path = path
        self.values = SettingValues(**(values or {}))
        self.notice = notice

    # -- access -------------------------------------------------------------------------------
    def get(self, key: str) -> Any:
        spec(key)  # unknown keys are a programming error
        return getattr(self.values, key)

    def set(self, key: str, value: Any) -> None:
        """Validate and store ``value``; raises :class:`SettingError` with a French message."""
        checked: Any = spec(key).validate(value)  # of the type the key's field declares
        self.values = replace(self.values, **{key: checked})

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self.values, f.name) for f in fields(self.values)}

    # -- file ---------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: Path) -> Settings:
        if not path.exists():
            return cls(path)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(raw, dict) or not isinstance(raw.get("settings"), dict):
                raise ValueError("no 'settings' object")
            version = raw.get("version")
            if not isinstance(version, int) or version > SCHEMA_VERSION:
                raise ValueError(f"unsupported version {version!r}")
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            backup = _backup(path)
            log.warning("settings file %s unreadable (%s); kept as %s, defaults restored", path, exc, backup)
            settings = cls(
                path,
                notice=(
                    "Le fichier de paramètres était illisible : les réglages par défaut ont été remis. "
                    f"L'ancien fichier est gardé à côté, sous le nom {backup.name}."
                ),
            )
            settings.save()
            return settings
        values: dict[str, Any] = {}
        rejected: list[str] = []
        for key, value in raw["settings"].items():
            try:
                values[key] = spec(key).validate(value)
            except KeyError:
                log.info("settings: unknown key %r dropped", key)
            except SettingError as exc:
                rejected.append(key)
                log.warning("settings: %s (value %r reset to default)", exc, value)
        settings = cls(path, values)
        if rejected:
            backup = _backup(path, copy=True)
            settings.notice = (
                "Certains paramètres étaient invalides et ont été remis par défaut "
                f"({', '.join(f'« {spec(k).label or k} »' for k in rejected)}). "
                f"L'ancien fichier est gardé à côté, sous le nom {backup.name}."
            )
            settings.save()
        return settings

    def save(self) -> None:
        """Write atomically (temporary file + rename) so a crash never leaves half a file."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        document = {"version": SCHEMA_VERSION, "settings": self.as_dict()}
        tmp.write_text(json.dumps(document, indent=2, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, self.path)


def _backup(path: Path, *, copy: bool = False) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    backup = path.with_name(f"{path.stem}.sauvegarde-{stamp}{path.suffix}")
    n = 1
    while backup.exists():
        backup = path.with_name(f"{path.stem}.sauvegarde-{stamp}-{n}{path.suffix}")
        n += 1
    if copy:
        backup.write_bytes(path.read_bytes())
    else:
        os.replace(path, backup)
    return backup
