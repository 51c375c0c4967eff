"""serve: `ftcli serve` under load on loopback. The server runs as users start it (`python -m ftcli serve
--model SmolLM2 --port P`, its own process); clients are threads with the official `openai` client.
One client sending requests one after another, then 16 clients × 8 requests each, all at once: errors,
p50/p99 latency per request, total completion tokens/s (usage.completion_tokens over wall time), and the
ratio of the two tokens/s. Greedy, 32 new tokens, Alpaca instructions (a fixed list without the data).

    .venv/bin/python bench/serve_load.py [--quick] [--clients 16] [--requests 8] [--max-tokens 32]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import common

FALLBACK = ["What is the capital of Peru?", "Give three tips for staying healthy.", "Name a fruit.",
            "Why is the sky blue?", "Write a haiku about the sea.", "Explain photosynthesis briefly.",
            "What is 12 times 7?", "Suggest a name for a pet turtle."]


def prompts(n: int) -> list[str]:
    path = common.DATA / "alpaca" / "alpaca_5000.json"
    if not path.is_file():
        return [FALLBACK[i % len(FALLBACK)] for i in range(n)]
    rows = json.loads(path.read_text(encoding="utf-8"))[:n]
    return [r["instruction"] + (f"\n\n{r['input']}" if r["input"] else "") for r in rows]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def _load(client, model_id: str, questions: list[str], clients: int, max_tokens: int) -> dict:
    """`clients` threads, each sending its share of `questions` one after another."""
    latencies, tokens, errors = [], [], []
    lock = threading.Lock()

    def one(share: list[str]) -> None:
        for q in share:
            t0 = time.perf_counter()
            try:
                reply = client.chat.completions.create(model=model_id, messages=[{"role": "user", "content": q}],
                                                       max_tokens=max_tokens, temperature=0)
            except Exception as exc:  # noqa: BLE001 - counted and reported
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}")
                continue
            with lock:
                latencies.append(time.perf_counter() - t0)
                tokens.append(reply.usage.completion_tokens)

    shares = [questions[i::clients] for i in range(clients)]
    threads = [threading.Thread(target=one, args=(s,)) for s in shares]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    return {"clients": clients, "requests": len(questions), "errors": len(errors), "first_errors": errors[:3],
            "seconds": round(wall, 2), "tokens": sum(tokens), "tokens_per_s": round(sum(tokens) / wall, 1),
            "p50_s": round(_percentile(latencies, 0.5), 3) if latencies else None,
            "p99_s": round(_percentile(latencies, 0.99), 3) if latencies else None}


def measure(clients: int, requests: int, max_tokens: int, sequential: int, model: str | None = None) -> dict:
    import openai

    model = model or str(common.SMOL)
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "ftcli", "serve", "--model", model, "--port", str(port),
                               "--max-batch", str(clients), "--max-queue", str(clients * 4)],
                              cwd=common.ROOT, env={**os.environ, "FTCLI_API_KEY": ""})
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 300
        while True:
            try:
                _get(f"{base}/health")
                break
            except OSError:
                if server.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"the server did not start (exit {server.poll()})") from None
                time.sleep(0.5)
        client = openai.OpenAI(base_url=f"{base}/v1", api_key="none", max_retries=0, timeout=600)
        model_id = client.models.list().data[0].id
        questions = prompts(clients * requests)
        _load(client, model_id, questions[:2], 1, max_tokens)  # warm-up: first calls pay one-off costs
        single = _load(client, model_id, questions[:sequential], 1, max_tokens)
        before = _get(f"{base}/health")
        many = _load(client, model_id, questions, clients, max_tokens)
        after = _get(f"{base}/health")
    finally:
        server.terminate()
        server.wait(timeout=30)
    many["batches"] = after["batches"] - before["batches"]
    many["max_batch_rows"] = after["max_batch_rows"]
    return {"model": Path(model).name, "max_tokens": max_tokens, "single": single, "concurrent": many,
            "ratio": round(many["tokens_per_s"] / single["tokens_per_s"], 2)}


def _sizes(quick: bool) -> dict:
    return {"clients": 4, "requests": 2, "max_tokens": 4, "sequential": 2} if quick else \
        {"clients": 16, "requests": 8, "max_tokens": 32, "sequential": 16}


def run(work: Path, quick: bool, **_) -> dict:
    r = common.worker("serve_load.py", "measure", _sizes(quick))
    one, many = r["single"], r["concurrent"]
    rows = [{"workload": "serve", "contender": f"ftcli serve, {name}", "speed": f"{x['tokens_per_s']:.1f} tokens/s",
             "time": f"{x['seconds']:.1f}s", "quality": f"{x['errors']} errors",
             "other": f"p50 {x['p50_s']}s, p99 {x['p99_s']}s, {x['requests']} requests"}
            for name, x in (("1 client", one), (f"{many['clients']} clients", many))]
    rows[-1]["vs baseline"] = f"{r['ratio']:.2f}× 1 client"
    checks = [{"workload": "serve", "check": f"tokens/s, {many['clients']} clients vs 1", "measured": f"{r['ratio']:.2f}×",
               "target": "≥ 3×", "ok": "yes" if r["ratio"] >= 3 else "no"},
              {"workload": "serve", "check": "errors under load", "measured": str(many["errors"]), "target": "0",
               "ok": "yes" if many["errors"] == 0 else "no"}]
    return {"rows": rows, "checks": checks, "results": r}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--model", default=None, help="a model folder (default: SmolLM2-135M-Instruct)")
    for name in ("clients", "requests", "max_tokens", "sequential"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=None)
    args = parser.parse_args()
    sizes = {k: getattr(args, k) or v for k, v in _sizes(args.quick).items()}
    r = measure(**sizes, model=args.model)
    for name in ("single", "concurrent"):
        x = r[name]
        print(f"{name:10s} {x['clients']:2d} clients, {x['requests']:3d} requests: {x['errors']} errors, "
              f"p50 {x['p50_s']}s, p99 {x['p99_s']}s, {x['tokens']} tokens in {x['seconds']}s = "
              f"{x['tokens_per_s']} tokens/s")
    print(f"batches {r['concurrent']['batches']} (largest {r['concurrent']['max_batch_rows']} rows); "
          f"tokens/s ratio, {r['concurrent']['clients']} clients vs 1: {r['ratio']}×")
    print(json.dumps(r))
    return 0 if r["concurrent"]["errors"] == 0 else 1


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "measure":
        common.worker_main({"measure": measure})
    else:
        sys.exit(main())
