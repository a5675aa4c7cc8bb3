"""Screenshots of the real tray program at its first start under Xvfb + trayer, for a person to look at.

    .venv/bin/python benchmarks/tray_screenshots.py [--out /tmp/shots]

Starts its own Xvfb (display :58) and trayer, launches ``python -m tray_app`` with an empty home folder
(so the « Optimiser » question of the very first start appears), and grabs the whole screen with
ImageMagick's ``import``: ``first-start-offer.png`` (the question), then, after « Plus tard » and a click
on the icon, ``tray-menu.png`` (the menu with « Optimiser… »). Needs Xvfb, trayer, xdotool and ImageMagick.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DISPLAY = ":58"


def run(*cmd: str) -> str:
    return subprocess.run(cmd, capture_output=True, text=True, check=False).stdout.strip()


def geometry(window: str) -> dict[str, int]:
    lines = run("xdotool", "getwindowgeometry", "--shell", window).splitlines()
    return {k: int(v) for k, v in (line.split("=", 1) for line in lines if "=" in line)}


def click(x: int, y: int) -> None:
    run("xdotool", "mousemove", str(x), str(y), "click", "1")


def grab(out: Path, name: str) -> None:
    path = out / f"{name}.png"
    subprocess.run(["import", "-display", DISPLAY, "-window", "root", str(path)], check=True)
    print(path)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="/tmp/shots")
    args = parser.parse_args()
    missing = [tool for tool in ("Xvfb", "trayer", "xdotool", "import") if not shutil.which(tool)]
    if missing:
        print(f"missing: {', '.join(missing)}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    os.environ["DISPLAY"] = DISPLAY
    helpers = [subprocess.Popen(["Xvfb", DISPLAY, "-screen", "0", "1280x800x24"], stderr=subprocess.DEVNULL)]
    time.sleep(1.0)
    helpers.append(subprocess.Popen(["trayer", "--edge", "bottom", "--align", "right", "--height", "32"],
                                    stderr=subprocess.DEVNULL))
    time.sleep(1.0)
    home = tempfile.mkdtemp(prefix="dm-tray-shots-")
    env = dict(os.environ, DESKTOP_MATE_HOME=home)
    tray = subprocess.Popen([sys.executable, "-m", "tray_app"], cwd=REPO, env=env)
    try:
        time.sleep(5.0)  # the question comes 1.5 s after the icon
        grab(out, "first-start-offer")
        windows = [geometry(w) for w in run("xdotool", "search", "--onlyvisible", "--name", "Desktop-Mate").split()]
        box = max(windows, key=lambda g: g["WIDTH"] * g["HEIGHT"])
        # the icon: trayer's panel is aligned right, and ours is its only icon
        panel = geometry(run("xdotool", "search", "--name", "^panel$").split()[0])
        # « Plus tard » is the right-most button, at the bottom right of the question box
        click(box["X"] + box["WIDTH"] - 55, box["Y"] + box["HEIGHT"] - 24)
        time.sleep(1.0)
        click(panel["X"] + panel["WIDTH"] - 12, panel["Y"] + panel["HEIGHT"] // 2)
        time.sleep(1.5)
        grab(out, "tray-menu")
    finally:
        tray.terminate()
        tray.wait(15)
        for h in helpers:
            h.terminate()
    return 0


if __name__ == "__main__":
    sys.exit(main())
