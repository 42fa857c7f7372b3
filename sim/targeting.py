"""Targeted nudging: who gets a fixed number of nudges, and the models that rank learners.

A targeted design (``study.targeting`` other than ``"random"``, :func:`sim.study.assign`)
gives ``study.treated_share`` of each graduation batch the nudge, choosing them by a
score learnt from a **pilot**: a simulated 50/50 study of the same scenario in another
world (its own population, graph and weekly draws), as an organisation would learn
from the study it ran before rolling the nudge out. The score then ranks the learners
of the new world from their pre-treatment traits only.

Choices (MODEL.md leaves them open):

* **What the pilot shows.** The models learn from the pilot's whole learners frame
  (every learner's traits, assignment and new job as the study measures it: reported
  on the profile, at least ``calendar.new_job_min_weeks`` after randomization), not
  from the ~4% matched sample: a platform running its own trial sees its members'
  profiles. This is the best case for targeting; the matched sample alone would give
  noisier rankings.
* **Features.** The study's pre-treatment traits (:data:`FEATURES`, those of the
  paper's employability model): domain, developing country, education and college,
  experience, past jobs in scope, baseline employment, credential type, batch. Never
  latent skill, activity or attachment, which no organisation observes.
* **"low_employability"** ranks by the predicted chance of a new job without the nudge,
  lowest first: the study's gradient-boosted classifier (:mod:`sim.estimate`) trained
  on the pilot's control arm.
* **"predicted_effect"** ranks by the predicted effect of the nudge, highest first: an
  interacted linear probability model, fitted as a T-learner (ordinary least squares of
  the outcome on the one-hot traits within each arm, scikit-learn's
  ``LinearRegression``), whose prediction ``x'(b_1 - b_0)`` is the conditional
  effect. Linear, because the effect is small beside the outcome's noise: two flexible
  classifiers' difference would mostly rank noise.
* **Who is chosen** (:func:`select`). Within each graduation batch (the nudge goes out
  when a cohort graduates) the ``floor(g * share)`` best-ranked learners of the batch's
  ``g``, plus one more with probability equal to the remainder, as the random design
  rounds; ties (the traits are discrete, so many learners share a score) are broken at
  random. The count matches the random design's in expectation.

Everything here is pure: a scenario, frames and generators in, arrays and models out.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from sim.estimate import DEFAULT_FEATURES
from sim.params import CREDENTIAL_TYPES, DOMAINS, EDUCATION_LEVELS, Scenario
from sim.population import Learners, treat_first

__all__ = [
    "FEATURES",
    "KINDS",
    "TargetingModel",
    "baseline_employability",
    "learn",
    "learn_from_pilot",
    "new_job",
    "pilot_scenario",
    "pilot_seed",
    "select",
    "tertile_codes",
    "trait_frame",
]

#: The pre-treatment traits the models see: the paper's employability features.
FEATURES: tuple[str, ...] = DEFAULT_FEATURES
#: The targeting rules that need a model, and what each ranks by.
KINDS = {
    "low_employability": "predicted chance of a new job without the nudge (lowest first)",
    "predicted_effect": "predicted effect of the nudge on a new job (highest first)",
}
_CATEGORIES = {
    "domain": DOMAINS,
    "education": EDUCATION_LEVELS,
    "credential_type": CREDENTIAL_TYPES,
}
#: Most training rows of a boosted classifier (a random subset beyond): the ranking
#: changes little past ~10^5 learners, the fit's time grows with the rows.
MAX_TRAIN = 200_000


def trait_frame(population: Learners) -> pd.DataFrame:
    """The pre-treatment traits of :data:`FEATURES`, named and typed as in a run's
    learners frame (:meth:`sim.model.CredentialMarket.learners_frame`)."""
    pop = population
    return pd.DataFrame(
        {
            "domain": pd.Categorical.from_codes(pop.domain, DOMAINS),
            "developing": pop.developing,
            "college": pop.college,
            "education": pd.Categorical.from_codes(pop.education, EDUCATION_LEVELS),
            "experience_years": pop.experience,
            "past_tech": pop.past_tech,
            "past_manager": pop.past_manager,
            "employed_baseline": pop.employed0,
            "credential_type": pd.Categorical.from_codes(pop.credential, CREDENTIAL_TYPES),
            "batch": pop.batch,
        }
    )


def new_job(frame: pd.DataFrame) -> np.ndarray:
    """The study's outcome for every learner of a learners frame: a new job, reported on
    the profile by the collection date (0/1)."""
    return frame["seen_job_week"].notna().to_numpy().astype(np.int8)


def _tree_features(frame: pd.DataFrame) -> pd.DataFrame:
    """:data:`FEATURES` for the boosted trees (categoricals with fixed levels)."""
    out = {}
    for col in FEATURES:
        s = frame[col]
        if col in _CATEGORIES:
            out[col] = pd.Categorical(s.astype(str), categories=list(_CATEGORIES[col]))
        else:
            out[col] = s.to_numpy(dtype=float)
    return pd.DataFrame(out, index=frame.index)


def _design(frame: pd.DataFrame, n_batches: int) -> np.ndarray:
    """:data:`FEATURES` one-hot (first level dropped; batch as a category), float64."""
    cols = []
    for col in FEATURES:
        s = frame[col]
        levels = _CATEGORIES.get(col) or (tuple(range(n_batches)) if col == "batch" else None)
        if levels is None:
            cols.append(s.to_numpy(dtype=float)[:, None])
            continue
        values = s.astype(str).to_numpy() if col in _CATEGORIES else s.to_numpy(dtype=int)
        keys = [str(v) for v in levels] if col in _CATEGORIES else list(levels)
        if len(keys) > 1:  # one level only: no column (the intercept carries it)
            cols.append(np.stack([values == k for k in keys[1:]], axis=1).astype(float))
    return np.hstack(cols)


def _subset(n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """All of ``range(n)`` or a sorted random subset of ``size`` of it."""
    return np.arange(n) if n <= size else np.sort(rng.choice(n, size, replace=False))


@dataclass(frozen=True)
class TargetingModel:
    """A ranking learnt on a pilot: :meth:`score` is higher for whom to nudge first."""

    kind: str  # a key of KINDS
    n_train: int  # learners it was fitted on
    model: Any  # the fitted classifier, or the effect coefficients (b_1 - b_0)
    n_batches: int = 1

    def predict(self, traits: pd.DataFrame) -> np.ndarray:
        """The prediction itself: the chance of a new job without the nudge (0-1) or
        the effect of the nudge on it (a difference of probabilities)."""
        if self.kind == "low_employability":
            return self.model.predict_proba(_tree_features(traits))[:, 1]
        return _design(traits, self.n_batches) @ self.model

    def score(self, traits: pd.DataFrame) -> np.ndarray:
        """Priority for a nudge (higher first) of each learner of ``traits``."""
        p = self.predict(traits)
        return -p if self.kind == "low_employability" else p


def learn(
    kind: str, frame: pd.DataFrame, n_batches: int, seed: int = 0, max_train: int = MAX_TRAIN
) -> TargetingModel:
    """Fit the model of targeting rule ``kind`` on a 50/50 study's learners frame.

    ``frame`` needs :data:`FEATURES`, ``treated`` and ``seen_job_week``. ``seed`` makes
    the classifier (and the training subset beyond ``max_train`` rows) reproducible.
    """
    from threadpoolctl import threadpool_limits

    if kind not in KINDS:
        raise ValueError(f"unknown targeting model {kind!r}; expected one of {list(KINDS)}")
    y = new_job(frame).astype(float)
    treated = frame["treated"].to_numpy(dtype=bool)
    rng = np.random.default_rng(seed)
    with threadpool_limits(1):
        if kind == "low_employability":
            from sim.estimate import _classifier  # the study's employability classifier

            rows = np.flatnonzero(~treated)
            rows = rows[_subset(len(rows), max_train, rng)]
            if len(np.unique(y[rows])) < 2:
                raise ValueError("the pilot's control arm has one outcome only; cannot rank")
            clf = _classifier(seed % 100_000).fit(
                _tree_features(frame.iloc[rows]), y[rows].astype(int)
            )
            return TargetingModel(kind, len(rows), clf, n_batches)
        from sklearn.linear_model import LinearRegression

        x = _design(frame, n_batches)
        coef = []
        for arm in (True, False):
            fit = LinearRegression().fit(x[treated == arm], y[treated == arm])
            coef.append(fit.coef_)
        return TargetingModel(kind, len(frame), coef[0] - coef[1], n_batches)


def select(
    scores: np.ndarray, groups: np.ndarray, share: float, rng: np.random.Generator
) -> np.ndarray:
    """Treat the best-scored ``share`` of every group (see the module docstring).

    Within a group of ``g`` learners, the ``floor(g * share)`` highest scores, plus the
    next one with probability ``g * share - floor(g * share)``; ties are broken by a
    uniform draw. Returns a boolean vector aligned with ``scores``.
    """
    scores = np.asarray(scores, dtype=float)
    groups = np.asarray(groups, dtype=np.int64)
    n = len(scores)
    tie = rng.random(n)
    extra = rng.random(n)
    order = np.lexsort((tie, -scores, groups))  # by group, best score first, ties at random
    return treat_first(order, groups, share, extra)


# ---- the pilot -------------------------------------------------------------------------


def pilot_scenario(scenario: Scenario) -> Scenario:
    """The 50/50 study a targeting model learns from: ``scenario`` with the study's
    random design (everything else, the market included, unchanged)."""
    return scenario.with_overrides(
        {"study.treated_share": 0.5, "study.targeting": "random", "study.mirror": "flipped"},
        source=f"{scenario.meta.name}: pilot study",
    )


def pilot_seed(rng: np.random.Generator) -> np.random.SeedSequence:
    """The pilot world's seed, drawn from the targeted world's assignment stream: a
    world of its own, the same for every targeting rule of one seed."""
    return np.random.SeedSequence(int(rng.integers(0, 2**63)))


#: Models of the last pilots run in this process: (pilot scenario, seed) -> kind -> model.
_CACHE: OrderedDict[tuple, dict[str, TargetingModel]] = OrderedDict()
#: Pilots kept (each holds two small models, never the pilot's learners frame).
_CACHE_SIZE = 32


def learn_from_pilot(scenario: Scenario, seed: np.random.SeedSequence, kind: str) -> TargetingModel:
    """Run the pilot study of ``scenario`` (:func:`pilot_scenario`) from ``seed`` and fit
    the model of ``kind`` on its learners frame.

    One pilot serves every rule: its models of all :data:`KINDS` are fitted at once and
    kept for the last :data:`_CACHE_SIZE` pilots run in this process, so the targeting
    rules and treated shares of one seed (a sweep with common seeds) share a pilot.
    """
    from sim.model import CredentialMarket

    if kind not in KINDS:
        raise ValueError(f"unknown targeting model {kind!r}; expected one of {list(KINDS)}")
    pilot = pilot_scenario(scenario)
    key = (pilot.to_toml(), seed.entropy, tuple(seed.spawn_key))
    if key not in _CACHE:
        frame = CredentialMarket(pilot, rng=seed).run().learners
        frame = frame[[*FEATURES, "treated", "seen_job_week"]]
        fit_seed = int(seed.generate_state(1)[0])
        _CACHE[key] = {k: learn(k, frame, pilot.calendar.n_batches, seed=fit_seed) for k in KINDS}
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    _CACHE.move_to_end(key)
    return _CACHE[key][kind]


# ---- who gains: baseline employability in a world without the nudge ---------------------


def baseline_employability(
    frame: pd.DataFrame, seed: int = 0, folds: int = 2, max_train: int = 100_000
) -> np.ndarray:
    """Every learner's predicted chance of a new job in a world where no one is nudged.

    ``frame`` is that world's learners frame. The study's classifier, cross-fitted: the
    learners are split at random into ``folds`` folds, and each fold is scored by a model
    trained on (at most ``max_train`` of) the others, so no learner is scored by a model
    that saw its outcome. Used to say who gains from a policy, not to choose anyone.
    """
    from threadpoolctl import threadpool_limits

    from sim.estimate import _classifier

    n = len(frame)
    y = new_job(frame).astype(int)
    x = _tree_features(frame)
    rng = np.random.default_rng(seed)
    fold = rng.integers(0, folds, n)
    scores = np.full(n, np.nan)
    with threadpool_limits(1):
        for k in range(folds):
            out = fold == k
            train = np.flatnonzero(~out)
            train = train[_subset(len(train), max_train, rng)]
            if len(np.unique(y[train])) < 2:
                scores[out] = float(y[train].mean()) if len(train) else np.nan
                continue
            clf = _classifier(seed % 100_000 * 10 + k).fit(x.iloc[train], y[train])
            scores[out] = clf.predict_proba(x[out])[:, 1]
    return scores


def tertile_codes(scores: Sequence[float] | np.ndarray) -> np.ndarray:
    """0, 1, 2 for the low, medium and high third of ``scores`` (cut at their own 1/3
    and 2/3 quantiles; a score on a cut goes to the lower third)."""
    s = np.asarray(scores, dtype=float)
    q1, q2 = np.quantile(s[np.isfinite(s)], [1 / 3, 2 / 3])
    return np.where(s <= q1, 0, np.where(s <= q2, 1, 2))
