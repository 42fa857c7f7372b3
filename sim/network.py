"""The professional graph: networkx in and out, compact arrays inside.

A :class:`ProfessionalGraph` holds two adjacency structures in CSR form (``indptr``,
``indices``), which is what the weekly step reads:

* learner-learner links (undirected, symmetric), and
* learner-employer links (a recruiter of the employer follows the learner).

networkx is the interface: :meth:`ProfessionalGraph.to_networkx` returns a graph whose
nodes ``0 .. n_learners-1`` are learners and ``n_learners ..`` employers (node attribute
``kind``), and :meth:`ProfessionalGraph.from_networkx` reads such a graph back, so a user
can build their own graph with any networkx generator and pass it to the model.

The default generator (:func:`build_graph`) is a Chung-Lu style model with homophily:

* every learner gets a Pareto weight with tail exponent ``degree_exponent``, so expected
  degrees are heavy-tailed (weight times activity, so active users have more links);
* each learner initiates ``Poisson(w_i * mean_degree / 2 / mean(w))`` links; a link goes
  to the learner's own domain with probability ``domain_homophily`` and to its own country
  group with probability ``country_homophily`` (independently), the partner being drawn
  with probability proportional to weight within the chosen block;
* the expected degree is capped at the structural cut-off ``sqrt(n * mean_degree)``;
* each domain has ``employer_links_per_learner`` links per learner to its employers,
  shared among them in proportion to size; an employer's followees are drawn from its
  domain with probability proportional to weight.

Duplicate links and self-loops are dropped. All draws come from the generator passed in.
"""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx
import numpy as np
from scipy import sparse

from sim.params import DOMAINS, Scenario
from sim.population import Employers, Learners

__all__ = ["ProfessionalGraph", "build_graph"]


@dataclass
class ProfessionalGraph:
    """Learner-learner and learner-employer adjacency in CSR arrays."""

    n_learners: int
    n_employers: int
    ll_indptr: np.ndarray  # int64, len n_learners + 1
    ll_indices: np.ndarray  # int32, learner ids
    le_indptr: np.ndarray  # int64, len n_learners + 1
    le_indices: np.ndarray  # int32, employer ids
    el_indptr: np.ndarray  # int64, len n_employers + 1
    el_indices: np.ndarray  # int32, learner ids

    @property
    def n_learner_links(self) -> int:
        """Undirected learner-learner links."""
        return len(self.ll_indices) // 2

    @property
    def n_employer_links(self) -> int:
        """Learner-employer links."""
        return len(self.le_indices)

    def learner_degree(self) -> np.ndarray:
        """Number of learner neighbours of each learner."""
        return np.diff(self.ll_indptr)

    def learner_neighbors(self, i: int) -> np.ndarray:
        """Learner ids linked to learner ``i``."""
        return self.ll_indices[self.ll_indptr[i] : self.ll_indptr[i + 1]]

    def employer_neighbors(self, i: int) -> np.ndarray:
        """Employer ids linked to learner ``i``."""
        return self.le_indices[self.le_indptr[i] : self.le_indptr[i + 1]]

    def employer_followees(self, e: int) -> np.ndarray:
        """Learner ids linked to employer ``e``."""
        return self.el_indices[self.el_indptr[e] : self.el_indptr[e + 1]]

    # ---- networkx interface ---------------------------------------------------------
    def to_networkx(self) -> nx.Graph:
        """The graph as networkx: learners ``0..n-1``, employers ``n..n+m-1``."""
        g = nx.Graph()
        n = self.n_learners
        g.add_nodes_from(range(n), kind="learner")
        g.add_nodes_from(range(n, n + self.n_employers), kind="employer")
        src = np.repeat(np.arange(n), np.diff(self.ll_indptr))
        keep = src < self.ll_indices
        g.add_edges_from(zip(src[keep].tolist(), self.ll_indices[keep].tolist(), strict=True))
        src = np.repeat(np.arange(n), np.diff(self.le_indptr))
        g.add_edges_from(zip(src.tolist(), (self.le_indices + n).tolist(), strict=True))
        return g

    @classmethod
    def from_networkx(cls, g: nx.Graph) -> ProfessionalGraph:
        """Read a graph whose nodes carry ``kind`` = ``"learner"`` or ``"employer"``.

        Learners are numbered in the order of their node labels (sorted when sortable),
        then employers likewise. Links between two employers are ignored.
        """
        kinds = nx.get_node_attributes(g, "kind")
        missing = [v for v in g.nodes if kinds.get(v) not in ("learner", "employer")]
        if missing:
            raise ValueError(
                f"graph: {len(missing)} nodes lack a 'kind' attribute of 'learner' or "
                f"'employer' (e.g. node {missing[0]!r})"
            )
        learners = _sorted([v for v in g.nodes if kinds[v] == "learner"])
        employers = _sorted([v for v in g.nodes if kinds[v] == "employer"])
        lid = {v: i for i, v in enumerate(learners)}
        eid = {v: i for i, v in enumerate(employers)}
        ll, le = [], []
        for u, v in g.edges:
            if u == v:
                continue
            if u in lid and v in lid:
                ll.append((lid[u], lid[v]))
            elif u in lid and v in eid:
                le.append((lid[u], eid[v]))
            elif v in lid and u in eid:
                le.append((lid[v], eid[u]))
        ll_a = np.array(ll, dtype=np.int64).reshape(-1, 2)
        le_a = np.array(le, dtype=np.int64).reshape(-1, 2)
        return _assemble(len(learners), len(employers), ll_a[:, 0], ll_a[:, 1],
                         le_a[:, 0], le_a[:, 1])


def _sorted(nodes: list) -> list:
    try:
        return sorted(nodes)
    except TypeError:
        return nodes


def _csr(n_rows: int, n_cols: int, src: np.ndarray, dst: np.ndarray):
    """Row-sorted, duplicate-free CSR arrays of the links ``src -> dst``.

    scipy's COO-to-CSR conversion is a counting sort, linear in the number of links.
    """
    mat = sparse.csr_matrix(
        (np.ones(len(src), dtype=np.int8), (src, dst)), shape=(n_rows, n_cols)
    )
    mat.sum_duplicates()
    return mat.indptr.astype(np.int64), mat.indices.astype(np.int32)


def _assemble(n: int, m: int, a: np.ndarray, b: np.ndarray, li: np.ndarray, ej: np.ndarray):
    """Drop self-loops, symmetrise, deduplicate and pack links into a ProfessionalGraph."""
    keep = a != b
    a, b = a[keep], b[keep]
    ll_indptr, ll_indices = _csr(n, n, np.r_[a, b], np.r_[b, a])
    le_indptr, le_indices = _csr(n, m, li, ej)
    src = np.repeat(np.arange(n), np.diff(le_indptr))
    el_indptr, el_indices = _csr(m, n, le_indices, src)
    return ProfessionalGraph(n, m, ll_indptr, ll_indices, le_indptr, le_indices,
                             el_indptr, el_indices)


class _BlockSampler:
    """Draw nodes with probability proportional to weight within contiguous blocks."""

    def __init__(self, weight: np.ndarray, block: np.ndarray, n_blocks: int):
        self.order = np.argsort(block, kind="stable")
        self.cum = np.cumsum(weight[self.order])
        counts = np.bincount(block, minlength=n_blocks)
        ends = np.cumsum(counts)
        starts = ends - counts
        self.lo = np.where(starts > 0, self.cum[np.maximum(starts - 1, 0)], 0.0)
        self.hi = np.where(ends > 0, self.cum[np.maximum(ends - 1, 0)], 0.0)
        self.counts = counts

    def draw(self, blocks: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        u = self.lo[blocks] + rng.random(len(blocks)) * (self.hi[blocks] - self.lo[blocks])
        pos = np.searchsorted(self.cum, u, side="right")
        return self.order[np.minimum(pos, len(self.order) - 1)]


def build_graph(
    scenario: Scenario, learners: Learners, employers: Employers, rng: np.random.Generator
) -> ProfessionalGraph:
    """The default professional graph (see the module docstring)."""
    g = scenario.graph
    n, m = len(learners), len(employers)
    a = g.degree_exponent
    weight = (1.0 - rng.random(n)) ** (-1.0 / (a - 1.0)) * np.sqrt(learners.activity)
    cutoff = np.sqrt(n * max(g.mean_degree, 1.0)) / (g.mean_degree / 2.0) * weight.mean()
    weight = np.minimum(weight, cutoff)
    stubs = rng.poisson(weight * (g.mean_degree / 2.0) / weight.mean())
    src = np.repeat(np.arange(n, dtype=np.int64), stubs)
    k = len(src)
    same_dom = rng.random(k) < g.domain_homophily
    same_cty = rng.random(k) < g.country_homophily
    nd = len(DOMAINS)
    dom, cty = learners.domain.astype(np.int64), learners.developing.astype(np.int64)
    # Four kinds of block: the whole population, a domain, a country group, a cell.
    cell = dom * 2 + cty
    samplers = {
        "cell": _BlockSampler(weight, cell, 2 * nd),
        "dom": _BlockSampler(weight, dom, nd),
        "cty": _BlockSampler(weight, cty, 2),
        "all": _BlockSampler(weight, np.zeros(n, dtype=np.int64), 1),
    }
    dst = np.empty(k, dtype=np.int64)
    for name, mask in (
        ("cell", same_dom & same_cty),
        ("dom", same_dom & ~same_cty),
        ("cty", ~same_dom & same_cty),
        ("all", ~same_dom & ~same_cty),
    ):
        block = {"cell": cell, "dom": dom, "cty": cty, "all": np.zeros(n, np.int64)}[name]
        idx = np.flatnonzero(mask)
        dst[idx] = samplers[name].draw(block[src[idx]], rng)

    # Employers follow learners of their own domain.
    n_dom = np.bincount(dom, minlength=nd)
    size_dom = np.bincount(employers.domain, weights=employers.size, minlength=nd)
    e_dom = employers.domain
    e_links = rng.poisson(
        g.employer_links_per_learner * n_dom[e_dom] * employers.size / size_dom[e_dom]
    )
    e_src = np.repeat(np.arange(m, dtype=np.int64), e_links)
    e_dst = samplers["dom"].draw(employers.domain[e_src].astype(np.int64), rng)
    return _assemble(n, m, src, dst, e_dst, e_src)
