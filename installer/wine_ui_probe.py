"""Lists the windows a user sees on the wine desktop, from the Windows side, with Win32 calls only.

Run by check_under_wine.sh with the installed python.exe; prints JSON. It reads what any window
spy tool reads (EnumWindows, GetWindowText, GetClassName, GetWindowRect, IsWindowVisible,
GetWindowThreadProcessId, WM_GETTEXT): nothing of the tray program is imported or asked.

    python.exe wine_ui_probe.py [FILE]   -> {"windows": [...], "taskbar": {...}, "tray_icons": [...]}

For each visible top-level window: title, class, owner process id, place; for a tooltip (wine's
notification balloons are tooltips of the taskbar), its text too (WM_GETTEXT).
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
from ctypes import wintypes

user32 = ctypes.WinDLL("user32", use_last_error=True)
WNDENUMPROC = ctypes.WINFUNCTYPE(wintypes.BOOL, wintypes.HWND, wintypes.LPARAM)
user32.EnumWindows.argtypes = [WNDENUMPROC, wintypes.LPARAM]
user32.EnumChildWindows.argtypes = [wintypes.HWND, WNDENUMPROC, wintypes.LPARAM]
user32.GetWindowTextW.argtypes = [wintypes.HWND, wintypes.LPWSTR, ctypes.c_int]
user32.GetClassNameW.argtypes = [wintypes.HWND, wintypes.LPWSTR, ctypes.c_int]
user32.GetWindowRect.argtypes = [wintypes.HWND, ctypes.POINTER(wintypes.RECT)]
user32.IsWindowVisible.argtypes = [wintypes.HWND]
user32.GetWindowThreadProcessId.argtypes = [wintypes.HWND, ctypes.POINTER(wintypes.DWORD)]
user32.FindWindowW.argtypes = [wintypes.LPCWSTR, wintypes.LPCWSTR]
user32.FindWindowW.restype = wintypes.HWND
user32.SendMessageTimeoutW.argtypes = [wintypes.HWND, wintypes.UINT, wintypes.WPARAM, wintypes.LPARAM,
                                        wintypes.UINT, wintypes.UINT, ctypes.POINTER(ctypes.c_size_t)]
WM_GETTEXT = 0x000D
SMTO_ABORTIFHUNG = 0x0002


def window_text(hwnd: int) -> str:
    """WM_GETTEXT, which Windows carries across processes: a tooltip or balloon answers with its text."""
    buf = ctypes.create_unicode_buffer(1024)
    result = ctypes.c_size_t()
    if not user32.SendMessageTimeoutW(hwnd, WM_GETTEXT, 1024, ctypes.cast(buf, ctypes.c_void_p).value or 0,
                                      SMTO_ABORTIFHUNG, 2000, ctypes.byref(result)):
        return ""
    return buf.value


def describe(hwnd: int) -> dict:
    title = ctypes.create_unicode_buffer(512)
    cls = ctypes.create_unicode_buffer(256)
    user32.GetWindowTextW(hwnd, title, 512)
    user32.GetClassNameW(hwnd, cls, 256)
    rect = wintypes.RECT()
    user32.GetWindowRect(hwnd, ctypes.byref(rect))
    pid = wintypes.DWORD()
    user32.GetWindowThreadProcessId(hwnd, ctypes.byref(pid))
    info = {
        "hwnd": int(hwnd or 0),
        "title": title.value,
        "class": cls.value,
        "pid": pid.value,
        "visible": bool(user32.IsWindowVisible(hwnd)),
        "rect": [rect.left, rect.top, rect.right - rect.left, rect.bottom - rect.top],
    }
    if info["class"] == "tooltips_class32" and info["visible"]:  # notification balloons and tooltips
        info["text"] = window_text(hwnd)
    return info


def collect(enum, *args) -> list[dict]:
    found: list[dict] = []

    def on_window(hwnd, _lparam):
        found.append(describe(hwnd))
        return True

    enum(*args, WNDENUMPROC(on_window), 0)
    return found


def main() -> int:
    windows = [w for w in collect(user32.EnumWindows) if w["visible"]]
    taskbar = user32.FindWindowW("Shell_TrayWnd", None)
    icons = []
    if taskbar:
        icons = [w for w in collect(user32.EnumChildWindows, taskbar) if w["visible"]]
    text = json.dumps({"windows": windows, "taskbar": describe(taskbar) if taskbar else None, "tray_icons": icons},
                      ensure_ascii=False)
    if len(sys.argv) > 1:  # a file: a pipe would stay open as long as any program it started runs
        with open(sys.argv[1] + ".tmp", "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(sys.argv[1] + ".tmp", sys.argv[1])
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
