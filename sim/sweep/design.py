"""The design of a sweep: its points in parameter space, its tasks and their seeds.

The ``values`` and ``grid`` keys form a full factorial (in file order, the last key
varying fastest); crossed with the ``[sample]`` points (scrambled Sobol' or Latin
hypercube, :mod:`scipy.stats.qmc`) when there are ``range`` keys.

Point ``p`` and replication ``r`` make task ``p{p:04d}-r{r:02d}`` at position
``i = p * replications + r``; its seed is child ``i`` of
``np.random.SeedSequence(seed).spawn(n_points * replications)``, recorded as (entropy,
spawn_key); with ``common_seeds`` it is child ``r``, the same for every point. The
sample's scrambling uses the child with spawn_key ``(2**32 - 1,)``, which no task uses.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from sim.runner.tasks import Task

if TYPE_CHECKING:
    from sim.sweep.spec import Parameter, SweepSpec

__all__ = ["DESIGN_STREAM", "design_points", "expand"]

#: spawn_key of the stream that scrambles a [sample] design (beyond any task's index).
DESIGN_STREAM = 2**32 - 1


def design_points(
    parameters: Sequence[Parameter],
    method: str | None,
    n: int | None,
    seed: int,
    cast: Callable[[str, float], Any] = lambda _key, x: x,
) -> list[dict[str, Any]]:
    """The design's points: the factorial of values/grid keys, crossed with the sample.

    ``cast(key, x)`` turns a sampled number into the key's type (rounding integers).
    """
    fact = [p for p in parameters if p.kind != "range"]
    ranged = [p for p in parameters if p.kind == "range"]
    sampled: list[dict[str, Any]] = [{}]
    if ranged:
        from scipy.stats import qmc

        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(DESIGN_STREAM,)))
        if method == "sobol":
            unit = qmc.Sobol(len(ranged), scramble=True, rng=rng).random_base2(
                int(n).bit_length() - 1
            )
        else:
            unit = qmc.LatinHypercube(len(ranged), rng=rng).random(n)
        sampled = [
            {
                p.key: cast(p.key, p.low + u * (p.high - p.low))
                for p, u in zip(ranged, row, strict=True)
            }
            for row in unit
        ]
    points = []
    for combo in itertools.product(*(p.values for p in fact)):
        fixed = dict(zip((p.key for p in fact), combo, strict=True))
        for s in sampled:
            merged = {**fixed, **s}
            points.append({p.key: merged[p.key] for p in parameters})  # file order
    return points


def expand(spec: SweepSpec) -> list[Task]:
    """The sweep's tasks, point by point, replications within; the same on any machine."""
    reps = spec.replications
    seeds = np.random.SeedSequence(spec.seed).spawn(spec.n_points * reps)
    pw = max(4, len(str(spec.n_points - 1)))
    rw = max(2, len(str(reps - 1)))
    tasks = []
    for p, point in enumerate(spec.points):
        for r in range(reps):
            i = p * reps + r
            child = seeds[r] if spec.common_seeds else seeds[i]
            tasks.append(
                Task(
                    task_id=f"p{p:0{pw}d}-r{r:0{rw}d}",
                    point=p,
                    replication=r,
                    index=i,
                    overrides=dict(point),
                    seed_entropy=int(child.entropy),
                    spawn_key=tuple(int(k) for k in child.spawn_key),
                    twin=spec.twin,
                    base=spec.base,
                )
            )
    return tasks
