"""models/photos.py without the network: the Qt resource reader on an archive written here, the
photo/drawing rule, the mirror-invariant duplicate hash, per-file licences, the evaluation view."""

import io
import struct
import zlib

import numpy as np
import photos
from PIL import Image


def _rcc(files: dict[str, bytes], compress: set[str], version: int = 2) -> bytes:
    """A Qt resource archive holding ``files`` (paths like ``a/b.png``), as rcc writes it:
    header, data (size-prefixed; qCompress = u32 length + zlib), names (u16 length, u32 hash,
    UTF-16BE), tree (breadth-first, children of a directory contiguous)."""
    tree: dict = {}
    for path, data in files.items():
        node = tree
        *dirs, leaf = path.split("/")
        for d in dirs:
            node = node.setdefault(d, {})
        node[leaf] = path
    names, name_at = bytearray(), {}

    def name(n: str) -> int:
        if n not in name_at:
            name_at[n] = len(names)
            names.extend(struct.pack(">HI", len(n), 0) + n.encode("utf-16-be"))
        return name_at[n]

    data, nodes = bytearray(), []
    queue = [("", tree)]
    nodes.append(None)  # root, filled below
    next_index = 1
    rows = {}
    while queue:
        label, node = queue.pop(0)
        children = sorted(node.items())
        first = next_index
        next_index += len(children)
        rows[label] = (len(children), first)
        for child, value in children:
            if isinstance(value, dict):
                nodes.append(("dir", child, f"{label}/{child}"))
                queue.append((f"{label}/{child}", value))
            else:
                payload = files[value]
                flags = 0
                if value in compress:
                    payload, flags = struct.pack(">I", len(payload)) + zlib.compress(payload), 1
                nodes.append(("file", child, flags, len(data)))
                data.extend(struct.pack(">I", len(payload)) + payload)
    out_nodes = bytearray()
    for i, node in enumerate(nodes):
        if i == 0:
            count, first = rows[""]
            row = struct.pack(">IHII", 0, 2, count, first)
        elif node[0] == "dir":
            count, first = rows[node[2]]
            row = struct.pack(">IHII", name(node[1]), 2, count, first)
        else:
            row = struct.pack(">IHHHI", name(node[1]), node[2], 0, 0, node[3])
        out_nodes.extend(row + (b"\0" * 8 if version >= 2 else b""))
    header = 20
    tree_at, data_at = header, header + len(out_nodes)
    names_at = data_at + len(data)
    return (b"qres" + struct.pack(">IIII", version, tree_at, data_at, names_at)
            + bytes(out_nodes) + bytes(data) + bytes(names))


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


def _photo_like(seed: int, size=(60, 80)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size[0], 0:size[1]]
    base = np.stack([100 + 60 * np.sin(xx / (7 + c) + seed) + 40 * np.cos(yy / 5) for c in range(3)], -1)
    return np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)


def test_rcc_reader_walks_directories_and_inflates_zlib_entries():
    files = {"gcompris/src/a/one.webp": b"first", "gcompris/src/a/deep/two.jpg": b"second" * 50,
             "gcompris/src/b.qml": b"third"}
    for version in (1, 2):
        blob = _rcc(files, compress={"gcompris/src/a/deep/two.jpg"}, version=version)
        got = dict(photos.read_rcc(blob))
        assert got == {f"/{k}": v for k, v in files.items()}


def test_photo_rule_keeps_photos_and_drops_drawings():
    photo = Image.fromarray(_photo_like(0))
    drawing = np.full((60, 80, 3), 250, np.uint8)
    drawing[10:50, 20:60] = (200, 30, 30)  # flat fills and a dark outline: clipart
    drawing[10, 20:60] = drawing[50, 20:60] = 0
    assert photos.is_photo(photo)
    assert not photos.is_photo(Image.fromarray(drawing))
    assert not photos.is_photo(Image.fromarray(_photo_like(1, (20, 20))))  # too small


def test_duplicate_hash_is_mirror_invariant_and_tells_photos_apart():
    a = Image.fromarray(_photo_like(2))
    mirrored = a.transpose(Image.FLIP_LEFT_RIGHT)
    smaller = a.resize((40, 30))
    other = Image.fromarray(_photo_like(5))
    h = photos.dhash(a)
    assert (h ^ photos.dhash(mirrored)).bit_count() <= photos.DUP_BITS
    assert (h ^ photos.dhash(smaller)).bit_count() <= photos.DUP_BITS
    assert (h ^ photos.dhash(other)).bit_count() > photos.DUP_BITS
    seen = {h: "a"}
    assert photos._near(photos.dhash(mirrored), seen) == "a"
    assert photos._near(photos.dhash(other), seen) is None


def test_licence_of_a_file_is_its_last_matching_stanza():
    text = """Format: x

Files: *
Copyright: someone
License: GPL-3+

Files: src/activities/fishes/*
Copyright: many
License: CC-BY-SA-3.0

Files: src/activities/fishes/fish3.jpg
Copyright: Elma
License: CC-BY-2.0
"""
    stanzas = photos._copyright_stanzas(text)
    assert photos._licence("src/activities/fishes/fish3.webp", stanzas) == "CC-BY-2.0"
    assert photos._licence("src/activities/fishes/fish4.webp", stanzas) == "CC-BY-SA-3.0"
    assert photos._licence("src/other.webp", stanzas) == "GPL-3+ (package default)"


def test_load_gives_one_centre_view_per_photo(tmp_path):
    rgba = np.dstack([_photo_like(3, (50, 100)), np.full((50, 100), 255, np.uint8)])
    rgba[:, :10, 3] = 0  # a transparent margin becomes the mean colour: 0 after normalising
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    Image.fromarray(_photo_like(4, (90, 60))).save(tmp_path / "b.jpg")
    x = photos.load(tmp_path, size=32)
    assert x.shape == (2, 3, 32, 32) and x.dtype == np.float32
    raw = photos.load(tmp_path, size=32, preprocess="raw")
    assert 0 <= raw.min() and raw.max() <= 1
    np.testing.assert_allclose(x, (raw - photos.MEAN[:, None, None]) / photos.STD[:, None, None],
                               atol=1e-5)
    assert photos.spread(list(range(10)), 3) == [0, 4, 9] and len(photos.load(tmp_path, n=1)) == 1
