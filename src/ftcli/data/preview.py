"""`ftcli data preview`: what training will actually see — formatted, tokenized examples with the
tokens the loss ignores marked, and the length distribution — before anyone waits for a long run.

`describe` turns a run's prepared examples into a `DataPreview`; `render` prints it. Getting the
examples (the same cached path as training, so a preview also warms the cache) is
`ftcli.training.preflight.preview_data`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ftcli.data.tokenize import IGNORE_INDEX
from ftcli.data.tokenize_pairs import preference_example_length

IGNORED_OPEN, IGNORED_CLOSE = "⟦", "⟧"  # around text the loss ignores (label -100)


@dataclass
class ExamplePreview:
    segments: list[tuple[str, bool]]  # (text, trained?) in order; one segment for unlabelled text
    tokens: int
    trained_tokens: int | None = None  # None: the label is a class, not tokens
    label: str | None = None  # classification label, or seq2seq target text


@dataclass
class DataPreview:
    task: str
    mode: str
    format: str
    train_rows: int
    eval_rows: int
    examples: list[ExamplePreview]
    lengths: list[int]  # tokens per training example
    max_length: int
    truncated: int
    cleaning: dict = field(default_factory=dict)


def _runs(ids: list[int], labels: list[int]) -> list[tuple[list[int], bool]]:
    """Consecutive tokens grouped by whether the loss sees them."""
    groups: list[tuple[list[int], bool]] = []
    for token, label in zip(ids, labels):
        trained = label != IGNORE_INDEX
        if groups and groups[-1][1] == trained:
            groups[-1][0].append(token)
        else:
            groups.append(([token], trained))
    return groups


def _example(example: dict, tokenizer, mode: str, id2label: dict | None) -> ExamplePreview:
    if mode == "preference" and "completion_ids" in example:  # unpaired (KTO): one reply, good or bad
        completion = example["completion_ids"]
        return ExamplePreview([(tokenizer.decode(example["prompt_ids"]), False), (tokenizer.decode(completion), True)],
                              preference_example_length(example), len(completion),
                              label="desirable" if example["label"] else "undesirable")
    if mode == "preference":  # the prompt once, then each reply as it is scored after it
        chosen, rejected = example["chosen_ids"], example["rejected_ids"]
        return ExamplePreview([(tokenizer.decode(example["prompt_ids"]), False), (tokenizer.decode(chosen), True)],
                              preference_example_length(example), len(chosen) + len(rejected),
                              label=tokenizer.decode(rejected))

    # masked-lm training examples carry no labels (the collator hides tokens): every token is learned.
    ids = example["input_ids"]
    labels = example.get("labels", ids)
    if mode == "classification":
        return ExamplePreview([(tokenizer.decode(ids), True)], len(ids), label=id2label[labels])
    if mode == "seq2seq":  # labels are the decoder's tokens, not aligned with the input
        target = tokenizer.decode([t for t in labels if t != IGNORE_INDEX])
        return ExamplePreview([(tokenizer.decode(ids), True)], len(ids), sum(t != IGNORE_INDEX for t in labels),
                              label=target)
    segments = [(tokenizer.decode(run), trained) for run, trained in _runs(ids, labels)]
    return ExamplePreview(segments, len(ids), sum(label != IGNORE_INDEX for label in labels))


def describe(recipe, splits, tokenizer, label2id: dict | None, train_set, n: int = 3) -> DataPreview:
    """The preview of a run's prepared training examples: the first `n` shown, every length counted."""
    id2label = {i: label for label, i in (label2id or {}).items()}
    mode = splits.mode
    return DataPreview(
        task=recipe.task, mode=mode, format=splits.format, train_rows=len(splits.train), eval_rows=len(splits.eval),
        examples=[_example(e, tokenizer, mode, id2label) for e in train_set.examples[:n]],
        lengths=[example_length(e) for e in train_set.examples], max_length=recipe.data.max_length,
        truncated=train_set.truncated, cleaning=splits.cleaning or {})


def example_length(example: dict) -> int:
    """Tokens in a tokenized training example (a preference pair: its prompt and longer reply)."""
    if "prompt_ids" in example:  # a pair: its prompt and longer reply
        return preference_example_length(example)
    return len(example["input_ids"])


def _percentile(ordered: list[int], q: float) -> int:
    return ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1) + 0.5))]


def length_summary(lengths: list[int], max_length: int, bins: int = 8, width: int = 40) -> list[str]:
    """Percentiles and a text histogram of example lengths in tokens."""
    if not lengths:
        return ["no examples"]
    ordered = sorted(lengths)
    lines = [f"tokens per example: n={len(ordered)}  min={ordered[0]}  p50={_percentile(ordered, .5)}  "
             f"p90={_percentile(ordered, .9)}  p99={_percentile(ordered, .99)}  max={ordered[-1]}  "
             f"mean={sum(ordered) / len(ordered):.1f}  (max_length {max_length})"]
    low, high = ordered[0], ordered[-1]
    step = max(1, -(-(high - low + 1) // bins))
    counts = [0] * (-(-(high - low + 1) // step))
    for value in ordered:
        counts[(value - low) // step] += 1
    for i, count in enumerate(counts):
        start = low + i * step
        bar = "█" * max(1 if count else 0, round(width * count / max(counts)))
        lines.append(f"  {start:>6}-{start + step - 1:<6} {count:>7}  {bar}")
    return lines


def render(preview: DataPreview) -> str:
    lines = [f"task {preview.task} ({preview.format}): {preview.train_rows} training rows, "
             f"{preview.eval_rows} eval rows"]
    for split, counts in preview.cleaning.items():
        removed = {k: v for k, v in counts.items() if v} if isinstance(counts, dict) else {}
        if removed:
            lines.append(f"cleaning ({split}): " + ", ".join(f"{k} {v}" for k, v in removed.items()))
    if preview.mode == "preference":
        lines.append(f"the prompt inside {IGNORED_OPEN} {IGNORED_CLOSE} is context; the chosen and the rejected "
                     "reply after it are scored")
    elif preview.mode not in ("classification", "seq2seq"):
        lines.append(f"text inside {IGNORED_OPEN} {IGNORED_CLOSE} is ignored by the loss (label -100); "
                     "the rest is trained on")
    for number, example in enumerate(preview.examples, start=1):
        trained = "" if example.trained_tokens is None else f", {example.trained_tokens} trained"
        lines.append(f"\n--- example {number} ({example.tokens} tokens{trained}) ---")
        if preview.mode == "classification":
            lines += [example.segments[0][0], f"label: {example.label}"]
        elif preview.mode == "seq2seq":
            lines += [f"source: {example.segments[0][0]}", f"target: {example.label}"]
        elif preview.mode == "preference" and example.label in ("desirable", "undesirable"):
            (prompt, _), (completion, _) = example.segments
            lines += [f"{IGNORED_OPEN}{prompt}{IGNORED_CLOSE}", f"{example.label}: {completion}"]
        elif preview.mode == "preference":
            (prompt, _), (chosen, _) = example.segments
            lines += [f"{IGNORED_OPEN}{prompt}{IGNORED_CLOSE}", f"chosen:   {chosen}", f"rejected: {example.label}"]
        else:
            lines.append("".join(text if trained else f"{IGNORED_OPEN}{text}{IGNORED_CLOSE}"
                                 for text, trained in example.segments))
    lines.append("")
    lines += length_summary(preview.lengths, preview.max_length)
    if preview.truncated:
        lines.append(f"{preview.truncated} examples are longer than max_length and will be truncated")
    return "\n".join(lines)
