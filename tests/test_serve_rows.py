"""What a served answer sends while it is generated (`serving.rows.Row`): never text that the finished
answer (decoded, cut at the first stop string, stripped, as `ftcli generate` gives it) does not start
with, and all of it in the end. A fake tokenizer: each token id is one piece of text."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ftcli.generation.batched import apply_stop
from ftcli.serving.rows import Row

PIECES = [" ", "  ", "a", "b", "ab", "\n", "END", "E", "ND", "x y", "\ufffd"]
EOS = len(PIECES)


def decode(ids):
    return "".join(PIECES[i] for i in ids)


def run_row(tokens, stops, max_tokens=100):
    row, sent = Row(decode, stops, max_tokens, {EOS}), ""
    for t in tokens:
        delta = row.push(t)
        assert (sent + delta) == row.sent
        sent += delta
        if row.done:
            break
    sent += row.end()
    return row, sent


@given(st.lists(st.integers(0, EOS), max_size=30), st.sampled_from([[], ["END"], ["b\n", "xx"], ["a"]]))
def test_streamed_pieces_add_up_to_generates_answer(tokens, stops):
    used = tokens[:tokens.index(EOS)] if EOS in tokens else tokens
    row, sent = run_row(tokens, stops)
    cut = apply_stop(decode(used), stops)
    if not any(s in decode(used) for s in stops):
        assert sent == decode(used).strip()
    else:
        assert sent == cut.strip() and row.finish_reason == "stop"


@pytest.mark.parametrize("tokens, stops, max_tokens, text, reason, generated", [
    ([2, 3, EOS, 2], [], 10, "ab", "stop", 3),  # the end token ends it, counted
    ([2, 3, 2, 3], [], 2, "ab", "length", 2),
    ([2, 7, 8, 2], ["END"], 10, "a", "stop", 3),  # a stop string split over two tokens
    ([0, 2, 0, 0], [], 4, "a", "length", 4),  # leading and trailing whitespace stripped
])
def test_finish_reasons_and_counts(tokens, stops, max_tokens, text, reason, generated):
    row, sent = run_row(tokens, stops, max_tokens)
    assert (sent, row.finish_reason, row.generated) == (text, reason, generated)


def test_text_that_may_begin_a_stop_string_is_held_back():
    row = Row(decode, ["END"], 10, {EOS})
    assert row.push(2) == ""  # the last len("END") - 1 characters are held back
    assert row.push(3) == ""
    assert row.push(2) == "a"
    assert row.push(7) == "b"  # "aE" held: it may start "END"
    assert row.push(8) == "a"  # "END": the held "a" is sent, the stop string never
    assert row.done and row.sent == "aba"
