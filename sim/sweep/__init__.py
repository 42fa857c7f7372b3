"""Sweeps: many scenarios times replications, run on any executor, stored so nothing is lost.

The model is a function from a scenario and a seed to estimates
(:func:`sim.study.run_study`); a sweep is the experiment around it, kept apart from the
model as in the EMA Workbench: a design of points in parameter space, R replications at
each point, an executor that runs them, and a store that keeps them.

* :mod:`sim.sweep.spec`: the sweep file (format and validation), :func:`load_sweep`;
* :mod:`sim.sweep.design`: the design's points, its tasks and their seeds, :func:`expand`;
* :mod:`sim.sweep.run`: :func:`run_sweep` (the tasks through :mod:`sim.runner` into the
  result folder), :func:`consolidate`, :func:`summarize`.

What one task is, the executors and the result store are shared with ``credsim
reproduce`` and ``credsim calibrate``: :mod:`sim.runner`.
"""

from sim.runner import ESTIMATE_COLUMNS, Task, TaskOutput, read_task_file, run_task, task_rows
from sim.sweep.design import expand
from sim.sweep.run import SweepOutcome, consolidate, default_out, run_sweep, summarize
from sim.sweep.spec import Parameter, SweepError, SweepSpec, load_sweep, parse_sweep

__all__ = [
    "ESTIMATE_COLUMNS",
    "Parameter",
    "SweepError",
    "SweepOutcome",
    "SweepSpec",
    "Task",
    "TaskOutput",
    "consolidate",
    "default_out",
    "expand",
    "load_sweep",
    "parse_sweep",
    "read_task_file",
    "run_sweep",
    "run_task",
    "summarize",
    "task_rows",
]
