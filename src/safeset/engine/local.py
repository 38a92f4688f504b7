"""Local engine: runs a per-shard function over shards on a process pool.

An engine only knows about tasks, a per-process setup function and progress;
what a task does lives in `safeset.jobs`. A cluster engine (Ray, later) keeps
the same interface. With one worker everything runs in this process, which
keeps tracebacks and debuggers simple.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import threading
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any, Callable, Iterable, Iterator

from safeset.engine.memory import keep_freed_memory

_state: dict[str, Any] = {}


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _init_worker(setup: Callable[..., Any], setup_args: tuple, progress_queue) -> None:
    keep_freed_memory()
    _state["context"] = setup(*setup_args)
    _state["report"] = progress_queue.put


def _run_task(fn: Callable[..., Any], task: Any) -> Any:
    return fn(task, _state["context"], _state["report"])


class LocalEngine:
    def __init__(self, workers: int | None = None):
        self.workers = max(1, workers or default_workers())

    def map(
        self,
        setup: Callable[..., Any],
        setup_args: tuple,
        fn: Callable[[Any, Any, Callable[[int], None]], Any],
        tasks: Iterable[Any],
        on_progress: Callable[[int], None] = lambda n: None,
    ) -> Iterator[tuple[Any, Any]]:
        """Yield (task, result) as tasks finish. `fn(task, context, report)`;
        `report(n)` tells the caller n more rows were processed.

        An exception raised by `fn` is yielded as the result, so one bad
        shard never stops the others.
        """
        tasks = list(tasks)
        if self.workers == 1 or len(tasks) <= 1:
            keep_freed_memory()
            context = setup(*setup_args)
            for task in tasks:
                try:
                    yield task, fn(task, context, on_progress)
                except Exception as exc:  # noqa: BLE001 - handed to the caller as the result
                    yield task, exc
            return
        yield from self._map_pool(setup, setup_args, fn, tasks, on_progress)

    def _map_pool(self, setup, setup_args, fn, tasks, on_progress):
        ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
        progress_queue = ctx.Queue()
        stop = threading.Event()

        def drain() -> None:
            while not stop.is_set() or not progress_queue.empty():
                try:
                    on_progress(progress_queue.get(timeout=0.1))
                except queue.Empty:
                    continue

        drainer = threading.Thread(target=drain, daemon=True)
        drainer.start()
        try:
            with ProcessPoolExecutor(
                max_workers=min(self.workers, len(tasks)),
                mp_context=ctx,
                initializer=_init_worker,
                initargs=(setup, setup_args, progress_queue),
            ) as pool:
                pending = {pool.submit(_run_task, fn, task): task for task in tasks}
                while pending:
                    done, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        task = pending.pop(future)
                        try:
                            yield task, future.result()
                        except Exception as exc:  # noqa: BLE001 - includes a crashed worker
                            yield task, exc
        finally:
            stop.set()
            drainer.join()
            progress_queue.close()
