#!/usr/bin/env python3
"""Reads a PNG screenshot (8-bit RGB or RGBA, as headless Chromium writes it; Python's standard
library only) and, for each box given as "id x y w h color" on stdin, prints one JSON line: the share
of pixels that are not white and the number of pixels within 48 of `color` ("-" for none)."""
import json
import struct
import sys
import zlib


def read_png(path):
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, width = 8, b"", 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", chunk)
            assert depth == 8 and color in (2, 6) and interlace == 0, (depth, color, interlace)
            bpp = 3 if color == 2 else 4
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows, prev, i = [], bytearray(stride), 0
    for _ in range(height):
        ftype, line = raw[i], bytearray(raw[i + 1:i + 1 + stride])
        i += 1 + stride
        for x in range(stride):
            a = line[x - bpp] if x >= bpp else 0
            b = prev[x]
            c = prev[x - bpp] if x >= bpp else 0
            if ftype == 1:
                line[x] = (line[x] + a) & 255
            elif ftype == 2:
                line[x] = (line[x] + b) & 255
            elif ftype == 3:
                line[x] = (line[x] + (a + b) // 2) & 255
            elif ftype == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(line)
        prev = line
    return width, height, bpp, rows


def main():
    width, height, bpp, rows = read_png(sys.argv[1])
    for spec in sys.stdin.read().split("\n"):
        if not spec.strip():
            continue
        box, x, y, w, h, color = spec.split()
        x, y, w, h = int(x), int(y), int(w), int(h)
        target = None if color == "-" else tuple(int(color[i:i + 2], 16) for i in (1, 3, 5))
        nonwhite = matching = total = 0
        for yy in range(max(0, y), min(height, y + h)):
            row = rows[yy]
            for xx in range(max(0, x), min(width, x + w)):
                r, g, b = row[xx * bpp], row[xx * bpp + 1], row[xx * bpp + 2]
                total += 1
                if r < 235 or g < 235 or b < 235:
                    nonwhite += 1
                if target and abs(r - target[0]) + abs(g - target[1]) + abs(b - target[2]) < 48:
                    matching += 1
        print(json.dumps({"id": box, "nonwhite": nonwhite / max(total, 1), "matching": matching, "pixels": total}))


if __name__ == "__main__":
    main()
