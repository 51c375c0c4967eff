"""The batching engine: one worker thread owns the model; requests wait in a bounded queue; the worker
takes whatever is waiting (up to `max_batch` rows), runs one left-padded `model.generate` over it, and
hands each row's new text to its request's asyncio queue as every step comes out.

* Left-padded batches with an attention mask (generation's own `padded_inputs`), so a greedy answer is
  token for token what `ftcli generate` gives, whatever else shares its batch.
* A stopping criterion sees each step's tokens for the whole batch: it feeds every row (`rows.Row`),
  ends a row at its own `max_tokens`, stop string or end token, drops the rows of a request whose
  client went away, and ends the batch when every row is done.
* Only requests that decode alike share a batch: greedy with greedy, sampling with the same
  temperature / top_p. A request with a `seed` that samples runs in a batch of its own (its `n`
  answers together) after `set_seed(seed)`, exactly as `ftcli generate --seed` runs: the same
  request gives the same answers. Unseeded sampled requests share batches and the global generator.
* A batch in progress is not joined by later arrivals: they wait for the next one.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from ftcli.generation.batched import generate_kwargs, padded_inputs
from ftcli.generation.prompting import _sampling
from ftcli.progress import log
from ftcli.recipe import GenerateSection
from ftcli.serving.api_errors import ApiError
from ftcli.serving.rows import Row


@dataclass
class Job:
    """One request: a row of prompt ids per answer (choice), decoded as `settings` say. Events on
    `events`: ("delta", choice, text), ("done", choice, finish_reason, tokens), ("error", ApiError)."""

    rows: list[list[int]]
    settings: GenerateSection
    seed: int | None
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    cancelled: bool = False

    def key(self) -> tuple:
        s = self.settings
        if _sampling(s):
            return ("sample", s.temperature, s.top_p, s.top_k, s.repetition_penalty)
        return ("greedy", s.repetition_penalty)

    def isolated(self) -> bool:
        return self.seed is not None and _sampling(self.settings)

    def send(self, *event) -> None:
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, event)
        except RuntimeError:  # the event loop is gone (shutting down)
            pass


def _eos_ids(model) -> set[int]:
    """The end tokens `generate` stops a row at (the model's generation config's, as `ftcli generate`)."""
    eos = model.generation_config.eos_token_id
    return set(eos if isinstance(eos, list) else [] if eos is None else [eos])


class Engine:
    def __init__(self, model, tokenizer, max_batch: int = 16, max_queue: int = 64, batch_wait_s: float = 0.005,
                 regroup_wait_s: float = 0.1):
        self.model, self.tokenizer = model, tokenizer
        self.max_batch, self.max_queue = max_batch, max_queue
        self.batch_wait_s, self.regroup_wait_s = batch_wait_s, regroup_wait_s
        self._last_rows = 1  # the last batch's size: how many of its clients may come back together
        self.eos_ids = _eos_ids(model)
        self._waiting: deque[Job] = deque()
        self._running = 0
        self._cond = threading.Condition()
        self._closed = False
        self.stats = {"requests": 0, "batches": 0, "rows": 0, "max_batch_rows": 0, "tokens": 0, "rejected": 0,
                      "cancelled": 0}
        self._thread = threading.Thread(target=self._work, name="ftcli-serve-engine", daemon=True)
        self._thread.start()

    # --- the event loop's side -----------------------------------------------------------------------

    def submit(self, job: Job) -> None:
        """Queue a job, or refuse it (503) when the queue is full."""
        with self._cond:
            if self._closed:
                raise ApiError(503, "the server is shutting down", type="server_error", code="shutting_down")
            if len(self._waiting) + self._running >= self.max_queue:
                self.stats["rejected"] += 1
                raise ApiError(503, f"the server is busy: {self.max_queue} requests are queued or running; "
                               "retry shortly", type="server_error", code="queue_full", headers={"Retry-After": "1"})
            self._waiting.append(job)
            self.stats["requests"] += 1
            self._cond.notify()

    def load(self) -> dict:
        with self._cond:
            return {"queued": len(self._waiting), "running": self._running, **self.stats}

    def close(self) -> None:
        with self._cond:
            self._closed = True
            for job in self._waiting:
                job.send("error", ApiError(503, "the server is shutting down", type="server_error"))
            self._waiting.clear()
            self._cond.notify_all()
        self._stop_batch = True
        self._thread.join(timeout=30)

    # --- the worker's side ---------------------------------------------------------------------------

    _stop_batch = False

    def _take(self) -> list[Job]:
        """The first waiting job and every later one that decodes alike, up to max_batch rows."""
        first = self._waiting.popleft()
        batch, rows, kept = [first], len(first.rows), deque()
        while self._waiting and not first.isolated():
            job = self._waiting.popleft()
            if job.key() == first.key() and not job.isolated() and rows + len(job.rows) <= self.max_batch:
                batch.append(job)
                rows += len(job.rows)
            else:
                kept.append(job)
        self._waiting.extendleft(reversed(kept))
        gone = [j for j in batch if j.cancelled]  # left while waiting: counted as rows dropped, never run
        self.stats["cancelled"] += sum(len(j.rows) for j in gone)
        return [j for j in batch if not j.cancelled]

    def _gather(self) -> None:
        """Wait a moment for requests arriving together (`batch_wait_s`). When the last batch had k rows,
        its k clients tend to send their next requests together as their answers arrive: wait up to
        `regroup_wait_s` for as many rows, so that they are not split into a batch of the first few
        and a batch of the rest. Called with the lock held."""
        start = time.monotonic()
        rows = lambda: sum(len(j.rows) for j in self._waiting)  # noqa: E731
        self._wait_until(start + self.batch_wait_s, lambda: rows() >= self.max_batch)
        target = min(self._last_rows, self.max_batch)
        self._wait_until(start + self.regroup_wait_s, lambda: rows() >= target)

    def _wait_until(self, deadline: float, enough) -> None:
        while not self._closed and not enough():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._cond.wait(timeout=left)

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._waiting and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
            with self._cond:
                self._gather()
                if not self._waiting:
                    continue
                batch = self._take()
                self._running = len(batch)
                self._last_rows = max(sum(len(j.rows) for j in batch), 1)
            try:
                if batch:
                    self._generate(batch)
            except Exception as exc:  # a failed batch fails its requests, never the server
                log(f"serve: generation failed: {type(exc).__name__}: {exc}")
                for job in batch:
                    job.send("error", ApiError(500, f"generation failed: {type(exc).__name__}", type="server_error"))
            finally:
                with self._cond:
                    self._running = 0

    def _generate(self, batch: list[Job]) -> None:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        decode = lambda ids: self.tokenizer.decode(ids, skip_special_tokens=True)  # noqa: E731
        rows = [(job, choice, Row(decode, job.settings.stop, job.settings.max_new_tokens, self.eos_ids))
                for job in batch for choice in range(len(job.rows))]
        ids = [ids for job in batch for ids in job.rows]
        settings = batch[0].settings.model_copy(update={
            "max_new_tokens": max(job.settings.max_new_tokens for job in batch), "stop": [],
            "num_return_sequences": 1})
        engine = self

        class Feed(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):
                last = input_ids[:, -1].tolist()
                for (job, choice, row), token in zip(rows, last):
                    if row.done:
                        continue
                    if job.cancelled or engine._stop_batch:
                        row.finish_reason = "cancelled"
                        engine.stats["cancelled"] += 1
                        continue
                    delta = row.push(token)
                    if delta:
                        job.send("delta", choice, delta)
                    if row.done:
                        job.send("done", choice, row.finish_reason, row.generated)
                return torch.tensor([row.done for _, _, row in rows], device=input_ids.device)

        self.stats["batches"] += 1
        self.stats["rows"] += len(rows)
        self.stats["max_batch_rows"] = max(self.stats["max_batch_rows"], len(rows))
        if batch[0].isolated():
            from transformers import set_seed

            set_seed(batch[0].seed)
        input_ids, mask = padded_inputs(self.model, self.tokenizer, ids)
        with torch.inference_mode():
            self.model.generate(input_ids=input_ids, attention_mask=mask,
                                stopping_criteria=StoppingCriteriaList([Feed()]),
                                **generate_kwargs(self.tokenizer, settings))
        for job, choice, row in rows:
            if not row.done:  # generate ended first (the model's own length limit)
                delta = row.end("length")
                if delta:
                    job.send("delta", choice, delta)
                job.send("done", choice, row.finish_reason, row.generated)
            self.stats["tokens"] += row.generated
