"""Entry point of the runner process: ``python -m llama_cpp.server`` plus a parent watchdog.

Run as a script path (``python .../runner_entry.py ARGS``), not as ``-m tray_app…``: the runner then needs
only the standard library and llama-cpp-python, wherever the ``tray_app`` package lives. Before the server
starts, :mod:`runner_engine_patches` (beside this file) fixes behaviours of the engine and adds a private
route that changes its thread counts (see there).

Why not plain ``python -m llama_cpp.server``: if the tray process dies without stopping its runner (crash,
Task Manager), an orphaned runner would keep the whole model in VRAM and RAM, and the next start would
load a second copy. The parent keeps the write end of this process's stdin open and never writes; when the
parent dies the OS closes it, the read below returns end-of-file and the runner exits at once. The parent
also stops the runner this way (cross-platform, no signal needed). Everything else is llama_cpp.server,
unchanged: ``runpy.run_module`` is exactly what ``-m`` does.

The process always ends through ``os._exit`` with the server's exit status (1 after an uncaught exception,
whose traceback is printed first): a normal interpreter shutdown would abort with "Fatal Python error:
_enter_buffered_busy" while the watchdog thread is blocked reading stdin, and the parent would read a
refused setting as a crash.
"""

import os
import runpy
import sys
import threading
import traceback


def _exit_when_parent_goes() -> None:
    if os.name == "nt" and sys.stdin is not None:
        _poll_parent_pipe_windows()
    stdin = sys.stdin.buffer if sys.stdin is not None else None
    try:
        while stdin is not None and stdin.read(4096):
            pass
    except (OSError, ValueError):
        pass
    os._exit(0)  # immediate: the OS returns the model's memory (RAM and VRAM) with the process


def _poll_parent_pipe_windows() -> None:
    """Windows: poll the pipe instead of a blocking read, which held up the loading of the server's DLLs
    (numpy's) while it waited: the runner printed one line and never served (seen under wine)."""
    if sys.platform != "win32":  # for type checkers too: what follows is Windows' API
        return
    import ctypes
    import msvcrt
    import time
    from ctypes import wintypes

    handle = msvcrt.get_osfhandle(sys.stdin.fileno())
    peek = ctypes.windll.kernel32.PeekNamedPipe
    peek.argtypes = [wintypes.HANDLE, ctypes.c_void_p, wintypes.DWORD, ctypes.c_void_p,
                     ctypes.POINTER(wintypes.DWORD), ctypes.c_void_p]
    available = wintypes.DWORD()
    while peek(handle, None, 0, None, ctypes.byref(available), None):  # fails once the parent has gone
        time.sleep(0.25)
    os._exit(0)


def main() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    if sys.path and os.path.abspath(sys.path[0] or os.curdir) == here:
        sys.path.pop(0)  # our folder's modules must not shadow anything the server imports
    threading.Thread(target=_exit_when_parent_goes, name="parent-watchdog", daemon=True).start()
    sys.argv[0] = "llama_cpp.server"
    code = 0
    try:
        _engine_patches(here).apply()
        runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        code = _exit_status(exc.code)
    except BaseException:  # noqa: BLE001 — printed for the parent, which classifies the failure
        traceback.print_exc()
        code = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def _engine_patches(folder: str):
    """``runner_engine_patches.py`` beside this file, loaded by path (our folder is off sys.path)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "desktop_mate_runner_engine_patches", os.path.join(folder, "runner_engine_patches.py")
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _exit_status(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)  # SystemExit("message"): Python prints it and exits with 1
    return 1


if __name__ == "__main__":
    main()
