"""Load on `labelwise serve`: requests/s, p50/p99 latency and peak server memory at 1, 8 and 32
concurrent clients, per engine (torch, onnx); then overload past the queue: 503s at once, no
timeouts, memory flat.

The server is a subprocess (``python -m labelwise.serve RUN``) on 127.0.0.1; the clients are asyncio
httpx clients in this process, one connection each, every request one JPEG photo. Peak memory is the
server's resident set (VmRSS, sampled every 20 ms, and the kernel's VmHWM reset per phase).

Model: efficientnet_lite0 with its offline ImageNet weights, fine-tuned 1 epoch on Fashion-MNIST
mosaics (multi-label), at the demo's 64 px by default or ``--image-size 224``; or ``--run RUN``.

Run: .venv/bin/python bench/serve_load.py [--image-size 224] [--duration-s 10] [--engines torch,onnx]
A benchmark: prints, never asserts.
"""
from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
BOUNDARY = "labelwise-bench-boundary"
MOSAIC_CLASSES = ("trouser", "bag", "sneaker", "dress")


# --------------------------------------------------------------------------- set-up


def train_bundle(workdir: Path, image_size: int) -> Path:
    """A small real bundle: efficientnet_lite0 (ImageNet start), 1 epoch on 600 Fashion mosaics."""
    import labelwise
    from labelwise.data.demo import build_mosaics

    run = workdir / f"run-{image_size}px"
    if (run / "model.json").is_file():
        return run
    data = workdir / "mosaics"
    if not (data / "labels.csv").is_file():
        build_mosaics(data, 600, split="train", seed=1, classes=MOSAIC_CLASSES, source="auto")
    started = time.monotonic()
    labelwise.train(data, out=run, epochs=1, backbone="efficientnet_lite0", pretrained=True,
                    image_size=image_size, progress=False)
    print(f"trained {run} in {time.monotonic() - started:.0f} s", flush=True)
    return run


def photo_jpeg(workdir: Path) -> bytes:
    """A 640x480 colour JPEG (a mosaic, scaled up, tinted, with sensor noise): what a phone sends, smaller."""
    pictures = sorted((workdir / "mosaics" / "images").glob("*.png"))
    gray = np.asarray(Image.open(pictures[0]).convert("L").resize((640, 480), Image.Resampling.BILINEAR))
    rng = np.random.default_rng(0)
    rgb = np.stack([gray * 0.9 + 20, gray * 0.8 + 30, gray * 0.7 + 50], -1) + rng.normal(0, 6, (480, 640, 3))
    buf = io.BytesIO()
    Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def multipart(name: str, data: bytes) -> bytes:
    return (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
            f"Content-Type: image/jpeg\r\n\r\n").encode() + data + f"\r\n--{BOUNDARY}--\r\n".encode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`python -m labelwise.serve RUN` in a subprocess, with its memory watched."""

    def __init__(self, run: Path, engine: str, queue_size: int, max_batch: int | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "labelwise.serve.app", str(run), "--port", str(self.port), "--engine", engine,
               "--queue-size", str(queue_size), "--log-level", "warning"]
        if max_batch:
            cmd += ["--max-batch", str(max_batch)]
        self.proc = subprocess.Popen(cmd, cwd=ROOT)
        deadline = time.monotonic() + 600  # an ONNX export on first use takes a while
        while True:
            if self.proc.poll() is not None:
                raise SystemExit(f"server exited with {self.proc.returncode}: {' '.join(cmd)}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise SystemExit("server did not start")
            time.sleep(0.2)

    def status(self, key: str) -> int:
        """A /proc/PID/status field in KiB (VmRSS, VmHWM)."""
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
        return 0

    def reset_peak(self) -> bool:
        try:  # "5" resets VmHWM to the current RSS (Linux >= 4.0)
            with open(f"/proc/{self.proc.pid}/clear_refs", "w") as f:
                f.write("5")
            return True
        except OSError:
            return False

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class RssSampler:
    """Peak VmRSS of the server while a phase runs (sampled in a thread every 20 ms)."""

    def __init__(self, server: Server):
        self.server, self.peak_kib, self._stop = server, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_kib = max(self.peak_kib, self.server.status("VmRSS"))
            time.sleep(0.02)

    def __enter__(self) -> "RssSampler":
        self.server.reset_peak()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_kib = max(self.peak_kib, self.server.status("VmHWM"))


# --------------------------------------------------------------------------- load


@dataclass
class Phase:
    latencies_ms: dict[int, list[float]] = field(default_factory=dict)  # by status
    errors: dict[str, int] = field(default_factory=dict)  # client-side: timeouts, resets
    wall_s: float = 0.0

    def add(self, status: int, ms: float) -> None:
        self.latencies_ms.setdefault(status, []).append(ms)

    def count(self, status: int) -> int:
        return len(self.latencies_ms.get(status, []))

    def pct(self, status: int, q: float) -> float:
        values = self.latencies_ms.get(status)
        return float(np.percentile(values, q)) if values else float("nan")


async def drive(url: str, body: bytes, clients: int, duration_s: float, backoff_s: float = 0.0,
                timeout_s: float = 30.0) -> Phase:
    """``clients`` loops, each posting ``body`` back to back for ``duration_s``."""
    phase = Phase()
    headers = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=timeout_s) as client:
        stop_at = time.monotonic() + duration_s

        async def one_client() -> None:
            while time.monotonic() < stop_at:
                started = time.perf_counter()
                try:
                    response = await client.post(f"{url}/predict", content=body, headers=headers)
                except httpx.HTTPError as err:
                    phase.errors[type(err).__name__] = phase.errors.get(type(err).__name__, 0) + 1
                    continue
                phase.add(response.status_code, (time.perf_counter() - started) * 1000)
                if response.status_code == 503 and backoff_s:
                    await asyncio.sleep(backoff_s)

        started = time.monotonic()
        await asyncio.gather(*(one_client() for _ in range(clients)))
        phase.wall_s = time.monotonic() - started
    return phase


def mib(kib: int) -> str:
    return f"{kib / 1024:.0f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", type=Path, help="An existing run directory (default: train one)")
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "labelwise-serve-load")
    ap.add_argument("--image-size", type=int, default=64, help="Input size of the trained bundle, px")
    ap.add_argument("--engines", default="torch,onnx")
    ap.add_argument("--clients", default="1,8,32")
    ap.add_argument("--duration-s", type=float, default=10.0, help="Per concurrency level")
    ap.add_argument("--queue-size", type=int, default=32, help="Server queue for the load levels")
    ap.add_argument("--max-batch", type=int, help="Server --max-batch (default: the server's)")
    ap.add_argument("--no-overload", action="store_true")
    ap.add_argument("--overload-clients", type=int, default=128)
    ap.add_argument("--overload-queue", type=int, default=8)
    ap.add_argument("--overload-rounds", type=int, default=3)
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)

    if args.run is None:
        args.run = train_bundle(args.workdir, args.image_size)
    elif not (args.workdir / "mosaics" / "images").is_dir():
        from labelwise.data.demo import build_mosaics

        build_mosaics(args.workdir / "mosaics", 8, split="test", seed=2, classes=MOSAIC_CLASSES, source="auto")
    photo = photo_jpeg(args.workdir)
    body = multipart("photo.jpg", photo)
    meta = json.loads((args.run / "model.json").read_text())
    cores = len(os.sched_getaffinity(0))
    print(f"\nmodel: {meta['backbone']}, {meta['input']['size']} px, {meta['input']['channels']} channel(s), "
          f"{len(meta['labels'])} labels ({meta['task']}); request: one {len(photo) / 1024:.0f} KiB 640x480 JPEG; "
          f"{cores} CPU cores shared by server and clients\n", flush=True)

    levels = [int(c) for c in args.clients.split(",")]
    print("| engine | clients | requests | req/s | p50 ms | p99 ms | non-200 | client errors | peak RSS MiB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for engine in args.engines.split(","):
        try:
            server = Server(args.run, engine, args.queue_size, args.max_batch)
        except SystemExit as err:
            print(f"| {engine} | (not available: {err}) |")
            continue
        try:
            asyncio.run(drive(server.url, body, 2, 2.0))  # warm-up: allocator, threads, caches
            for clients in levels:
                with RssSampler(server) as rss:
                    phase = asyncio.run(drive(server.url, body, clients, args.duration_s))
                ok = phase.count(200)
                other = sum(len(v) for s, v in phase.latencies_ms.items() if s != 200)
                print(f"| {engine} | {clients} | {ok} | {ok / phase.wall_s:.1f} | {phase.pct(200, 50):.1f} | "
                      f"{phase.pct(200, 99):.1f} | {other} | {sum(phase.errors.values())} | {mib(rss.peak_kib)} |",
                      flush=True)
        finally:
            server.stop()

    if not args.no_overload:
        overload(args, body)


def overload(args: argparse.Namespace, body: bytes) -> None:
    """Hammer a server whose queue is small from a separate process; a quiet probe client here
    measures what one more caller sees (the hammer's own latencies include its client-side backlog)."""
    engine = args.engines.split(",")[0]
    print(f"\noverload ({engine}): a separate process runs {args.overload_clients} clients against "
          f"--queue-size {args.overload_queue} ({args.overload_rounds} rounds of {args.duration_s:.0f} s; a client "
          "waits 20 ms after a 503); a probe posts once every 100 ms from here")
    print("| round | 200s | 503s | client timeouts/errors | probe: 503 p50 / p99 / max ms | probe: 200s "
          "| RSS before MiB | peak RSS MiB | RSS after MiB |")
    print("|---|---|---|---|---|---|---|---|---|")
    server = Server(args.run, engine, args.overload_queue, args.max_batch)
    headers = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}
    body_file = args.workdir / "body.bin"
    body_file.write_bytes(body)
    try:
        asyncio.run(drive(server.url, body, 2, 2.0))
        for i in range(args.overload_rounds):
            before = server.status("VmRSS")
            hammer = subprocess.Popen([sys.executable, __file__, "--hammer", server.url, str(body_file),
                                       str(args.overload_clients), str(args.duration_s)],
                                      stdout=subprocess.PIPE, text=True)
            probe = Phase()
            with RssSampler(server) as rss, httpx.Client(timeout=30) as client:
                time.sleep(1.0)  # let the hammer fill the queue
                while hammer.poll() is None:
                    started = time.perf_counter()
                    try:
                        status = client.post(f"{server.url}/predict", content=body, headers=headers).status_code
                        probe.add(status, (time.perf_counter() - started) * 1000)
                    except httpx.HTTPError as err:
                        probe.errors[type(err).__name__] = probe.errors.get(type(err).__name__, 0) + 1
                    time.sleep(0.1)
            after = server.status("VmRSS")
            seen = json.loads(hammer.stdout.read())
            worst = max(probe.latencies_ms.get(503, [float("nan")]))
            print(f"| {i + 1} | {seen['200']} | {seen['503']} | {seen['errors'] or 0} | "
                  f"{probe.pct(503, 50):.1f} / {probe.pct(503, 99):.1f} / {worst:.1f} | {probe.count(200)} | "
                  f"{mib(before)} | {mib(rss.peak_kib)} | {mib(after)} |", flush=True)
    finally:
        server.stop()


def hammer(url: str, body_file: str, clients: str, duration_s: str) -> None:
    """The overload process: print {"200": n, "503": n, "errors": {...}} as JSON."""
    phase = asyncio.run(drive(url, Path(body_file).read_bytes(), int(clients), float(duration_s), backoff_s=0.02))
    print(json.dumps({"200": phase.count(200), "503": phase.count(503), "errors": phase.errors,
                      "other": {s: len(v) for s, v in phase.latencies_ms.items() if s not in (200, 503)}}))


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--hammer":
        hammer(*sys.argv[2:])
    else:
        main()
