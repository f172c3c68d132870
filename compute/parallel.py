"""Worker processes for the independent, single-threaded pieces of a run, so that a run uses every core.

A seeded UMAP layout is one sequential loop, and an SAE trains on one thread (compute/sae/train.py), so on a
2-core machine the pipeline kept one core busy. `Pieces` runs such pieces (a word map, an aligned map, a layer's
SAE) in spawned worker processes while the run goes on. Each piece is seeded and single-threaded wherever it
runs, so its result is the same in a worker as in-process (tests/test_parallel.py). With one process
(`LEXISCOPE_PROCESSES=1`, or a 1-core machine) every piece runs in-process, at once.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import threading

from store.settings import settings


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def process_count() -> int:
    """LEXISCOPE_PROCESSES, else the usable cores."""
    return settings().processes or usable_cores()


# Below this many words a run's pieces take a few seconds, less than starting the workers (each imports umap).
MIN_WORDS = 5_000


def worth_workers(n_words: int) -> bool:
    """Whether pieces of a word set this large go to workers: always when LEXISCOPE_PROCESSES is set."""
    return bool(settings().processes) or n_words >= MIN_WORDS


class Done:
    """A piece computed in-process: the same get() as a worker's result."""

    def __init__(self, fn, args, kwargs):
        self._value, self._error = None, None
        try:
            self._value = fn(*args, **kwargs)
        except Exception as e:  # re-raised by get(), where a worker's error would be
            self._error = e

    def get(self):
        if self._error is not None:
            raise self._error
        return self._value

    def ready(self) -> bool:
        return True


def result(pending, tick=None, every: float = 1.0):
    """The value of a pending piece; `tick()` is called every `every` seconds while it runs, so that a progress
    callback can still stop the run (a cancelled job raises there, and leaving Pieces stops the workers)."""
    while not pending.ready():
        if tick is not None:
            tick()
        pending.wait(every)
    return pending.get()


def _worker_start(parent: int):
    """In each worker: one thread for every library (the pieces are sequential, and the cores are shared with
    the parent and the other workers), and exit when the parent is gone, even in the middle of a piece."""
    os.environ.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", NUMBA_NUM_THREADS="1")
    os.environ["TQDM_DISABLE"] = "1"  # the parent reports progress

    def watch():
        import time

        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


class Pieces:
    """`submit(fn, *args)` returns a result whose get() waits for fn's value (or raises its error). `fn` must be a
    module-level function. Used as a context manager: leaving it stops the workers, also on an error or a
    cancelled job, so that no worker outlives its run."""

    def __init__(self, processes: int | None = None):
        self.processes = processes if processes is not None else process_count()
        self._pool, self._restore = None, None

    def __enter__(self):
        return self

    def submit(self, fn, *args, **kwargs):
        if self.processes <= 1:
            return self.run_here(fn, *args, **kwargs)
        if self._pool is None:  # started on first use: a run with nothing to hand out starts none
            ctx = mp.get_context("spawn")  # no fork: torch's and numba's threads do not survive one
            self._pool = ctx.Pool(self.processes, initializer=_worker_start, initargs=(os.getpid(),))
            self._one_thread_here()
        return self._pool.apply_async(fn, args, kwargs)

    def _one_thread_here(self):
        """While the workers share the cores: one torch and one BLAS thread in this process too (OpenMP's
        spin-waiting threads ran many times slower whenever another process held a core)."""
        import torch
        from threadpoolctl import threadpool_limits

        self._restore = (torch.get_num_threads(), threadpool_limits(limits=1))
        torch.set_num_threads(1)

    def widen_when_done(self, pending: list):
        """A callable for between the batches of this process's own work: once every piece of `pending` is done
        (the workers then idle until this work ends), it gives this process one torch thread per worker process
        instead of one. Call `narrow()` when the work ends."""

        def widen():
            if self._restore is not None and all(p is None or p.ready() for p in pending):
                import torch

                if torch.get_num_threads() != self.processes:
                    torch.set_num_threads(self.processes)

        return widen

    def narrow(self):
        """Back to one torch thread in this process while the workers share the cores (after widen_when_done)."""
        if self._restore is not None:
            import torch

            torch.set_num_threads(1)

    @staticmethod
    def run_here(fn, *args, **kwargs) -> Done:
        return Done(fn, args, kwargs)

    def submit_for(self, n_words: int):
        """`submit` for the pieces of a word set of n_words, or `run_here` when it is too small for workers."""
        return self.submit if worth_workers(n_words) else self.run_here

    def __exit__(self, exc_type, *_):
        if self._pool is not None:
            if exc_type is None:
                self._pool.close()
            else:
                self._pool.terminate()
            self._pool.join()
            self._pool = None
        if self._restore is not None:
            import torch

            threads, limits = self._restore
            torch.set_num_threads(threads)
            limits.restore_original_limits()
            self._restore = None
