"""Turns an X screenshot (``xwd -root``) into a PNG, with the standard library only.

check_under_wine.sh takes its screenshots of the wine desktop with ``xwd`` (Debian package x11-apps)
and keeps them as PNG files, the CI artefacts a person looks at. Only what Xvfb produces is read:
a TrueColor ZPixmap of 24 or 32 bits per pixel.

    python3 installer/xwd_to_png.py IN.xwd OUT.png [--crop X,Y,W,H]
"""

from __future__ import annotations

import argparse
import struct
import sys
import zlib
from pathlib import Path

HEADER_FIELDS = (
    "header_size file_version pixmap_format pixmap_depth width height xoffset byte_order bitmap_unit "
    "bitmap_bit_order bitmap_pad bits_per_pixel bytes_per_line visual_class red_mask green_mask blue_mask "
    "bits_per_rgb colormap_entries ncolors window_width window_height window_x window_y window_bdrwidth"
).split()


class Image:
    """RGB pixels, row by row (``rows[y][3*x:3*x+3]``)."""

    def __init__(self, width: int, height: int, rows: list[bytes]) -> None:
        self.width, self.height, self.rows = width, height, rows

    def crop(self, x: int, y: int, w: int, h: int) -> Image:
        x, y = max(0, x), max(0, y)
        w, h = max(1, min(w, self.width - x)), max(1, min(h, self.height - y))
        return Image(w, h, [row[3 * x:3 * (x + w)] for row in self.rows[y:y + h]])

    def pixel(self, x: int, y: int) -> tuple[int, int, int]:
        r, g, b = self.rows[y][3 * x:3 * x + 3]
        return r, g, b

    def colours(self) -> int:
        """How many different colours: a blank area has one or two, text or an icon many more."""
        return len({row[i:i + 3] for row in self.rows for i in range(0, len(row), 3)})

    def png(self) -> bytes:
        def chunk(kind: bytes, data: bytes) -> bytes:
            return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

        raw = b"".join(b"\0" + row for row in self.rows)
        ihdr = struct.pack(">IIBBBBB", self.width, self.height, 8, 2, 0, 0, 0)
        return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")


def read_xwd(data: bytes) -> Image:
    h = dict(zip(HEADER_FIELDS, struct.unpack(">25I", data[:100])))
    if h["file_version"] != 7 or h["pixmap_format"] != 2 or h["bits_per_pixel"] not in (24, 32):
        raise ValueError("format xwd non pris en charge (ZPixmap 24/32 bits attendu)")
    start = h["header_size"] + 12 * h["ncolors"]
    width, height, stride, bpp = h["width"], h["height"], h["bytes_per_line"], h["bits_per_pixel"] // 8
    order = "<" if h["byte_order"] == 0 else ">"

    def shift(mask: int) -> int:
        return (mask & -mask).bit_length() - 1

    masks = [(h[m], shift(h[m])) for m in ("red_mask", "green_mask", "blue_mask")]
    fast = order == "<" and [m for m, _ in masks] == [0xFF0000, 0xFF00, 0xFF]
    rows = []
    for y in range(height):
        line = data[start + y * stride:start + y * stride + width * bpp]
        out = bytearray(3 * width)
        if fast:  # Xvfb's usual layout: bytes B, G, R (and one unused byte at 32 bits per pixel)
            out[0::3], out[1::3], out[2::3] = line[2::bpp], line[1::bpp], line[0::bpp]
            rows.append(bytes(out))
            continue
        if bpp == 4:
            values = struct.unpack(f"{order}{width}I", line)
        else:
            endian = "little" if order == "<" else "big"
            values = [int.from_bytes(line[i:i + 3], endian) for i in range(0, len(line), 3)]
        for i, v in enumerate(values):
            out[3 * i:3 * i + 3] = bytes(((v & m) >> s) & 0xFF for m, s in masks)
        rows.append(bytes(out))
    return Image(width, height, rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("xwd", type=Path)
    p.add_argument("png", type=Path)
    p.add_argument("--crop", help="X,Y,W,H : ne garder que ce rectangle")
    args = p.parse_args(argv)
    image = read_xwd(args.xwd.read_bytes())
    if args.crop:
        image = image.crop(*(int(v) for v in args.crop.split(",")))
    args.png.write_bytes(image.png())
    return 0


if __name__ == "__main__":
    sys.exit(main())
