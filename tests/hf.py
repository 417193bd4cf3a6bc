"""Randomly initialised Hugging Face transformers exported by torch, for structure and
recovery tests (skipped where torch or transformers is missing)."""

from __future__ import annotations

import warnings

import onnx
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

SEQ, HIDDEN, HEADS, HEAD_DIM = 16, 64, 4, 16


def config(name: str):
    """``(model, its heads groups' width, its FFN groups' width)`` for a model family."""
    t = transformers
    if name == "bert":
        return t.BertModel(t.BertConfig(vocab_size=100, hidden_size=HIDDEN, num_hidden_layers=2,
                                        num_attention_heads=HEADS, intermediate_size=128,
                                        max_position_embeddings=64)), 4, 128
    if name == "distilbert":
        return t.DistilBertModel(t.DistilBertConfig(vocab_size=100, dim=HIDDEN, n_layers=2,
                                                    n_heads=HEADS, hidden_dim=128,
                                                    max_position_embeddings=64)), 4, 128
    if name == "vit":
        return t.ViTModel(t.ViTConfig(image_size=28, patch_size=7, num_channels=1,
                                      hidden_size=HIDDEN, num_hidden_layers=2,
                                      num_attention_heads=HEADS, intermediate_size=128)), 4, 128
    if name == "gpt2":
        return t.GPT2Model(t.GPT2Config(vocab_size=100, n_embd=HIDDEN, n_layer=2, n_head=HEADS,
                                        n_positions=64, bos_token_id=0, eos_token_id=0,
                                        attn_implementation="eager")), 4, 256
    return t.LlamaModel(t.LlamaConfig(vocab_size=100, hidden_size=HIDDEN, num_hidden_layers=2,
                                      num_attention_heads=HEADS, num_key_value_heads=2,
                                      intermediate_size=96, max_position_embeddings=64,
                                      attn_implementation="eager")), 2, 96


class _Encoder(torch.nn.Module):
    def __init__(self, model, keys: tuple[str, ...]):
        super().__init__()
        self.model, self.keys = model, keys

    def forward(self, *args):
        return self.model(**dict(zip(self.keys, args)), return_dict=False)[0]


def export(name: str, dynamo: bool, path) -> onnx.ModelProto:
    """The model exported by one torch exporter, external data folded into the proto."""
    torch.manual_seed(0)
    model, _, _ = config(name)
    model.eval()
    if name == "vit":
        args, keys = (torch.randn(1, 1, 28, 28),), ("pixel_values",)
    else:
        args = (torch.randint(0, 100, (1, SEQ)), torch.ones(1, SEQ, dtype=torch.long))
        keys = ("input_ids", "attention_mask")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_Encoder(model, keys), args, str(path), dynamo=dynamo,
                          opset_version=18 if dynamo else 17, input_names=list(keys))
    return onnx.load(str(path))
