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

import sys
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import networkx as nx
import numpy as np

from sim.params import DOMAINS, Scenario
from sim.population import Employers, Learners

__all__ = ["ProfessionalGraph", "build_graph", "run_both"]


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
        return _assemble(
            len(learners), len(employers), ll_a[:, 0], ll_a[:, 1], le_a[:, 0], le_a[:, 1]
        )


def _sorted(nodes: list) -> list:
    try:
        return sorted(nodes)
    except TypeError:
        return nodes


def _pack(rows: np.ndarray, cols: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Links as int64 keys ``row << 32 | col``: sorting keys sorts by row, then column."""
    key = np.left_shift(rows, 32, out=out, dtype=np.int64)
    key |= cols
    return key


def _csr(n_rows: int, n_cols: int, src: np.ndarray, dst: np.ndarray):
    """Row-sorted, duplicate-free CSR arrays of the links ``src -> dst``."""
    return _csr_from_keys(n_rows, _pack(src, dst))


def _csr_from_keys(n_rows: int, key: np.ndarray, drop_loops: bool = False):
    """CSR arrays of the links packed by :func:`_pack` (``key`` is overwritten).

    One sort orders the links by row, then column; keeping the first of each run of equal
    keys (and, with ``drop_loops``, no ``row == col``) leaves exactly the entries of
    scipy's canonical CSR format: sorted, no duplicates. Only masks are made, no copy of
    the keys: at 10M links every copy is 80 MB.
    """
    key.sort()
    words = key.view(np.uint32)  # (low, high) 32-bit halves of each key
    cols, rows = (
        (words[0::2], words[1::2]) if sys.byteorder == "little" else (words[1::2], words[0::2])
    )
    keep = np.empty(len(key), dtype=bool)
    keep[:1] = True
    np.not_equal(key[1:], key[:-1], out=keep[1:])
    if drop_loops:
        keep &= cols != rows
    indices = cols[keep].view(np.int32)  # ids < 2**31: the same numbers
    key >>= 32  # now the rows
    counts = np.bincount(key, minlength=n_rows)
    dropped = key[~keep]
    if len(dropped):
        counts -= np.bincount(dropped, minlength=n_rows)
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    return indptr, indices


def _assemble(
    n: int,
    m: int,
    a: np.ndarray,
    b: np.ndarray,
    li: np.ndarray,
    ej: np.ndarray,
    pool: Executor | None = None,
):
    """Drop self-loops, symmetrise, deduplicate and pack links into a ProfessionalGraph
    (the learner-learner and the learner-employer links on two cores, with ``pool``)."""
    if max(n, m) >= 1 << 31:
        raise ValueError(f"graph too large for int32 node ids: {n} learners, {m} employers")

    def learner_links():
        k = len(a)
        key = np.empty(2 * k, dtype=np.int64)  # both directions of every link
        _pack(a, b, out=key[:k])
        _pack(b, a, out=key[k:])
        return _csr_from_keys(n, key, drop_loops=True)

    def employer_links():
        le_indptr, le_indices = _csr(n, m, li, ej)
        src = np.repeat(np.arange(n, dtype=np.int32), np.diff(le_indptr))
        return (le_indptr, le_indices, *_csr(m, n, le_indices, src))

    (ll_indptr, ll_indices), employer = run_both(pool, learner_links, employer_links)
    return ProfessionalGraph(n, m, ll_indptr, ll_indices, *employer)


class _BlockSampler:
    """Draw nodes with probability proportional to weight within contiguous blocks.

    Nodes are ordered by block; a draw in block ``b`` is a uniform number ``u`` in the
    block's stretch ``[lo_b, hi_b)`` of the cumulative weights ``cum``, and the node drawn
    is the first whose ``cum`` exceeds ``u`` (``searchsorted(cum, u, "right")``).

    The search uses a guide table instead of a binary search over all nodes: values are
    cut into ``BUCKETS_PER_NODE * n`` equal-width buckets by the monotone map
    ``q(x) = min(floor(x * scale), q_max)``. Every node of a lower bucket than ``q(u)``
    has ``cum <= u`` and every node of a higher bucket ``cum > u``, so the answer lies in
    ``u``'s own bucket (a handful of nodes) and a branch-free binary search of a few steps
    finds it. The result is exactly ``searchsorted``'s, at a fraction of the cache misses.
    """

    BUCKETS_PER_NODE = 2

    def __init__(self, weight: np.ndarray, block: np.ndarray, n_blocks: int):
        n = len(weight)
        # Blocks are few: a 16-bit key makes the stable sort a radix sort.
        key = block.astype(np.uint16) if n_blocks <= 1 << 16 else block
        order = np.argsort(key, kind="stable")
        # A search can answer n (u at the very top): that maps to the last node.
        self._order_pad = np.concatenate([order, order[-1:]])
        self.order = self._order_pad[:n]
        cum = np.cumsum(weight[order])
        counts = np.bincount(block, minlength=n_blocks)
        ends = np.cumsum(counts)
        starts = ends - counts
        self.lo = np.where(starts > 0, cum[np.maximum(starts - 1, 0)], 0.0)
        self.hi = np.where(ends > 0, cum[np.maximum(ends - 1, 0)], 0.0)
        self._width = self.hi - self.lo
        self.counts = counts

        # The guide table: the first node of each bucket.
        total = float(cum[-1]) if n else 0.0
        n_buckets = self.BUCKETS_PER_NODE * n
        self._scale = n_buckets / total if 0 < total < np.inf else 0.0
        self._q_max = n_buckets + 1  # q(u) for u up to the total, with room for rounding
        per_bucket = np.bincount(self._bucket(cum), minlength=self._q_max + 1)
        self._first = np.zeros(self._q_max + 2, dtype=np.intp)
        np.cumsum(per_bucket, out=self._first[1:])
        # Search span: a power of two above the largest bucket; +inf past the last node.
        self._span = 1 << int(per_bucket.max(initial=0)).bit_length()
        self._cum_pad = np.concatenate([cum, np.full(self._span, np.inf)])
        self.cum = self._cum_pad[:n]

    def _bucket(self, x: np.ndarray) -> np.ndarray:
        t = np.multiply(x, self._scale)  # x >= 0, so truncation is floor
        np.minimum(t, self._q_max, out=t)
        return t.astype(np.intp)

    def search(self, u: np.ndarray) -> np.ndarray:
        """``np.searchsorted(self.cum, u, side="right")`` for ``u >= 0``."""
        pos = np.take(self._first, self._bucket(u))
        probe = np.empty_like(pos)
        below = np.empty(len(u), dtype=bool)
        vals = np.empty(len(u), dtype=np.float64)
        step = self._span >> 1
        while step:
            # Here cum[:pos] <= u and the answer is < pos + 2 * step.
            np.add(pos, step - 1, out=probe)
            np.take(self._cum_pad, probe, out=vals)
            np.less_equal(vals, u, out=below)
            pos += below * step if step > 1 else below
            step >>= 1
        return pos

    def draw(self, blocks: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One node from each block in ``blocks`` (with a single block, only its length
        matters): :meth:`pick` with one uniform per draw from ``rng``."""
        return self.pick(blocks, rng.random(len(blocks)))

    def pick(self, blocks: np.ndarray, u: np.ndarray) -> np.ndarray:
        """The node of each block in ``blocks`` that the uniform ``u`` (overwritten) picks.
        The search runs in chunks whose temporaries stay in the cache."""
        out = np.empty(len(blocks), dtype=np.int32)
        for i in range(0, len(u), _CHUNK):
            uc = u[i : i + _CHUNK]
            # u = lo[b] + r * (hi[b] - lo[b]), operation for operation (same floats).
            if len(self.lo) == 1:
                uc *= self._width[0]
                uc += self.lo[0]
            else:
                bc = blocks[i : i + _CHUNK]
                uc *= np.take(self._width, bc)
                uc += np.take(self.lo, bc)
            np.take(self._order_pad, self.search(uc), out=out[i : i + _CHUNK])
        return out


#: Draws searched at a time: 64k draws' temporaries (~0.5 MB an array) fit the cache.
_CHUNK = 1 << 16


def build_graph(
    scenario: Scenario,
    learners: Learners,
    employers: Employers,
    rng: np.random.Generator,
    pool: Executor | None = None,
) -> ProfessionalGraph:
    """The default professional graph (see the module docstring).

    Every uniform is drawn first, in a fixed order; the searches that turn them into
    links, and the sorts that pack the links, are then independent of each other, and
    with ``pool`` (an executor with a free worker) half of them run there, on another
    core. The graph is the same either way.
    """
    g = scenario.graph
    n, m = len(learners), len(employers)
    if max(n, m) >= 1 << 31:
        raise ValueError(f"graph too large for int32 node ids: {n} learners, {m} employers")
    a = g.degree_exponent
    weight = (1.0 - rng.random(n)) ** (-1.0 / (a - 1.0)) * np.sqrt(learners.activity)
    cutoff = np.sqrt(n * max(g.mean_degree, 1.0)) / (g.mean_degree / 2.0) * weight.mean()
    weight = np.minimum(weight, cutoff)
    stubs = rng.poisson(weight * (g.mean_degree / 2.0) / weight.mean())
    src = np.repeat(np.arange(n, dtype=np.int32), stubs)
    k = len(src)
    same_dom = rng.random(k) < g.domain_homophily
    same_cty = rng.random(k) < g.country_homophily
    nd = len(DOMAINS)
    dom, cty = learners.domain.astype(np.int64), learners.developing.astype(np.int64)
    # Four kinds of block: a cell (domain x country group), a domain, a country group and
    # the whole population; each link's kind is drawn above, its block is its source's.
    cell = dom * 2 + cty
    src_cell = np.repeat(cell.astype(np.int8), stubs)
    kinds = {  # each kind's block of every learner, and the number of blocks
        "cell": (cell, 2 * nd),
        "dom": (dom, nd),
        "cty": (cty, 2),
        "all": (np.zeros(n, np.int64), 1),
    }
    idx = {
        "cell": np.flatnonzero(same_dom & same_cty),
        "dom": np.flatnonzero(same_dom & ~same_cty),
        "cty": np.flatnonzero(~same_dom & same_cty),
        "all": np.flatnonzero(~same_dom & ~same_cty),
    }
    del same_dom, same_cty
    blocks = {
        "cell": src_cell[idx["cell"]],
        "dom": src_cell[idx["dom"]] >> 1,
        "cty": src_cell[idx["cty"]] & 1,
        "all": idx["all"],
    }
    del src_cell
    u = {kind: rng.random(len(idx[kind])) for kind in kinds}
    # Employers follow learners of their own domain.
    n_dom = np.bincount(dom, minlength=nd)
    size_dom = np.bincount(employers.domain, weights=employers.size, minlength=nd)
    e_dom = employers.domain
    e_links = rng.poisson(
        g.employer_links_per_learner * n_dom[e_dom] * employers.size / size_dom[e_dom]
    )
    e_src = np.repeat(np.arange(m, dtype=np.int32), e_links)
    e_blocks = employers.domain[e_src]
    u_employers = rng.random(len(e_src))

    dst = np.empty(k, dtype=np.int32)

    def search(kind: str) -> np.ndarray | None:
        """Fill ``dst`` for one kind of link (the domain sampler also draws the
        employers' links, returned); a sampler lives only as long as it is needed."""
        sampler = _BlockSampler(weight, *kinds[kind])
        dst[idx[kind]] = sampler.pick(blocks[kind], u[kind])
        return sampler.pick(e_blocks, u_employers) if kind == "dom" else None

    # about half of the draws each: cell and country links; domain, employer and any links
    _, (e_dst, _) = run_both(
        pool,
        lambda: [search(kind) for kind in ("cell", "cty")],
        lambda: [search(kind) for kind in ("dom", "all")],
    )
    return _assemble(n, m, src, dst, e_dst, e_src, pool)


def run_both(pool: Executor | None, first: Callable[[], Any], second: Callable[[], Any]):
    """``(first(), second())``, the first on ``pool`` while the second runs here (both
    here, in order, without a pool): two independent halves of a job on two cores."""
    if pool is None:
        return first(), second()
    running = pool.submit(first)
    try:
        out = second()
    finally:
        done = running.result()  # wait even if ``second`` failed: it may share arrays
    return done, out
