"""The runner: tasks missing from a result store, run on an executor, written as they finish.

Any :class:`concurrent.futures.Executor` runs the tasks (``submit`` and
``as_completed``): a local process pool, a thread in this process, or an existing Dask
cluster through ``distributed.Client(address).get_executor()``; :func:`open_executor`
makes one of those from ``workers`` / ``scheduler``. :func:`run_tasks` asks the store
which tasks are done, submits the others, and writes each one the moment it finishes
(a failed task is written too, as one error row, and runs again on the next call). A
``KeyboardInterrupt`` (Ctrl-C) cancels what has not started and propagates; what
finished is on disk, and the next call runs the rest.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass

from sim.runner.store import ResultStore
from sim.runner.tasks import Task, TaskFn, TaskOutput, execute, failure_output, run_task

__all__ = [
    "Pool",
    "RunOutcome",
    "RunnerError",
    "TaskFailed",
    "default_workers",
    "open_executor",
    "raise_failed",
    "run_tasks",
]


class RunnerError(Exception):
    """An executor that cannot be used (e.g. no Dask scheduler at the address)."""


class TaskFailed(RuntimeError):
    """Tasks that a caller needs finished with an error (recorded in the store)."""


def default_workers() -> int:
    """Local worker processes by default: the machine's cores."""
    return os.cpu_count() or 1


@dataclass
class Pool:
    """An executor, where it runs (for messages and manifests) and how many tasks it runs
    at once (local workers, or the Dask cluster's threads)."""

    executor: Executor
    where: str
    workers: int


@contextlib.contextmanager
def open_executor(
    workers: int | None = None, scheduler: str | None = None, *, in_process: bool = False
) -> Iterator[Pool]:
    """A local process pool of ``workers`` (default :func:`default_workers`), or the Dask
    cluster whose scheduler is at ``scheduler``; shut down (or disconnected) on exit.

    Local workers are started with ``spawn`` (a clean interpreter each). With
    ``in_process`` and one worker the tasks run in a thread of this process instead.

    Raises
    ------
    RunnerError
        ``workers`` < 1, both ``workers`` and ``scheduler`` given, or no scheduler at
        ``scheduler``.
    """
    if workers is not None and workers < 1:
        raise RunnerError(f"--workers: expected an integer >= 1, got {workers}")
    with contextlib.ExitStack() as stack:
        if scheduler:
            if workers is not None:
                raise RunnerError(
                    "--workers sets the local pool; with --scheduler the "
                    "cluster's workers run the tasks"
                )
            from distributed import Client

            try:
                client = stack.enter_context(Client(scheduler, timeout="20s"))
            except (OSError, TimeoutError) as err:
                raise RunnerError(f"--scheduler {scheduler}: cannot connect ({err})") from None
            threads = sum(client.nthreads().values())
            yield Pool(
                client.get_executor(pure=False),
                f"Dask cluster {scheduler} ({threads} threads)",
                threads,
            )
            return
        workers = workers or default_workers()
        if in_process and workers == 1:
            yield Pool(stack.enter_context(ThreadPoolExecutor(1)), "this process", 1)
            return
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        pool = stack.enter_context(
            ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
        )
        yield Pool(pool, f"local process pool ({workers} workers)", workers)


@dataclass
class RunOutcome:
    """What one call of :func:`run_tasks` did."""

    n_tasks: int
    already_done: int  # tasks found finished in the store
    ran: int  # tasks run this time
    failed: list[str]  # ids of the tasks that failed this time
    wall_seconds: float

    @property
    def ok(self) -> bool:
        """Every task run this time finished without error."""
        return not self.failed


def run_tasks(
    tasks: Sequence[Task],
    store: ResultStore,
    executor: Executor,
    task_fn: TaskFn = run_task,
    *,
    progress: Callable[[int, int], None] | None = None,
    log: Callable[[str], None] | None = None,
) -> RunOutcome:
    """Run the tasks not done in ``store`` on ``executor``; write each as it finishes.

    ``task_fn`` runs one task (a top-level function, so that it pickles; default
    :func:`sim.runner.tasks.run_task`). ``progress(done, total)`` counts the tasks run
    this time (first with 0); ``log`` gets one line per failed task. Tasks with the same
    id are run once.
    """
    t0 = time.perf_counter()
    unique = list({t.task_id: t for t in tasks}.values())
    todo = [t for t in unique if not store.done(t)]
    if progress:
        progress(0, len(todo))
    futures: dict[Future, Task] = {}
    failed: list[str] = []
    try:
        for t in todo:
            futures[executor.submit(execute, t, task_fn)] = t
        for n_done, fut in enumerate(as_completed(futures), start=1):
            task = futures[fut]
            try:
                output: TaskOutput = fut.result()
            except Exception as exc:  # the executor lost the task (a dead worker...)
                output = failure_output(task, exc)
            store.write(task, output)
            if not output.ok:
                failed.append(task.task_id)
                if log:
                    where = f" {task.overrides}" if task.overrides else ""
                    log(f"task {task.task_id}{where} failed: {output.rows['error'].iloc[0]}")
            if progress:
                progress(n_done, len(todo))
    except BaseException:
        for fut in futures:
            fut.cancel()
        raise
    return RunOutcome(
        len(unique), len(unique) - len(todo), len(todo), failed, time.perf_counter() - t0
    )


def raise_failed(store: ResultStore, tasks: Sequence[Task], what: str) -> None:
    """Raise :class:`TaskFailed` if any of ``tasks`` is not done in ``store``."""
    bad = [t for t in tasks if not store.done(t)]
    if not bad:
        return
    rows = store.read(bad[0])
    first = "" if rows is None else f": {rows['error'].iloc[0]}\n{rows['traceback'].iloc[0]}"
    ids = ", ".join(t.task_id for t in bad[:10]) + (" ..." if len(bad) > 10 else "")
    raise TaskFailed(
        f"{len(bad)} of {len(tasks)} {what} failed ({ids}); their tracebacks "
        f"are in {store.out}/tasks/<task>.parquet; rerun to retry them. The "
        f"first, {bad[0].task_id}{first}"
    )
