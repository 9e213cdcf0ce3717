"""``nba serve --processes N``: N server processes on one port, one core each.

One Python process decides on one core (the interpreter lock), whatever its threads. Here the
parent reserves the port, then starts N processes (``spawn``: nothing of the parent's gRPC
state is inherited), each with its own gRPC server bound to that port with ``SO_REUSEPORT``:
the kernel spreads incoming connections over them. What they must agree on lives in Redis
(caps, budgets, pending decisions, outcomes), so N > 1 needs ``--redis``. Each writes its own
log files (names carry the process id) and explores with its own seed (``--seed`` + its index).

Learning: process 0 is the learner. It matures decisions, learns from them and saves the model
checkpoint (``--checkpoint-seconds``); the others serve each checkpoint it writes
(``engine.checkpoint``), so all serve one model, at most one checkpoint interval behind.

The parent prints the serving line once every process is serving, passes SIGTERM and SIGINT on,
and waits for them. If one process dies, the parent stops the others and exits with 1: a
service that silently lost a core is worse than one that restarts whole.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import tempfile
import time
from collections.abc import Iterator

from engine.settings import ConfigError

log = logging.getLogger("nba.workers")
START_TIMEOUT = 180.0


@contextlib.contextmanager
def reserved_port(host: str, port: int) -> Iterator[int]:
    """Hold ``host:port`` (``port`` 0: a free one) with SO_REUSEPORT, not listening, while the
    processes bind it; yields the port number."""
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            sock.bind((host.strip("[]"), port))
        except OSError as exc:
            raise OSError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
        yield sock.getsockname()[1]
    finally:
        sock.close()


def serve_processes(args) -> int:
    """Run ``args.processes`` servers on one port until SIGTERM/SIGINT (see the module)."""
    from engine.cli import server_limits, server_security
    from engine.privacy import load_key

    server_limits(args), server_security(args)  # a mistake in the options: one message, no process started
    load_key(args.id_key_file, args.state_dir)  # made here once when missing, not raced by the processes
    received: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, _frame: received.append(signum))
    signal.signal(signal.SIGINT, lambda signum, _frame: received.append(signum))
    ctx = multiprocessing.get_context("spawn")
    events = ctx.Queue()
    metrics_dir = metrics_http = None
    if args.metrics_port is not None:
        from engine.metrics import MULTIPROCESS_DIR, multiprocess_registry, serve_http

        metrics_dir = tempfile.TemporaryDirectory(prefix="nba-metrics-")
        os.environ[MULTIPROCESS_DIR] = metrics_dir.name  # the processes inherit it
        metrics_http = serve_http(multiprocess_registry(), args.host, args.metrics_port)
    try:
        return _serve(args, ctx, events, received, metrics_http)
    finally:
        if metrics_http is not None:
            metrics_http.shutdown()
            metrics_http.server_close()
        if metrics_dir is not None:
            metrics_dir.cleanup()


def _serve(args, ctx, events, received: list[int], metrics_http) -> int:
    n = args.processes
    with reserved_port(args.host, args.port) as port:
        procs = [ctx.Process(target=_process, args=(args, port, k, events), name=f"nba-serve-{k}", daemon=False)
                 for k in range(n)]
        for p in procs:
            p.start()
        try:
            description = _wait_ready(procs, events, received)
        except BaseException:
            _stop(procs, args.grace)
            raise
    if description is None:  # a signal before all were serving
        _stop(procs, args.grace)
        return 0
    metrics = (f"; metrics on http://{args.host}:{metrics_http.server_port}/metrics"
               if metrics_http is not None else "")
    print(f"nba: serving nba.v1.DecisionService on {args.host}:{port} ({n} processes, pids "
          f"{' '.join(str(p.pid) for p in procs)}; {description}{metrics})", flush=True)
    while not received:
        dead = [p for p in procs if not p.is_alive()]
        if dead:
            log.error("server process %s (pid %d) exited with %s: stopping the others", dead[0].name, dead[0].pid,
                      dead[0].exitcode)
            _stop(procs, args.grace)
            return 1
        time.sleep(0.2)
    log.info("signal %s: stopping %d processes (grace %.0f s)", signal.Signals(received[0]).name, n, args.grace)
    _stop(procs, args.grace)
    return 0


def _wait_ready(procs, events, received: list[int]) -> str | None:
    ready: set[int] = set()
    description = ""
    deadline = time.monotonic() + START_TIMEOUT
    while len(ready) < len(procs):
        if received:
            return None
        try:
            kind, index, text = events.get(timeout=0.2)
        except Exception:  # noqa: BLE001 - queue.Empty: look at the processes again
            dead = [p for p in procs if not p.is_alive()]
            if dead:
                raise RuntimeError(f"server process {dead[0].name} exited with {dead[0].exitcode} while starting")
            if time.monotonic() > deadline:
                raise RuntimeError(f"server processes not serving after {START_TIMEOUT:.0f} s")
            continue
        if kind == "config":
            raise ConfigError(text)
        if kind == "error":
            raise OSError(f"server process {index}: {text}")
        ready.add(index)
        description = text
    return description


def _stop(procs, grace: float) -> None:
    for p in procs:
        if p.is_alive():
            os.kill(p.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace + 30
    for p in procs:
        p.join(max(0.0, deadline - time.monotonic()))
        if p.is_alive():
            log.error("%s did not stop within %.0f s: killed", p.name, grace + 30)
            p.kill()
            p.join()
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(p.pid)


def _process(args, port: int, index: int, events) -> None:
    """One server process: serve on the shared port until SIGTERM."""
    from engine.cli import describe, start_serving
    from engine.server import serve_forever

    logging.basicConfig(level=logging.INFO,
                        format=f"%(asctime)s %(name)s[{index}] %(levelname)s %(message)s")
    args.port = port
    if args.seed is not None:
        args.seed += index
    try:
        running = start_serving(args, reuse_port=True, learner=index == 0)
    except (ConfigError, ValueError) as exc:
        events.put(("config", index, str(exc)))
        return
    except Exception as exc:  # noqa: BLE001 - reported by the parent, which stops
        events.put(("error", index, f"{type(exc).__name__}: {exc}"))
        return
    events.put(("ready", index, describe(args, running.engine)))
    serve_forever(running, grace=args.grace)
