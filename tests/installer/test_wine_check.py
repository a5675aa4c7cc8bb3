"""The pieces of the tray check under wine (installer/wine_tray_check.py and its helpers) that can be
checked without wine: the screenshot reader, the ICU stand-in's exports, and that the texts the check
looks for are the ones the tray shows."""

from __future__ import annotations

import importlib.util
import re
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
INSTALLER = ROOT / "installer"

# What Qt 6.11's Qt6Core.dll imports from icuuc.dll (x86_64-w64-mingw32-objdump -p Qt6Core.dll).
QT_ICU_IMPORTS = {
    "ucnv_open", "ucnv_close", "UCNV_FROM_U_CALLBACK_SUBSTITUTE", "UCNV_TO_U_CALLBACK_SUBSTITUTE",
    "ucnv_reset", "ucnv_getMaxCharSize", "ucnv_getName", "ucnv_getToUCallBack", "ucnv_getFromUCallBack",
    "ucnv_setToUCallBack", "ucnv_setFromUCallBack", "ucnv_cbToUWriteUChars", "ucnv_toUnicode",
    "ucnv_cbFromUWriteUChars", "ucnv_toUCountPending", "ucnv_fromUCountPending", "ucnv_getStandardName",
    "ucnv_getAvailableName", "ucnv_countAvailable", "ucnv_fromUnicode",
}


def _load(name: str):
    sys.path.insert(0, str(INSTALLER))
    try:
        spec = importlib.util.spec_from_file_location(name, INSTALLER / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(INSTALLER))


xwd = _load("xwd_to_png")
tray_check = _load("wine_tray_check")


def _xwd(width: int, height: int, pixels: list[tuple[int, int, int]], bpp: int) -> bytes:
    name = b"test\0"
    fields = [100 + len(name), 7, 2, 24, width, height, 0, 0, 32, 0, 32, bpp, width * bpp // 8, 4,
              0xFF0000, 0xFF00, 0xFF, 8, 256, 0, width, height, 0, 0, 0]
    header = struct.pack(">25I", *fields) + name
    body = b"".join(bytes((b, g, r)) + (b"\0" if bpp == 32 else b"") for r, g, b in pixels)
    return header + body


@pytest.mark.parametrize("bpp", [24, 32])
def test_xwd_screenshot_to_png(bpp):
    pixels = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (10, 20, 30), (255, 255, 255), (0, 0, 0)]
    image = xwd.read_xwd(_xwd(3, 2, pixels, bpp))
    assert (image.width, image.height) == (3, 2)
    assert image.pixel(0, 0) == (255, 0, 0) and image.pixel(2, 0) == (0, 0, 255) and image.pixel(0, 1) == (10, 20, 30)
    assert image.colours() == 6
    assert image.crop(1, 1, 5, 5).rows == [bytes((255, 255, 255, 0, 0, 0))]
    png = image.png()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    idat = png[png.index(b"IDAT") + 4:png.index(b"IEND") - 8]
    assert zlib.decompress(idat) == b"\0" + image.rows[0] + b"\0" + image.rows[1]


def test_xwd_of_another_format_is_refused():
    data = bytearray(_xwd(1, 1, [(0, 0, 0)], 32))
    data[8:12] = struct.pack(">I", 1)  # XYPixmap
    with pytest.raises(ValueError):
        xwd.read_xwd(bytes(data))


def test_the_menu_the_check_expects_is_the_trays():
    """A renamed entry must fail here, not only on a machine that runs wine."""
    sources = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "tray_app" / "ui").glob("*.py"))
    for entry in tray_check.EXPECTED_MENU:
        if entry == "Desktop-Mate : ":  # f"{APP_DISPLAY_NAME} : {status}" in tray.py
            continue
        fixed = entry.split(" : ")[0] + " : " if " : " in entry else entry  # « Modèle : {0} »
        assert fixed in sources, entry
    for title in ("Jauges — Desktop-Mate", "Paramètres — Desktop-Mate", "Journal détaillé", "Dépannage",
                  "Enregistrer", "Plus tard", "Desktop-Mate est déjà ouvert", "Adresse copiée",
                  "Décharger le modèle"):
        schema = (ROOT / "tray_app" / "settings_schema.py").read_text(encoding="utf-8")
        assert title in sources or title in schema, title


def test_english_words_are_caught():
    assert tray_check.ENGLISH_WORDS.search("Settings…")
    assert tray_check.ENGLISH_WORDS.search("Quit")
    assert not tray_check.ENGLISH_WORDS.search("Paramètres…")
    assert not any(tray_check.ENGLISH_WORDS.search(e) for e in tray_check.EXPECTED_MENU)


@pytest.mark.skipif(shutil.which("x86_64-w64-mingw32-gcc") is None, reason="mingw-w64 not installed")
def test_icu_stand_in_exports_what_qt_imports(tmp_path):
    dll = tmp_path / "icuuc.dll"
    subprocess.run(["x86_64-w64-mingw32-gcc", "-O2", "-Wall", "-Werror", "-shared", "-s", "-o", str(dll),
                    str(INSTALLER / "wine-shims" / "icuuc.c")], check=True)
    dump = subprocess.run(["x86_64-w64-mingw32-objdump", "-p", str(dll)], check=True, capture_output=True,
                          text=True).stdout
    table = dump[dump.index("[Ordinal/Name Pointer] Table"):]
    exported = set(re.findall(r"\]\s+(\w+)", table))
    assert exported >= QT_ICU_IMPORTS
    # nothing from mingw's runtime DLLs: wine has none of them
    assert not re.search(r"DLL Name: (libgcc|libstdc|libwinpthread)", dump)
