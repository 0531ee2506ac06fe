"""Load on `dragoman serve`: throughput and latency with dynamic batching, and with it off.

    python benchmarks/serve_load.py runs/transformer --clients 64 --requests 50

Starts the server twice on loopback (`python -m dragoman serve MODEL_DIR`): once with its default
batching, once with `--max-wait-ms 0 --max-batch-tokens 1`, so that every request is its own model
call. Each time, `--clients` concurrent clients (asyncio + httpx) each send `--requests` requests one
after another, each request one sentence drawn at random from `--texts`. Prints one Markdown table
(requests/s, sentences/s, p50/p99 latency, errors, model calls and requests per call, from /health)
and the ratio of batched to unbatched throughput. One warm-up request per client runs first and is
not counted.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
UNBATCHED = ["--max-wait-ms", "0", "--max-batch-tokens", "1"]


@dataclass
class Load:
    seconds: float
    latencies: list[float]  # of the successful requests, in seconds
    errors: int
    requests: int  # counted by the server (/health), warm-up excluded
    batches: int


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """`python -m dragoman serve` in a subprocess, its log in a temporary file; stopped with SIGTERM."""

    def __init__(self, model_dir: Path, port: int, flags: list[str]) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.log = tempfile.TemporaryFile("w+")
        command = [sys.executable, "-m", "dragoman", "serve", str(model_dir), "--port", str(port), *flags]
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT)

    def wait_until_up(self, seconds: float = 120) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                sys.exit(f"the server exited ({self.process.returncode}):\n{self.tail()}")
            try:
                httpx.get(f"{self.url}/health", timeout=1).raise_for_status()
                return
            except httpx.HTTPError:
                time.sleep(0.2)
        self.stop()
        sys.exit(f"the server did not answer within {seconds} s:\n{self.tail()}")

    def health(self) -> dict:
        return httpx.get(f"{self.url}/health", timeout=10).json()

    def tail(self, lines: int = 20) -> str:
        self.log.seek(0)
        return "".join(self.log.readlines()[-lines:])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


async def client(http: httpx.AsyncClient, url: str, sentences: list[str], n: int, seed: int) -> tuple:
    """`n` requests one after another; (latencies of the successes, errors)."""
    rng, latencies, errors = random.Random(seed), [], 0
    for _ in range(n):
        started = time.perf_counter()
        try:
            response = await http.post(url, json={"texts": [rng.choice(sentences)]})
            ok = response.status_code == 200
        except httpx.HTTPError:
            ok = False
        if ok:
            latencies.append(time.perf_counter() - started)
        else:
            errors += 1
    return latencies, errors


async def load(server: Server, sentences: list[str], clients: int, requests: int) -> Load:
    url = f"{server.url}/v1/translate"
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=300) as http:
        await asyncio.gather(*(client(http, url, sentences, 1, seed=-1 - i) for i in range(clients)))
        before = server.health()
        started = time.perf_counter()
        results = await asyncio.gather(
            *(client(http, url, sentences, requests, seed=i) for i in range(clients))
        )
        seconds = time.perf_counter() - started
    after = server.health()
    return Load(
        seconds,
        [latency for latencies, _ in results for latency in latencies],
        sum(errors for _, errors in results),
        after["requests"] - before["requests"],
        after["batches"] - before["batches"],
    )


def measure(model_dir: Path, port: int, flags: list[str], sentences: list[str], args) -> Load:
    server = Server(model_dir, port, flags)
    try:
        server.wait_until_up()
        return asyncio.run(load(server, sentences, args.clients, args.requests))
    finally:
        server.stop()


def row(name: str, flags: list[str], result: Load) -> str:
    ok = len(result.latencies)
    ms = sorted(1000 * s for s in result.latencies) or [float("nan")]
    p99 = ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]
    per_call = result.requests / result.batches if result.batches else float("nan")
    cells = [
        name,
        " ".join(flags) or "(defaults)",
        f"{ok / result.seconds:.1f}",
        f"{ok / result.seconds:.1f}",  # one sentence per request
        f"{statistics.median(ms):.0f}",
        f"{p99:.0f}",
        str(result.errors),
        str(result.batches),
        f"{per_call:.1f}",
    ]
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--clients", type=int, default=64, help="concurrent clients")
    parser.add_argument("--requests", type=int, default=50, help="sequential requests per client")
    parser.add_argument(
        "--texts",
        type=Path,
        default=ROOT.parent / "shared" / "data" / "ui-en-de" / "test.en",
        help="one sentence a line (default: ../shared/data/ui-en-de/test.en)",
    )
    parser.add_argument("--port", type=int, help="default: a free port")
    args = parser.parse_args()
    sentences = [line for line in args.texts.read_text(encoding="utf-8").splitlines() if line.strip()]
    port = args.port or free_port()

    batched = measure(args.model_dir, port, [], sentences, args)
    unbatched = measure(args.model_dir, port, UNBATCHED, sentences, args)

    print(f"{args.model_dir}: {args.clients} clients × {args.requests} requests of one sentence each\n")
    print(
        "| batching | server flags | requests/s | sentences/s | p50 ms | p99 ms | errors "
        "| model calls | requests per call |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    print(row("on", [], batched))
    print(row("off", UNBATCHED, unbatched))
    ratio = (len(batched.latencies) / batched.seconds) / (len(unbatched.latencies) / unbatched.seconds)
    print(f"\nthroughput batched / unbatched: {ratio:.2f}×")


if __name__ == "__main__":
    main()
