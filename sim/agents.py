"""Learner and Employer: Mesa agents that are views onto the model's arrays.

The weekly step works on whole arrays (see :mod:`sim.dynamics`); an agent holds only
its index and reads its state from the model, so what you inspect in a notebook
(``learner.shared``, ``learner.job``, ``learner.neighbors``) is always the state the step
uses, never a copy that could drift from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import mesa

from sim.dynamics import NO_WEEK
from sim.params import CREDENTIAL_TYPES, DOMAINS, EDUCATION_LEVELS

if TYPE_CHECKING:
    from sim.model import CredentialMarket

__all__ = ["Employer", "Job", "Learner"]


@dataclass(frozen=True)
class Job:
    """The job a learner holds."""

    employer: int  # employer index (-1: a job held since before the simulation)
    in_scope: bool  # tech or managerial title


class Learner(mesa.Agent):
    """One course graduate. All attributes are read from ``model.learners_state``."""

    model: CredentialMarket

    def __init__(self, model: CredentialMarket, idx: int) -> None:
        super().__init__(model)
        self.idx = idx

    def __repr__(self) -> str:
        arm = "treated" if self.treated else "control"
        return (
            f"Learner({self.idx}, {self.domain}, {arm}, shared={self.shared}, "
            f"employed={self.employed})"
        )

    # pre-treatment traits
    @property
    def domain(self) -> str:
        """Domain of the credential."""
        return DOMAINS[self.model.population.domain[self.idx]]

    @property
    def developing(self) -> bool:
        """Lives in a developing country."""
        return bool(self.model.population.developing[self.idx])

    @property
    def education(self) -> str:
        """Highest education level on the profile."""
        return EDUCATION_LEVELS[self.model.population.education[self.idx]]

    @property
    def experience(self) -> float:
        """Years of work experience."""
        return float(self.model.population.experience[self.idx])

    @property
    def credential_type(self) -> str:
        """Kind of credential earned."""
        return CREDENTIAL_TYPES[self.model.population.credential[self.idx]]

    @property
    def matched(self) -> bool:
        """The study can observe this learner's profile."""
        return bool(self.model.population.matched[self.idx])

    @property
    def activity(self) -> float:
        """Network activity (median 1)."""
        return float(self.model.population.activity[self.idx])

    @property
    def skill(self) -> float:
        """Latent true skill (no employer sees it)."""
        return float(self.model.population.skill[self.idx])

    @property
    def grant_week(self) -> int:
        """Week the credential was granted (randomization)."""
        return int(self.model.population.grant_week[self.idx])

    @property
    def treated(self) -> bool:
        """Assigned to the nudge."""
        return bool(self.model.treated[self.idx])

    # dynamic state
    @property
    def shared(self) -> bool:
        """Has shared the credential on the profile."""
        return bool(self.model.state.shared[self.idx])

    @property
    def share_week(self) -> int | None:
        """Week of sharing, or None."""
        w = int(self.model.state.share_week[self.idx])
        return None if w == NO_WEEK else w

    @property
    def employed(self) -> bool:
        """Holds a job now."""
        return bool(self.model.state.employed[self.idx])

    @property
    def job(self) -> Job | None:
        """The job held now, or None."""
        st = self.model.state
        if not st.employed[self.idx]:
            return None
        return Job(int(st.job_employer[self.idx]), bool(st.job_in_scope[self.idx]))

    @property
    def jobs_started(self) -> int:
        """Jobs started during the simulation (including burn-in)."""
        return int(self.model.state.jobs_started[self.idx])

    @property
    def new_job_week(self) -> int | None:
        """Start week of the first new job counted by the study's definition, or None."""
        w = int(self.model.state.first_job_week[self.idx])
        return None if w == NO_WEEK else w

    @property
    def views(self) -> int:
        """Certificate views by others."""
        return int(self.model.state.views[self.idx])

    @property
    def own_views(self) -> int:
        """Views of the certificate by the learner themself."""
        return int(self.model.state.own_views[self.idx])

    # the graph
    @property
    def neighbors(self) -> list[Learner]:
        """Learners linked to this one."""
        return [self.model.learner(int(j)) for j in self.model.network.learner_neighbors(self.idx)]

    @property
    def employer_links(self) -> list[Employer]:
        """Employers whose recruiters follow this learner."""
        return [
            self.model.employer(int(e)) for e in self.model.network.employer_neighbors(self.idx)
        ]


class Employer(mesa.Agent):
    """A firm in one domain and country group, with a block of its segment's vacancy
    slots in proportion to its size (see :class:`sim.dynamics.Market`)."""

    model: CredentialMarket

    def __init__(self, model: CredentialMarket, idx: int) -> None:
        super().__init__(model)
        self.idx = idx

    def __repr__(self) -> str:
        return f"Employer({self.idx}, {self.domain}, size={self.size:.2f})"

    @property
    def domain(self) -> str:
        """Domain the employer hires in."""
        return DOMAINS[self.model.market.employers.domain[self.idx]]

    @property
    def size(self) -> float:
        """Relative size (mean 1): share of vacancies and of recruiter links."""
        return float(self.model.market.employers.size[self.idx])

    @property
    def open_vacancies(self) -> int:
        """Vacancies open now (its slots in the segment's steady stock)."""
        return int(self.model.market.employer_slots[self.idx, 1])

    @property
    def developing(self) -> bool:
        """Whether it hires in the developing-country group."""
        return bool(self.model.market.employers.developing[self.idx])

    @property
    def followees(self) -> list[Learner]:
        """Learners this employer's recruiters follow."""
        return [self.model.learner(int(j)) for j in self.model.network.employer_followees(self.idx)]
