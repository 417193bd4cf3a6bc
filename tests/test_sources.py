"""Users' own data in (onnxprune.sources): image folders, sentence files and ORT calibration
readers give the same samples (and the same pruned model) as the equivalent .npz; the
preprocessing options do what they say; bad data is one line naming the option."""

import hashlib

import numpy as np
import onnx
import pytest
import tiny
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

import onnxprune
from onnxprune import sources
from onnxprune.cli import main
from onnxprune.errors import OnnxPruneError

MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)
SIZES = [(40, 30), (30, 52), (16, 16), (64, 20), (23, 41), (50, 50), (18, 33), (35, 28)]


def _photos(folder, sizes=SIZES, seed=0):
    """Small smooth colour images (JPEG, one PNG with transparency) written with PIL."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i, (w, h) in enumerate(sizes):
        yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
        phase = rng.uniform(0, 6, 3)
        arr = np.stack([127 + 120 * np.sin(6 * xx + 3 * yy * (c + 1) + phase[c]) for c in range(3)],
                       -1).astype(np.uint8)
        if i == 3:
            rgba = np.dstack([arr, np.where(xx > 0.5, 255, 0).astype(np.uint8)])
            path = folder / f"img{i}.png"
            Image.fromarray(rgba, "RGBA").save(path)
        else:
            path = folder / f"img{i}.jpg"
            Image.fromarray(arr).save(path, quality=95)
        paths.append(path)
    return paths


def _reference(paths, size, mean=MEAN, std=STD):
    """What --preprocess imagenet means, written out with PIL: transparency on the mean colour,
    shorter side round(size * 256 / 224), centre crop, /255, mean/std, NCHW."""
    short = round(size * 256 / 224)
    out = []
    for p in paths:
        img = Image.open(p)
        if img.mode == "RGBA":
            bg = Image.new("RGBA", img.size, tuple(round(255 * m) for m in mean) + (255,))
            bg.alpha_composite(img)
            img = bg
        img = img.convert("RGB")
        s = short / min(img.size)
        w, h = max(size, round(img.width * s)), max(size, round(img.height * s))
        a = np.asarray(img.resize((w, h), Image.BILINEAR))
        top, left = (h - size) // 2, (w - size) // 2
        a = a[top:top + size, left:left + size].astype(np.float32) / 255.0
        out.append(((a - mean) / std).transpose(2, 0, 1))
    return np.stack(out).astype(np.float32)


def test_image_folder_glob_and_list_match_the_npz(tmp_path):
    model = tiny.residual()  # x [1, 3, 16, 16]
    paths = _photos(tmp_path / "photos")
    ref = _reference(paths, 16)
    np.savez(tmp_path / "ref.npz", x=ref)
    (tmp_path / "list.txt").write_text("# photos\n" + "\n".join(f"photos/{p.name}" for p in paths))
    lines = []
    got = sources.load_samples(str(tmp_path / "photos"), model, report=lines.append)
    np.testing.assert_allclose(got["x"], ref, atol=1e-6)
    assert got["x"].dtype == np.float32 and got["x"].shape == (8, 3, 16, 16)
    for spec in (str(tmp_path / "photos" / "img*"), str(tmp_path / "list.txt"),
                 str(tmp_path / "ref.npz")):
        np.testing.assert_allclose(sources.load_samples(spec, model)["x"], ref, atol=1e-6)
    # the one line: what was applied and the first batch's statistics
    assert len(lines) == 1 and "8 images" in lines[0] and "shorter side 18, centre 16x16" in lines[0]
    assert f"mean {ref[:1].mean():.3f}" in lines[0] and "imagenet, the default" in lines[0]


def test_cli_prunes_the_same_model_from_a_folder_as_from_the_npz(tmp_path, capsys):
    model = tmp_path / "m.onnx"
    onnx.save(tiny.residual(), model)
    paths = _photos(tmp_path / "photos")
    np.savez(tmp_path / "ref.npz", x=_reference(paths, 16))
    digests = []
    for calib, extra in ((tmp_path / "photos", ["--preprocess", "imagenet"]),
                         (tmp_path / "ref.npz", [])):
        out = tmp_path / f"out_{len(digests)}.onnx"
        main([str(model), "-o", str(out), "--ratio", "0.3", "--no-latency", "--calib", str(calib),
              *extra])
        digests.append(hashlib.sha256(out.read_bytes()).hexdigest())
    assert digests[0] == digests[1]
    printed = capsys.readouterr().out
    assert printed.count("data: --calib") == 2 and "(--preprocess imagenet)" in printed


def test_layout_bgr_mean_std_do_what_they_say(tmp_path):
    model = tiny.nhwc()  # x [1, 12, 12, 3]
    folder = tmp_path / "photos"
    _photos(folder, SIZES[:3])

    def load(**kw):
        return sources.load_samples(str(folder), model, sources.Options.parse(**kw))["x"]

    raw = load(preprocess="raw")
    assert raw.shape == (3, 12, 12, 3) and 0.0 <= raw.min() and raw.max() <= 1.0  # NHWC found
    np.testing.assert_allclose(load(preprocess="inception"), 2 * raw - 1, atol=1e-6)
    np.testing.assert_array_equal(load(preprocess="raw", bgr=True), raw[..., ::-1])
    np.testing.assert_allclose(load(mean="0.5,0.4,0.3", std="0.25"),
                               (raw - [0.5, 0.4, 0.3]) / 0.25, atol=1e-5)
    np.testing.assert_allclose(load(mean="127.5,102,76.5", std="63.75"),  # 0..255 units
                               (raw - [0.5, 0.4, 0.3]) / 0.25, atol=1e-5)
    imagenet = load()
    np.testing.assert_allclose(imagenet, (raw - MEAN) / STD, atol=1e-5)
    # BGR keeps the preset's mean with its colour: blue's mean on the first channel
    np.testing.assert_allclose(load(bgr=True), ((raw - MEAN) / STD)[..., ::-1], atol=1e-5)
    # --resize WxH squashes instead of cropping; --crop must agree with a static model
    assert not np.allclose(load(preprocess="raw", resize="12x12"), raw)
    with pytest.raises(OnnxPruneError, match="--crop 10x10: the model's 'x' takes 12x12"):
        load(crop="10")
    with pytest.raises(OnnxPruneError, match="has 12 channels on the nchw channel axis"):
        load(layout="nchw")
    with pytest.raises(OnnxPruneError, match="--mean has 2 values"):
        load(mean="0.5,0.5")
    # a dynamic NCHW model takes --crop (or 224)
    dyn = tiny.residual()
    for d in dyn.graph.input[0].type.tensor_type.shape.dim[2:]:
        d.dim_param = "hw"
    assert sources.load_samples(str(folder), dyn, sources.Options.parse(crop="20"))["x"].shape \
        == (3, 3, 20, 20)


def _text_model(seq: int | str, vocab: int = 64, hidden: int = 8, ffn: int = 16):
    """input_ids, attention_mask [1, seq] -> Gather embedding -> MatMul -> Relu -> MatMul,
    masked: a tiny encoder with a prunable FFN."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal(s).astype(np.float32), n)
             for n, s in (("emb", (vocab, hidden)), ("w1", (hidden, ffn)), ("w2", (ffn, hidden)))]
    nodes = [helper.make_node("Gather", ["emb", "input_ids"], ["e"]),
             helper.make_node("MatMul", ["e", "w1"], ["h"]),
             helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("MatMul", ["r", "w2"], ["o"]),
             helper.make_node("Cast", ["attention_mask"], ["m"], to=TensorProto.FLOAT),
             helper.make_node("Unsqueeze", ["m", "axes"], ["m3"]),
             helper.make_node("Mul", ["o", "m3"], ["last_hidden_state"])]
    inits.append(numpy_helper.from_array(np.array([2], np.int64), "axes"))
    inputs = [helper.make_tensor_value_info(n, TensorProto.INT64, [1, seq])
              for n in ("input_ids", "attention_mask")]
    out = helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, [1, seq, hidden])
    return tiny.make(nodes, inputs, [out], inits)


SENTENCES = ["The quick brown fox jumps over the lazy dog.", "Arrays are stacked along the batch axis.",
             "A tokenizer turns sentences into ids.", "Padding tokens carry nothing.",
             "Latency is measured on the runtime.", "Short one.",
             "Every option has a help text and a clear error.", "Photos of cats and dogs."]


@pytest.fixture
def tokenizer(tmp_path):
    pytest.importorskip("tokenizers")
    import text_encoder

    tok = text_encoder.train_tokenizer(SENTENCES * 4)
    path = tmp_path / "tokenizer.json"
    tok.save(str(path))
    (tmp_path / "s.txt").write_text("\n".join(SENTENCES) + "\n")
    return tok, path


def test_sentences_and_tokenizer_match_the_npz(tmp_path, tokenizer):
    import text_encoder

    tok, path = tokenizer
    ref = text_encoder.encode(tok, SENTENCES)  # int64 [8, 128], [PAD] = 0
    opts = sources.Options.parse(tokenizer=str(path))
    got = sources.load_samples(str(tmp_path / "s.txt"), _text_model(text_encoder.SEQ), opts)
    assert set(got) == {"input_ids", "attention_mask"}
    for k in got:
        np.testing.assert_array_equal(got[k], ref[k])
    # dynamic length: --shape, else the tokenizer's truncation (128), and ids are cut at it
    dyn = _text_model("seq")
    short = sources.load_samples(str(tmp_path / "s.txt"), dyn, opts, {"input_ids": (1, 6)})
    assert short["input_ids"].shape == (8, 6) and short["attention_mask"][0].all()
    assert sources.load_samples(str(tmp_path / "s.txt"), dyn, opts)["input_ids"].shape == (8, 128)


def test_cli_prunes_the_same_text_model_from_sentences_as_from_the_npz(tmp_path, tokenizer, capsys):
    import text_encoder

    tok, path = tokenizer
    model = tmp_path / "enc.onnx"
    onnx.save(_text_model(text_encoder.SEQ, vocab=tok.get_vocab_size()), model)
    np.savez(tmp_path / "s.npz", **text_encoder.encode(tok, SENTENCES))
    digests = []
    for calib, extra in ((tmp_path / "s.txt", ["--tokenizer", str(path)]), (tmp_path / "s.npz", [])):
        out = tmp_path / f"out_{len(digests)}.onnx"
        main([str(model), "-o", str(out), "--ratio", "0.5", "--no-latency", "--calib", str(calib),
              *extra])
        digests.append(hashlib.sha256(out.read_bytes()).hexdigest())
    assert digests[0] == digests[1]
    assert "8 sentences, tokenizer.json, padded with id 0 / truncated to 128 tokens" \
        in capsys.readouterr().out


def test_calibration_data_reader_in_the_api(tmp_path):
    quantization = pytest.importorskip("onnxruntime.quantization")
    paths = _photos(tmp_path / "photos")
    ref = _reference(paths, 16)

    class Reader(quantization.CalibrationDataReader):
        def __init__(self):
            self.feeds = iter([{"x": ref[i:i + 1]} for i in range(len(ref))])

        def get_next(self):
            return next(self.feeds, None)

    model = tiny.residual()
    a = onnxprune.prune(model, ratio=0.3, calib=Reader(), recovery=("bias",))
    b = onnxprune.prune(model, ratio=0.3, calib={"x": ref}, recovery=("bias",))
    assert a.model.SerializeToString() == b.model.SerializeToString()
    assert a.report["fidelity"]["agreement"] is not None  # measured on held-out samples


@pytest.mark.parametrize("case", ["missing", "empty", "unreadable", "sentences", "bench", "reader"])
def test_bad_data_is_one_line_naming_the_option(case, tmp_path, capsys):
    model = tmp_path / "m.onnx"
    onnx.save(tiny.residual(), model)
    (tmp_path / "empty").mkdir()
    _photos(tmp_path / "bad", SIZES[:2])
    (tmp_path / "bad" / "broken.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "s.txt").write_text("a sentence\nanother one\n")
    out = tmp_path / "out.onnx"
    prune = [str(model), "-o", str(out), "--ratio", "0.3", "--no-latency", "--calib"]
    args, message = {
        "missing": (prune + [str(tmp_path / "nope")], "--calib {t}/nope: no such file or folder"),
        "empty": (prune + [str(tmp_path / "empty")], "--calib {t}/empty: no image files"),
        "unreadable": (prune + [str(tmp_path / "bad")], "--calib: cannot read image {t}/bad/broken.jpg"),
        "sentences": (prune + [str(tmp_path / "s.txt")], "needs --tokenizer tokenizer.json"),
        "bench": (["bench", str(model), "--data", str(tmp_path / "t.npz")], "--data {t}/t.npz: no such file"),
        "reader": (None, "calib: expected feed dicts"),
    }[case]
    if args is None:
        with pytest.raises(OnnxPruneError, match=message):
            onnxprune.prune(tiny.residual(), ratio=0.3, calib=[np.zeros((1, 3, 16, 16))])
        return
    with pytest.raises(SystemExit) as exit_:
        main(args)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1, err
    assert err.startswith("onnxprune: error: ") and message.format(t=tmp_path) in err, err
    assert not out.exists()
