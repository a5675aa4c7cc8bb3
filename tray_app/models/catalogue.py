"""The curated list of models to download (``catalogue.json`` beside this file): instruct models that
answer well in French, from 2 to 15 billion parameters, a few quantisations each.

Each file names its Hugging Face repository and file, the size its hub page shows, the licence and one
French line on what the model is good for. The exact size and the sha256 come from the hub itself when a
file is evaluated or downloaded (:mod:`tray_app.models.hub`, :mod:`tray_app.models.download`).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CATALOGUE_FILE = Path(__file__).with_name("catalogue.json")

# How much the quantisation adds to (or takes from) a model's quality rank when one file is recommended:
# Q4_K_M is the usual balance; fewer bits lose a little, more bits gain little.
QUANT_BONUS = {"Q3_K_M": -0.5, "Q3_K_L": -0.4, "IQ4_XS": -0.1, "Q4_K_S": -0.05, "Q4_K_M": 0.0,
               "Q5_K_S": 0.15, "Q5_K_M": 0.2, "Q6_K": 0.3, "Q8_0": 0.35}  # fmt: skip


@dataclass(frozen=True)
class CatalogueFile:
    model_id: str
    model_name: str
    repo: str
    file: str
    quant: str
    size: int  # bytes, as the hub page shows it (rounded)
    licence: str
    description_fr: str
    params: str
    quality: float  # the model's rank plus the quantisation's bonus

    @property
    def key(self) -> str:
        return f"{self.repo}/{self.file}"

    @property
    def label(self) -> str:
        """« Mistral 7B v0.3 (Q4_K_M) »."""
        return f"{self.model_name} ({self.quant})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model_id,
            "name": self.model_name,
            "repo": self.repo,
            "file": self.file,
            "quant": self.quant,
            "size": self.size,
            "licence": self.licence,
            "description": self.description_fr,
            "params": self.params,
        }


class CatalogueError(Exception):
    """The catalogue file is missing or damaged (a broken installation)."""


@functools.cache
def catalogue() -> tuple[CatalogueFile, ...]:
    """Every file of the catalogue, in the file's order (smaller models first)."""
    try:
        data = json.loads(CATALOGUE_FILE.read_text(encoding="utf-8"))
        files: list[CatalogueFile] = []
        for model in data["models"]:
            for f in model["files"]:
                files.append(
                    CatalogueFile(
                        model_id=str(model["id"]),
                        model_name=str(model["name"]),
                        repo=str(model["repo"]),
                        file=str(f["file"]),
                        quant=str(f["quant"]),
                        size=int(f["size"]),
                        licence=str(model["licence"]),
                        description_fr=str(model["description_fr"]),
                        params=str(model["params"]),
                        quality=float(model["quality"]) + QUANT_BONUS.get(str(f["quant"]), 0.0),
                    )
                )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CatalogueError(f"catalogue unreadable: {exc}") from exc
    return tuple(files)


def find(repo: str, file: str) -> CatalogueFile | None:
    for entry in catalogue():
        if entry.repo == repo and entry.file == file:
            return entry
    return None
