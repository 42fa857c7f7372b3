"""One runner and one result store for every batch of simulated studies.

Sweeps (:mod:`sim.sweep`), the reproduced study (:mod:`sim.reproduce`) and the
calibration's twin runs (:mod:`sim.calibrate`) are all lists of :class:`Task` (one
simulated study each, :func:`sim.study.run_study`), run by :func:`run_tasks` on any
executor (:func:`open_executor`: a local process pool or an existing Dask cluster) into a
:class:`ResultStore` (one atomically written file per task; a rerun runs only the
missing tasks).

* :mod:`sim.runner.tasks`: what a task is and how it runs;
* :mod:`sim.runner.store`: the result folder, its records, lock, task files, consolidation;
* :mod:`sim.runner.execute`: executors, running the missing tasks, failures as rows.
"""

from sim.runner.execute import (
    Pool,
    RunnerError,
    RunOutcome,
    TaskFailed,
    default_workers,
    open_executor,
    raise_failed,
    run_tasks,
)
from sim.runner.store import (
    Record,
    ResultStore,
    StoreError,
    open_store,
    read_tables,
    read_task_file,
    scenario_record,
    task_path,
    write_atomic,
    write_parquet,
)
from sim.runner.tasks import (
    ESTIMATE_COLUMNS,
    Task,
    TaskFn,
    TaskOutput,
    execute,
    run_task,
    task_rows,
)

__all__ = [
    "ESTIMATE_COLUMNS",
    "Pool",
    "Record",
    "ResultStore",
    "RunOutcome",
    "RunnerError",
    "StoreError",
    "Task",
    "TaskFailed",
    "TaskFn",
    "TaskOutput",
    "default_workers",
    "execute",
    "open_executor",
    "open_store",
    "raise_failed",
    "read_tables",
    "read_task_file",
    "run_task",
    "run_tasks",
    "scenario_record",
    "task_path",
    "task_rows",
    "write_atomic",
    "write_parquet",
]
