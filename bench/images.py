#!/usr/bin/env python3
"""Image preparation, fedialt against the Python original's Pillow code, side by side in one run.

For photos of 1, 12 and 50 megapixels as JPEG, PNG and WebP: the best of RUNS timings of
- fedialt: captioning::images::prepare (decode by the bytes, upright, Lanczos3 to 1024 px, JPEG 85),
  release build, through bench/prepare_images.rs;
- Pillow: open, convert("RGB"), thumbnail((1024, 1024), LANCZOS), save JPEG quality 85;
and each one's peak memory for that image alone (a process per image). Pillow is installed into a
virtual environment the script makes (package registry only).

    python3 bench/images.py            # prints a markdown table
"""
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNS = int(os.environ.get("RUNS", "5"))
VENV = os.environ.get("PIL_VENV", os.path.join(tempfile.gettempdir(), "fedialt-bench-pillow"))
SIZES = [(1, 1224, 816), (12, 4240, 2832), (50, 8660, 5774)]

PILLOW = r'''
import io, resource, sys, time
from PIL import Image
Image.MAX_IMAGE_PIXELS = None
path, runs = sys.argv[1], int(sys.argv[2])
data = open(path, "rb").read()
best = 1e9
for _ in range(runs):
    t = time.perf_counter()
    img = Image.open(io.BytesIO(data)).convert("RGB")
    img.thumbnail((1024, 1024), Image.LANCZOS)
    out = io.BytesIO()
    img.save(out, "JPEG", quality=85)
    best = min(best, (time.perf_counter() - t) * 1000)
print(f"{best:.1f}\t{img.width}x{img.height}\t{len(out.getvalue())}\t{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}")
'''

MAKE = r'''
import sys
from PIL import Image, ImageDraw, ImageFilter
import random
w, h, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
# Photo-like: smooth gradients, shapes and fine noise (JPEG and WebP sizes like a camera's).
img = Image.linear_gradient("L").resize((w, h)).convert("RGB")
d = ImageDraw.Draw(img)
rnd = random.Random(7)
for _ in range(200):
    x, y = rnd.randrange(w), rnd.randrange(h)
    r = rnd.randrange(w // 50 + 1, w // 8 + 2)
    d.ellipse([x - r, y - r, x + r, y + r], fill=(rnd.randrange(256), rnd.randrange(256), rnd.randrange(256)))
noise = Image.effect_noise((w, h), 24).convert("RGB")
img = Image.blend(img, noise, 0.15)
fmt = out.rsplit(".", 1)[1].upper().replace("JPG", "JPEG")
kw = {"quality": 90} if fmt in ("JPEG", "WEBP") else {}
img.save(out, fmt, **kw)
'''


def venv_python():
    py = os.path.join(VENV, "bin", "python")
    if not os.path.exists(py):
        subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
        subprocess.run([py, "-m", "pip", "install", "-q", "Pillow"], check=True)
    return py


def main():
    py = venv_python()
    subprocess.run(["cargo", "build", "--release", "--locked", "--example", "prepare_images"], cwd=ROOT, check=True)
    rust = os.path.join(ROOT, "target", "release", "examples", "prepare_images")
    work = tempfile.mkdtemp(prefix="fedialt-bench-images-")
    rows = ["| image | file MB | fedialt ms | Pillow ms | speed-up | fedialt out | Pillow out | fedialt peak MB | Pillow peak MB | decoded MB |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for mp, w, h in SIZES:
        for ext in ("jpg", "png", "webp"):
            path = os.path.join(work, f"{mp}mp.{ext}")
            subprocess.run([py, "-c", MAKE, str(w), str(h), path], check=True)
            ours = subprocess.run([rust, str(RUNS), path], capture_output=True, text=True, check=True).stdout.split("\t")
            theirs = subprocess.run([py, "-c", PILLOW, path, str(RUNS)], capture_output=True, text=True, check=True).stdout.split("\t")
            o_ms, o_dim, o_bytes, o_rss = float(ours[1]), ours[2], int(ours[3]), int(ours[4]) / 1024
            p_ms, p_dim, p_bytes, p_rss = float(theirs[0]), theirs[1], int(theirs[2]), int(theirs[3]) / 1024
            rows.append(f"| {mp} MP {ext.upper()} | {os.path.getsize(path) / 1e6:.1f} | {o_ms:.0f} | {p_ms:.0f} | {p_ms / o_ms:.1f}x | "
                        f"{o_dim}, {o_bytes // 1024} KB | {p_dim}, {p_bytes // 1024} KB | {o_rss:.0f} | {p_rss:.0f} | {w * h * 3 / 1e6:.0f} |")
    rows += ["", f"Machine: {os.cpu_count()} cores. Command: python3 bench/images.py (best of {RUNS} runs each; peak = the process's VmHWM / ru_maxrss with that one image)."]
    print("\n".join(rows))


if __name__ == "__main__":
    main()
