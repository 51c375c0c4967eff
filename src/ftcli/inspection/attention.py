"""Attention weights for a text: the model's own `output_attentions`, from eager attention (the fused
kernels, sdpa and flash, never form the weights), in float32 on the CPU.

Every model gives `attentions`: self-attention over the text's tokens (an encoder-decoder's encoder).
An encoder-decoder given a `decoder_text` also gives the decoder's self-attention over that text's
tokens (after the decoder's start token) and its cross-attention to the text's tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ftcli.errors import UserError
from ftcli.inspection.target import Target, resolve_target
from ftcli.modeling.load import load_model, load_tokenizer
from ftcli.modeling.precision import Precision

# Float32 weights on the CPU, eager attention: the one kernel that returns its softmax.
_EAGER = Precision(device="cpu", dtype="float32", mixed="fp32", attention="eager")


@dataclass
class Attention:
    """One kind of attention: weights[layer][head][query][key] over these tokens."""

    queries: list[str]  # the tokenizer's tokens (special tokens included)
    keys: list[str]
    query_labels: list[str]  # the same, readable: "fox" for "Ġfox" or "▁fox"
    key_labels: list[str]
    weights: Any  # torch.Tensor [layers, heads, queries, keys]

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.weights.shape[0]), int(self.weights.shape[1])  # layers, heads


@dataclass
class AttentionResult:
    model: str
    task: str
    attentions: Attention  # self-attention over the text (an encoder-decoder's encoder)
    decoder: Attention | None = None  # encoder-decoder with a decoder text: decoder self-attention
    cross: Attention | None = None  # ... and the decoder's tokens attending to the text's
    parts: dict = field(init=False)

    def __post_init__(self):
        names = ("encoder", "decoder", "cross") if self.decoder is not None else ("attentions",)
        found = [self.attentions, self.decoder, self.cross]
        self.parts = {name: part for name, part in zip(names, found)}

    def as_json(self, layers: list[int] | None = None, heads: list[int] | None = None,
                rows: list[int] | None = None) -> dict:
        """{"tokens", "attentions"} (plus encoder/decoder/cross ones for an encoder-decoder with a
        decoder text), nested lists [layer][head][query][key]; `layers`/`heads` keep only those,
        `rows` only those query rows of `attentions` (the others' rows stay whole)."""
        out = {"model": self.model, "task": self.task, "tokens": self.attentions.queries,
               "attentions": _nested(self.attentions.weights, layers, heads, rows)}
        if layers is not None:
            out["layers"] = layers
        if heads is not None:
            out["heads"] = heads
        if rows is not None:
            out["rows"] = rows
        if self.decoder is not None:
            out.update(encoder_tokens=self.attentions.queries, encoder_attentions=out["attentions"],
                       decoder_tokens=self.decoder.queries,
                       decoder_attentions=_nested(self.decoder.weights, layers, heads),
                       cross_attentions=_nested(self.cross.weights, layers, heads))
        return out


def _nested(weights, layers, heads, rows=None) -> list:
    if layers is not None:
        weights = weights[layers]
    if heads is not None:
        weights = weights[:, heads]
    if rows is not None:
        weights = weights[:, :, rows]
    return weights.tolist()


def attention(text: str, target: str | Path | None = None, base: bool = False, model: str | None = None,
              decoder_text: str | None = None) -> AttentionResult:
    """Attention weights for `text` from a run (`target`: run dir, recipe file, or None for the latest
    finished run here; `base`: its base model) or any `model` directory or hub id."""
    if not text:
        raise UserError("the text is empty: give the words to look at")
    found = resolve_target(target, base=base, model=model)
    if decoder_text is not None and found.task != "seq2seq":
        raise UserError(f"--decoder-text is for encoder-decoder models; {found.name} is {found.task}")
    weights, tokenizer = _load(found)
    return attention_of(weights, tokenizer, text, decoder_text, found.name, found.task)


def _load(found: Target):
    tokenizer = load_tokenizer(found.tokenizer)
    weights = load_model(found.task, found.source, label2id=found.label2id, tokenizer=tokenizer,
                         seed=found.seed, precision=_EAGER)
    return weights.float().eval(), tokenizer


def attention_of(model, tokenizer, text: str, decoder_text: str | None = None, name: str = "",
                 task: str = "") -> AttentionResult:
    """The weights of a loaded model (eager attention) for `text`, over the tokens its tokenizer gives
    (special tokens included)."""
    import torch

    encoded = tokenizer(text, return_tensors="pt")
    ids, mask = encoded["input_ids"], encoded["attention_mask"]
    seq2seq = bool(getattr(model.config, "is_encoder_decoder", False))
    with torch.no_grad():
        if not seq2seq:
            main = _weights(model(input_ids=ids, attention_mask=mask, output_attentions=True), "attentions", model)
            return AttentionResult(name, task, _part(tokenizer, ids, ids, main))
        if decoder_text is None:  # the encoder alone: no decoder input needed
            output = model.get_encoder()(input_ids=ids, attention_mask=mask, output_attentions=True)
            return AttentionResult(name, task, _part(tokenizer, ids, ids, _weights(output, "attentions", model)))
        decoder_ids = _decoder_ids(model, tokenizer, decoder_text)
        output = model(input_ids=ids, attention_mask=mask, decoder_input_ids=decoder_ids, output_attentions=True)
    return AttentionResult(name, task, _part(tokenizer, ids, ids, _weights(output, "encoder_attentions", model)),
                           decoder=_part(tokenizer, decoder_ids, decoder_ids,
                                         _weights(output, "decoder_attentions", model)),
                           cross=_part(tokenizer, decoder_ids, ids, _weights(output, "cross_attentions", model)))


def _decoder_ids(model, tokenizer, decoder_text: str):
    """The decoder's input as in training (labels shifted right): its start token, then the text's
    tokens without the end-of-sequence token the tokenizer would append."""
    import torch

    start = model.config.decoder_start_token_id
    if start is None:
        raise UserError(f"{type(model).__name__} has no decoder_start_token_id in its config")
    ids = tokenizer(decoder_text, add_special_tokens=False)["input_ids"]
    return torch.tensor([[start] + list(ids)])


def _weights(output, key: str, model):
    """[layers, heads, queries, keys] from the model's output; a UserError when it gives none."""
    import torch

    found = getattr(output, key, None)
    if not found or any(layer is None for layer in found):
        raise UserError(f"{type(model).__name__} does not return attention weights (no `{key}` from "
                        "output_attentions=True with eager attention)",
                        hint="attention maps need a transformer with softmax attention (not, e.g., a "
                             "state-space model such as Mamba)")
    return torch.stack([layer[0] for layer in found]).float()


def _part(tokenizer, query_ids, key_ids, weights) -> Attention:
    queries = tokenizer.convert_ids_to_tokens(query_ids[0].tolist())
    keys = tokenizer.convert_ids_to_tokens(key_ids[0].tolist())
    return Attention(queries, keys, _labels(tokenizer, queries), _labels(tokenizer, keys), weights)


def _labels(tokenizer, tokens: list[str]) -> list[str]:
    """Each token as a reader sees it: "Ġfox" (byte-level BPE) or "▁fox" (SentencePiece) -> "fox";
    a token that is only whitespace keeps a visible form ("␣", "\\n")."""
    labels = []
    for token in tokens:
        text = tokenizer.convert_tokens_to_string([token]) if token is not None else ""
        visible = text.replace(" ", "\u2423").replace("\n", "\\n").replace("\t", "\\t")  # ␣
        labels.append(text.strip() or visible or str(token))
    return labels

