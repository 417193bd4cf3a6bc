"""BERT-like sentence encoder with trained weights, built offline on demand (too big to commit).

Shaped like all-MiniLM-L6-v2, scaled down to train in minutes on one CPU thread:
``transformers.BertModel`` with hidden 256, 4 layers, 4 heads of 64, intermediate 1024 (exact
GELU), 128 positions, eager attention (explicit MatMul/Softmax in the export), and a lower-cased
BPE vocabulary of 8,000 tokens trained with the ``tokenizers`` package on the training sentences.

Corpus: English sentences cut from the docstrings of installed packages, in a fixed order:
``numpy``, ``torch``, ``onnx`` (including its operator schemas) and a fixed list of Python
standard-library modules (``STDLIB``). Paragraphs are joined, split into sentences, reST markup
is stripped, and only prose is kept (6 to 40 words, starts upper-case, ends with a full stop,
mostly letters); duplicates are dropped. The corpus, hence the model, depends on the installed
versions of those packages (and Python): the same environment gives the same bytes.

Data for onnxprune (both ``.npz`` hold ``input_ids`` and ``attention_mask``, int64 [N, 128]:
``[CLS] sentence [SEP]`` then ``[PAD]`` up to 128, mask 1 on the real tokens):
  * calibration: ``N_CALIB`` sentences drawn (seeded) from **numpy** docstrings;
  * test: ``N_TEST`` sentences drawn (seeded) from **standard-library** docstrings.
Both sets are held out of training.

Training (fixed seeds, one CPU thread, deterministic algorithms, fixed step counts ``MLM_STEPS``
and ``SIMCSE_STEPS``; ~280-300 s CPU):
  1. masked-LM (BERT 80/10/10 masking of 15% of the tokens, decoder tied to the embeddings),
     AdamW + one-cycle LR, length-bucketed batches of ``BATCH`` sentences;
  2. unsupervised SimCSE: each batch encoded twice with dropout 0.1, mean-pooled, InfoNCE
     (temperature 0.05) against the other sentences in the batch, so that mean-pooled
     embeddings are meaningful; the masked-LM loss of the batch is added (SimCSE's auxiliary
     objective) so the encoder keeps its language model. AdamW, constant LR ``SIMCSE_LR``.

Export: the encoder alone, TorchScript exporter (``dynamo=False``), opset 17, IR version <= 10;
inputs ``input_ids`` and ``attention_mask`` int64 [1, 128] (static), output
``last_hidden_state`` float32 [1, 128, 256]; onnxruntime is checked against torch (1e-4).

Usage (nothing is downloaded; training is skipped when ``--out`` exists and its tokenizer,
``<out>.tokenizer.json``, is next to it)::

    python models/text_encoder.py --out out/text_encoder.onnx \\
        --calib out/text_calib.npz --test out/text_test.npz

It prints the training time, the final masked-LM loss on held-out sentences, and a sanity check
of the mean-pooled test embeddings (cosine to the nearest neighbour vs to the other sentences,
content words shared with the nearest neighbour vs with the others, and how often the nearest
neighbour comes from the same module vs chance). torch, transformers and tokenizers
are dev/benchmark-only dependencies, imported only inside functions here.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import re
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch
    from tokenizers import Tokenizer
    from transformers import BertForMaskedLM

SEQ = 128
HIDDEN = 256
VOCAB = 8000
SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
PAD, UNK, CLS, SEP, MASK = range(len(SPECIALS))
N_CALIB = 128
N_TEST = 256
N_VALID = 512  # held-out sentences for the final masked-LM loss
BATCH = 32
MLM_STEPS = 1000
MLM_LR = 1e-3
SIMCSE_STEPS = 100
SIMCSE_LR = 1e-4
TOLERANCE = 1e-4

NUMPY = ("numpy", "numpy.linalg", "numpy.fft", "numpy.random", "numpy.ma", "numpy.polynomial",
         "numpy.lib.stride_tricks", "numpy.testing")
TORCH = ("torch", "torch.nn", "torch.nn.functional", "torch.nn.init", "torch.nn.utils",
         "torch.optim", "torch.optim.lr_scheduler", "torch.utils.data", "torch.autograd",
         "torch.linalg", "torch.fft", "torch.special", "torch.distributions", "torch.sparse",
         "torch.onnx", "torch.jit", "torch.cuda", "torch.distributed", "torch.export",
         "torch.fx", "torch.ao.quantization", "torch.nn.parallel", "torch.utils.checkpoint")
ONNX = ("onnx", "onnx.helper", "onnx.numpy_helper", "onnx.checker", "onnx.shape_inference",
        "onnx.compose", "onnx.version_converter", "onnx.reference", "onnx.hub", "onnx.parser",
        "onnx.inliner", "onnx.utils")
STDLIB = ("abc", "argparse", "array", "ast", "asyncio", "base64", "bisect", "bz2", "calendar",
          "cmd", "codecs", "collections", "concurrent.futures", "configparser", "contextlib",
          "contextvars", "copy", "csv", "dataclasses", "datetime", "decimal", "difflib", "dis",
          "doctest", "email", "email.message", "enum", "filecmp", "fnmatch", "fractions",
          "ftplib", "functools", "getopt", "gettext", "glob", "graphlib", "gzip", "hashlib",
          "heapq", "hmac", "html.parser", "http.client", "http.cookiejar", "http.server",
          "imaplib", "importlib", "inspect", "io", "ipaddress", "itertools", "json", "locale",
          "logging", "logging.handlers", "lzma", "mailbox", "mimetypes", "multiprocessing",
          "numbers", "operator", "optparse", "os", "pathlib", "pdb", "pickle", "pkgutil",
          "platform", "plistlib", "poplib", "pprint", "pstats", "pydoc", "queue", "random", "re",
          "reprlib", "sched", "secrets", "selectors", "shelve", "shlex", "shutil", "signal",
          "smtplib", "socket", "socketserver", "sqlite3", "ssl", "statistics", "string",
          "struct", "subprocess", "symtable", "sysconfig", "tarfile", "tempfile", "textwrap",
          "threading", "timeit", "tokenize", "trace", "traceback", "tracemalloc", "types",
          "typing", "unittest", "unittest.mock", "urllib.parse", "urllib.request", "uuid",
          "warnings", "wave", "weakref", "xml.dom.minidom", "xml.etree.ElementTree", "zipfile",
          "zipimport")
SOURCES = {"numpy": NUMPY, "torch": TORCH, "onnx": ONNX, "stdlib": STDLIB}
CALIB_SOURCE, TEST_SOURCE = "numpy", "stdlib"

_ROLE = re.compile(r":[a-z]+(?::[a-z]+)?:`~?([^`<]*?)(?:\s*<[^>]*>)?`")  # :func:`x` -> x
STOPWORDS = "a an and are as at be by for from if in is it of on or that the this to with"
_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
_ALLOWED = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ ,.;:'-()")


# --------------------------------------------------------------------------- corpus
def _docstrings(module_name: str) -> list[str]:
    """Docstrings of the module, its public members and their public methods (sorted names)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = importlib.import_module(module_name)
    except Exception:  # noqa: BLE001 - a module that does not import here is skipped
        return []
    docs = [inspect.getdoc(module) or ""]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in sorted(vars(module)):
            if name.startswith("_"):
                continue
            obj = getattr(module, name, None)
            if inspect.ismodule(obj) or not (callable(obj) or inspect.isclass(obj)):
                continue
            docs.append(inspect.getdoc(obj) or "")
            if inspect.isclass(obj):
                for attr in sorted(vars(obj)):
                    if not attr.startswith("_"):
                        docs.append(inspect.getdoc(getattr(obj, attr, None)) or "")
    if module_name == "onnx":
        from onnx import defs

        docs += [s.doc or "" for s in sorted(defs.get_all_schemas(), key=lambda s: s.name)]
    return docs


def sentences(doc: str) -> list[str]:
    """The prose sentences of one docstring (see the module docstring for the filter)."""
    out = []
    for para in re.split(r"\n\s*\n", doc):
        lines = [ln.strip() for ln in para.splitlines()]
        markup = (">>>", "...", "..", "|", "-", "*", "=")  # doctests, directives, lists, tables
        if not lines or any(ln.startswith(markup) for ln in lines):
            continue
        text = _ROLE.sub(r"\1", " ".join(lines)).replace("``", "").replace("`", "")
        for sent in _SPLIT.split(re.sub(r"\s+", " ", text)):
            words = sent.split()
            if (6 <= len(words) <= 40 and sent[0].isupper() and sent.endswith(".")
                    and sum(c in _ALLOWED for c in sent) >= 0.97 * len(sent)
                    and sum(c.isalpha() for c in sent) >= 0.75 * len(sent)):
                out.append(sent)
    return out


def corpus() -> list[tuple[str, str]]:
    """``(sentence, "source:module")`` pairs, deterministic order, each sentence once."""
    seen: set[str] = set()
    out = []
    for source, modules in SOURCES.items():
        for module_name in modules:
            for doc in dict.fromkeys(_docstrings(module_name)):
                for sent in sentences(doc):
                    if sent not in seen:
                        seen.add(sent)
                        out.append((sent, f"{source}:{module_name}"))
    return out


def split_corpus(pairs: list[tuple[str, str]]) -> dict[str, list[tuple[str, str]]]:
    """Seeded held-out sets: ``calib`` (numpy), ``test`` (stdlib), ``valid`` (any source);
    ``train`` is the rest."""
    rng = np.random.default_rng(0)
    index = {s: [i for i, (_, m) in enumerate(pairs) if m.startswith(s + ":")] for s in SOURCES}
    calib = rng.choice(index[CALIB_SOURCE], N_CALIB, replace=False)
    test = rng.choice(index[TEST_SOURCE], N_TEST, replace=False)
    rest = np.setdiff1d(np.arange(len(pairs)), np.concatenate([calib, test]))
    valid = rng.choice(rest, N_VALID, replace=False)
    train = np.setdiff1d(rest, valid)
    return {name: [pairs[i] for i in sorted(idx)]
            for name, idx in (("calib", calib), ("test", test), ("valid", valid), ("train", train))}


# --------------------------------------------------------------------------- tokenizer
def train_tokenizer(texts: list[str]) -> Tokenizer:
    """A lower-cased BPE ``tokenizers.Tokenizer`` (``VOCAB`` tokens, BERT normaliser and
    pre-tokeniser) trained on ``texts``, wrapping a sentence as ``[CLS] ... [SEP]``.

    BPE, not WordPiece: the ``tokenizers`` WordPiece trainer breaks ties between equally
    frequent merges differently from run to run; its BPE trainer gives the same vocabulary."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from tokenizers.trainers import BpeTrainer

    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(texts, BpeTrainer(vocab_size=VOCAB, special_tokens=list(SPECIALS),
                                              show_progress=False))
    if [tok.token_to_id(t) for t in SPECIALS] != list(range(len(SPECIALS))):
        raise RuntimeError("special tokens did not get the first ids")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", CLS), ("[SEP]", SEP)])
    tok.enable_truncation(SEQ)
    return tok


def encode(tok: Tokenizer, texts: list[str]) -> dict[str, np.ndarray]:
    """``input_ids`` and ``attention_mask``, int64 [N, SEQ], padded with ``[PAD]``."""
    ids = np.full((len(texts), SEQ), PAD, dtype=np.int64)
    mask = np.zeros((len(texts), SEQ), dtype=np.int64)
    for i, enc in enumerate(tok.encode_batch(texts)):
        ids[i, : len(enc.ids)] = enc.ids
        mask[i, : len(enc.ids)] = 1
    return {"input_ids": ids, "attention_mask": mask}


# --------------------------------------------------------------------------- model and training
def build_model() -> BertForMaskedLM:
    """The (untrained) ``transformers.BertForMaskedLM``; ``.bert`` is the encoder exported."""
    import torch
    from transformers import BertConfig, BertForMaskedLM

    config = BertConfig(
        vocab_size=VOCAB, hidden_size=HIDDEN, num_hidden_layers=4, num_attention_heads=4,
        intermediate_size=4 * HIDDEN, hidden_act="gelu", max_position_embeddings=SEQ,
        type_vocab_size=1, pad_token_id=PAD, hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1, tie_word_embeddings=True,
    )
    config._attn_implementation = "eager"  # explicit MatMul/Softmax attention in the export
    torch.manual_seed(0)
    return BertForMaskedLM(config)


def _batches(data: dict[str, np.ndarray], steps: int, gen: torch.Generator) -> list[np.ndarray]:
    """``steps`` index batches of ``BATCH`` sentences: a seeded shuffle per pass over the data,
    sorted by length within chunks of 50 batches (little padding), chunk batches shuffled."""
    import torch

    lengths = data["attention_mask"].sum(1)
    out: list[np.ndarray] = []
    chunk = 50 * BATCH
    while len(out) < steps:
        perm = torch.randperm(len(lengths), generator=gen).numpy()
        for c in range(0, len(perm) - chunk + 1, chunk):
            part = perm[c : c + chunk]
            part = part[np.argsort(lengths[part], kind="stable")]
            group = [part[i : i + BATCH] for i in range(0, chunk, BATCH)]
            order = torch.randperm(len(group), generator=gen).numpy()
            out += [group[j] for j in order]
    return out[:steps]


def _tensors(data: dict[str, np.ndarray], idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """``(input_ids, attention_mask)`` tensors for the batch ``idx``, cut to its longest row."""
    import torch

    width = int(data["attention_mask"][idx].sum(1).max())
    return (torch.from_numpy(data["input_ids"][idx, :width]),
            torch.from_numpy(data["attention_mask"][idx, :width]))


def _mask_tokens(ids: torch.Tensor, attn: torch.Tensor, gen: torch.Generator
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT masking: ``(corrupted ids, labels)``; 15% of the real, non-special tokens are
    targets (80% -> [MASK], 10% -> a random token, 10% kept); other labels are -100."""
    import torch

    special = (ids == CLS) | (ids == SEP) | (attn == 0)
    target = (torch.rand(ids.shape, generator=gen) < 0.15) & ~special
    labels = torch.where(target, ids, torch.full_like(ids, -100))
    roll = torch.rand(ids.shape, generator=gen)
    random_ids = torch.randint(len(SPECIALS), VOCAB, ids.shape, generator=gen)
    ids = torch.where(target & (roll < 0.8), torch.full_like(ids, MASK), ids)
    ids = torch.where(target & (roll >= 0.8) & (roll < 0.9), random_ids, ids)
    return ids, labels


def _mlm_loss(model: BertForMaskedLM, ids: torch.Tensor, attn: torch.Tensor,
              labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the masked-LM head on the target positions only."""
    from torch.nn import functional as F

    hidden = model.bert(input_ids=ids, attention_mask=attn).last_hidden_state
    target = labels != -100
    return F.cross_entropy(model.cls(hidden[target]), labels[target])


def mean_pool(hidden: torch.Tensor | np.ndarray, attn: torch.Tensor | np.ndarray
              ) -> torch.Tensor | np.ndarray:
    """Mean of the hidden states over the real tokens (``attn`` 1), torch or numpy."""
    weight = attn[..., None]
    if isinstance(weight, np.ndarray):
        weight = weight.astype(hidden.dtype)
    else:
        weight = weight.to(hidden.dtype)
    return (hidden * weight).sum(1) / weight.sum(1)


def mlm_eval(model: BertForMaskedLM, data: dict[str, np.ndarray]) -> float:
    """Mean masked-LM loss on ``data`` (fixed masking seed, eval mode)."""
    import torch

    gen = torch.Generator().manual_seed(1)
    model.eval()
    losses, counts = [], []
    with torch.no_grad():
        for i in range(0, len(data["input_ids"]), 64):
            ids, attn = _tensors(data, np.arange(i, min(i + 64, len(data["input_ids"]))))
            ids, labels = _mask_tokens(ids, attn, gen)
            n = int((labels != -100).sum())
            losses.append(float(_mlm_loss(model, ids, attn, labels)) * n)
            counts.append(n)
    return sum(losses) / sum(counts)


def train(train_data: dict[str, np.ndarray], valid: dict[str, np.ndarray], threads: int = 1,
          mlm_steps: int = MLM_STEPS, simcse_steps: int = SIMCSE_STEPS
          ) -> tuple[BertForMaskedLM, dict[str, float]]:
    """Masked-LM then SimCSE training (module docstring); returns ``(model, stats)``."""
    import torch
    from torch.nn import functional as F

    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    model = build_model()
    gen = torch.Generator().manual_seed(0)
    stats: dict[str, float] = {}
    t0 = time.process_time()

    no_decay = ("bias", "LayerNorm", "embeddings")
    params = list(model.named_parameters())
    opt = torch.optim.AdamW([
        {"params": [p for n, p in params if not any(k in n for k in no_decay)],
         "weight_decay": 0.01},
        {"params": [p for n, p in params if any(k in n for k in no_decay)], "weight_decay": 0.0},
    ], lr=MLM_LR)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=MLM_LR, total_steps=mlm_steps,
                                                pct_start=0.1)
    model.train()
    running = 0.0
    for step, idx in enumerate(_batches(train_data, mlm_steps, gen), 1):
        ids, attn = _tensors(train_data, idx)
        ids, labels = _mask_tokens(ids, attn, gen)
        loss = _mlm_loss(model, ids, attn, labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        running += float(loss.detach())
        if step % 100 == 0:
            print(f"mlm step {step}/{mlm_steps}: train loss {running / 100:.3f}, "
                  f"cpu {time.process_time() - t0:.0f}s", flush=True)
            running = 0.0
    stats["mlm_train_cpu_s"] = time.process_time() - t0
    stats["mlm_valid_loss"] = mlm_eval(model, valid)
    print(f"masked-LM loss on {len(valid['input_ids'])} held-out sentences: "
          f"{stats['mlm_valid_loss']:.3f}", flush=True)

    opt = torch.optim.AdamW(model.parameters(), lr=SIMCSE_LR, weight_decay=0.0)
    model.train()
    for step, idx in enumerate(_batches(train_data, simcse_steps, gen), 1):
        ids, attn = _tensors(train_data, idx)
        both_ids, both_attn = torch.cat([ids, ids]), torch.cat([attn, attn])
        hidden = model.bert(input_ids=both_ids, attention_mask=both_attn).last_hidden_state
        z = F.normalize(mean_pool(hidden, both_attn), dim=-1)
        a, b = z[: len(idx)], z[len(idx):]
        contrastive = F.cross_entropy(a @ b.T / 0.05, torch.arange(len(idx)))
        masked_ids, labels = _mask_tokens(ids, attn, gen)
        mlm = _mlm_loss(model, masked_ids, attn, labels)
        opt.zero_grad(set_to_none=True)
        (contrastive + mlm).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 50 == 0:
            print(f"simcse step {step}/{simcse_steps}: "
                  f"contrastive {float(contrastive.detach()):.3f}, "
                  f"masked-LM {float(mlm.detach()):.3f}, cpu {time.process_time() - t0:.0f}s",
                  flush=True)
    stats["train_cpu_s"] = time.process_time() - t0
    stats["final_mlm_valid_loss"] = mlm_eval(model, valid)
    return model.eval(), stats


# --------------------------------------------------------------------------- export and checks
def export(model: BertForMaskedLM, out: Path, opset: int = 17) -> Path:
    """Export ``model.bert`` (TorchScript exporter) to ``out`` and run the full ONNX checker."""
    import onnx
    import torch
    from torch import nn

    class Encoder(nn.Module):
        """``(input_ids, attention_mask) -> last_hidden_state``."""

        def __init__(self, bert: nn.Module) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    out.parent.mkdir(parents=True, exist_ok=True)
    example = (torch.full((1, SEQ), PAD, dtype=torch.int64), torch.zeros(1, SEQ, dtype=torch.int64))
    example[0][0, :3] = torch.tensor([CLS, len(SPECIALS), SEP])
    example[1][0, :3] = 1
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Encoder(model.bert).eval(), example, str(out), dynamo=False, opset_version=opset,
            input_names=["input_ids", "attention_mask"], output_names=["last_hidden_state"],
        )
    proto = onnx.load(str(out))
    proto.ir_version = min(proto.ir_version, 10)
    onnx.save(proto, str(out), save_as_external_data=False)
    onnx.checker.check_model(str(out), full_check=True)
    return out


def run_onnx(path: Path, data: dict[str, np.ndarray]) -> np.ndarray:
    """``last_hidden_state`` [N, SEQ, HIDDEN] from onnxruntime, one row at a time (batch 1)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return np.concatenate([
        sess.run(["last_hidden_state"], {k: v[i : i + 1] for k, v in data.items()})[0]
        for i in range(len(data["input_ids"]))
    ])


def check_torch_match(model: BertForMaskedLM, path: Path, data: dict[str, np.ndarray]) -> float:
    """Max abs difference of onnxruntime's ``last_hidden_state`` to torch's on ``data``."""
    import torch

    with torch.no_grad():
        ref = model.bert(input_ids=torch.from_numpy(data["input_ids"]),
                         attention_mask=torch.from_numpy(data["attention_mask"])).last_hidden_state
    return float(np.abs(run_onnx(path, data) - ref.numpy()).max())


def _content_words(sentence: str) -> set[str]:
    """Lower-cased words of ``sentence`` without punctuation and the commonest function words."""
    words = {w.strip(".,;:()'\"").lower() for w in sentence.split()}
    return words - set(STOPWORDS.split()) - {""}


def neighbour_sanity(emb: np.ndarray, texts: list[str], modules: list[str]) -> dict[str, float]:
    """Nearest-neighbour structure of the sentence embeddings ``emb`` [N, H] (cosine) of
    ``texts``: the mean cosine to the nearest neighbour and to the other sentences; the content
    words the nearest neighbour shares (Jaccard) against the mean over all other sentences; how
    often the nearest neighbour comes from the same module, against chance."""
    z = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    cos = z @ z.T
    np.fill_diagonal(cos, -np.inf)
    nn_idx = cos.argmax(1)
    n = len(z)
    others = ~np.eye(n, dtype=bool)
    words = [_content_words(t) for t in texts]
    jaccard = np.array([[len(a & b) / max(len(a | b), 1) for b in words] for a in words])
    mods = np.array(modules)
    _, counts = np.unique(mods, return_counts=True)
    return {
        "nn_cosine": float(cos[np.arange(n), nn_idx].mean()),
        "mean_cosine": float(cos[others].mean()),
        "nn_jaccard": float(jaccard[np.arange(n), nn_idx].mean()),
        "mean_jaccard": float(jaccard[others].mean()),
        "same_module_nn": float((mods[nn_idx] == mods).mean()),
        "same_module_chance": float((counts * (counts - 1)).sum() / (n * (n - 1))),
    }


def main(argv: list[str] | None = None) -> None:
    """Build (or reuse) the encoder, write the calibration/test .npz files, run the checks."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("out/text_encoder.onnx"))
    parser.add_argument("--calib", type=Path, default=Path("out/text_calib.npz"),
                        help=f"output .npz: {N_CALIB} {CALIB_SOURCE} docstring sentences")
    parser.add_argument("--test", type=Path, default=Path("out/text_test.npz"),
                        help=f"output .npz: {N_TEST} {TEST_SOURCE} docstring sentences")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads for training")
    parser.add_argument("--force", action="store_true", help="retrain even if --out exists")
    args = parser.parse_args(argv)

    from tokenizers import Tokenizer

    t0 = time.perf_counter()
    pairs = corpus()
    parts = split_corpus(pairs)
    print(f"corpus: {len(pairs)} sentences "
          + ", ".join(f"{s} {sum(m.startswith(s + ':') for _, m in pairs)}" for s in SOURCES)
          + f" ({time.perf_counter() - t0:.1f}s)", flush=True)
    tok_path = Path(str(args.out) + ".tokenizer.json")
    if args.force or not (args.out.exists() and tok_path.exists()):
        tok = train_tokenizer([s for s, _ in parts["train"]])
        data = {k: encode(tok, [s for s, _ in v]) for k, v in parts.items()}
        model, stats = train(data["train"], data["valid"], args.threads)
        print(f"training: {stats['train_cpu_s']:.0f}s cpu "
              f"(masked-LM {stats['mlm_train_cpu_s']:.0f}s); "
              f"masked-LM held-out loss {stats['mlm_valid_loss']:.3f} after MLM, "
              f"{stats['final_mlm_valid_loss']:.3f} after SimCSE")
        export(model, args.out)
        tok.save(str(tok_path))
        diff = check_torch_match(model, args.out, {k: v[:16] for k, v in data["test"].items()})
        print(f"wrote {args.out} ({args.out.stat().st_size} bytes); onnxruntime vs torch max abs "
              f"diff {diff:.2e}")
        if diff > TOLERANCE:
            raise SystemExit(f"{args.out}: onnxruntime differs from torch ({diff:.2e})")
    else:
        tok = Tokenizer.from_file(str(tok_path))
        data = {k: encode(tok, [s for s, _ in parts[k]]) for k in ("calib", "test")}
        print(f"{args.out} exists: training skipped")
    for path, name in ((args.calib, "calib"), (args.test, "test")):
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, **data[name])
    print(f"wrote {args.calib} ({N_CALIB} {CALIB_SOURCE} sentences), "
          f"{args.test} ({N_TEST} {TEST_SOURCE} sentences)")
    hidden = run_onnx(args.out, data["test"])
    sanity = neighbour_sanity(mean_pool(hidden, data["test"]["attention_mask"]),
                              [s for s, _ in parts["test"]], [m for _, m in parts["test"]])
    print("test embeddings (mean-pooled, onnxruntime): cosine to the nearest neighbour "
          f"{sanity['nn_cosine']:.3f} vs to the other sentences {sanity['mean_cosine']:.3f}; "
          f"content words shared with it (Jaccard) {sanity['nn_jaccard']:.3f} vs "
          f"{sanity['mean_jaccard']:.3f}; nearest neighbour from the same module "
          f"{sanity['same_module_nn']:.1%} (chance {sanity['same_module_chance']:.1%})")
    print(f"total {time.perf_counter() - t0:.0f}s")


if __name__ == "__main__":
    main()
