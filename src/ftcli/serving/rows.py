"""One answer being generated (a row of a batch): its tokens, its text so far, and how much of that
text can be sent to the client yet.

The finished text is exactly `ftcli generate`'s: the tokens decoded without special tokens, cut at the
first stop string, stripped. While generating, a row sends only text that is certain to be a prefix
of that: leading whitespace dropped, trailing whitespace held back (the strip may remove it), the last
(longest stop - 1) characters held back (they may begin a stop string), and an unfinished UTF-8
character (decoded as U+FFFD) held back. So the streamed pieces add up to the non-streamed text.
"""

from __future__ import annotations

from ftcli.generation.batched import cut_at_stop

REPLACEMENT = "\ufffd"


class Row:
    def __init__(self, decode, stops: list[str], max_tokens: int, eos_ids: set[int]):
        self.decode, self.stops, self.max_tokens, self.eos_ids = decode, [s for s in stops if s], max_tokens, eos_ids
        self.hold = max((len(s) for s in self.stops), default=1) - 1
        self.tokens: list[int] = []
        self.generated = 0  # tokens the model produced for this row, its end token included
        self.sent = ""
        self.finish_reason: str | None = None

    @property
    def done(self) -> bool:
        return self.finish_reason is not None

    def push(self, token: int) -> str:
        """Take the row's next token; returns the text that can be sent now ("" if none)."""
        self.generated += 1
        if token in self.eos_ids:
            return self._finish("stop", self.decode(self.tokens))
        self.tokens.append(token)
        text = self.decode(self.tokens)
        cut = cut_at_stop(text, self.stops)
        if cut is not None:
            return self._finish("stop", text[:cut])
        if self.generated >= self.max_tokens:
            return self._finish("length", text)
        visible = text.lstrip()
        visible = visible[:max(len(visible) - self.hold, 0)]
        if REPLACEMENT in visible:
            visible = visible[:visible.index(REPLACEMENT)]
        return self._send(visible.rstrip())

    def end(self, reason: str = "length") -> str:
        """Finish a row the batch ended before it did (what is left to send)."""
        return "" if self.done else self._finish(reason, self.decode(self.tokens))

    def _finish(self, reason: str, text: str) -> str:
        self.finish_reason = reason
        return self._send(text.strip(), final=True)

    def _send(self, visible: str, final: bool = False) -> str:
        if len(visible) <= len(self.sent) or not visible.startswith(self.sent):
            # Decoding more tokens changed earlier text (rare): what was sent stays; the rest follows.
            if final and len(visible) > len(self.sent):
                delta = visible[len(self.sent):]
                self.sent += delta
                return delta
            return ""
        delta = visible[len(self.sent):]
        self.sent = visible
        return delta
