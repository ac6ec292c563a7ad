#!/usr/bin/env python3
"""Rebuilds the small image samples in data/ from Debian's dataset-fashion-mnist package.

    apt-get install -y dataset-fashion-mnist && python3 tools/data/make_samples.py

Writes data/fashion-mnist-sample/ (the first 100 test images and labels, gzipped IDX) and
data/images/fashion-sample/<class>/<index>.png (two images per class from those 100).
Standard library only; gzip mtime is fixed so the output is byte-for-byte reproducible.
"""
import gzip
import os
import struct
import zlib

SRC = "/usr/share/datasets/fashion-mnist/"
DATA = os.path.join(os.path.dirname(__file__), "..", "..", "data")
N = 100
NAMES = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle-boot"]


def write_png(path, width, height, pixels):
    raw = b"".join(b"\x00" + bytes(pixels[y * width:(y + 1) * width]) for y in range(height))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def main():
    images = gzip.open(SRC + "t10k-images-idx3-ubyte.gz").read()
    labels = gzip.open(SRC + "t10k-labels-idx1-ubyte.gz").read()
    magic, _, rows, cols = struct.unpack(">IIII", images[:16])
    assert magic == 0x803
    body = images[16:16 + N * rows * cols]
    out = os.path.join(DATA, "fashion-mnist-sample")
    os.makedirs(out, exist_ok=True)
    with gzip.GzipFile(os.path.join(out, "t10k-images-idx3-ubyte.gz"), "wb", mtime=0) as f:
        f.write(struct.pack(">IIII", magic, N, rows, cols) + body)
    with gzip.GzipFile(os.path.join(out, "t10k-labels-idx1-ubyte.gz"), "wb", mtime=0) as f:
        f.write(struct.pack(">II", 0x801, N) + labels[8:8 + N])
    count = {}
    for i in range(N):
        label = labels[8 + i]
        if count.get(label, 0) >= 2:
            continue
        count[label] = count.get(label, 0) + 1
        folder = os.path.join(DATA, "images", "fashion-sample", NAMES[label])
        os.makedirs(folder, exist_ok=True)
        write_png(os.path.join(folder, f"{i:05d}.png"), cols, rows, body[i * rows * cols:(i + 1) * rows * cols])


if __name__ == "__main__":
    main()
