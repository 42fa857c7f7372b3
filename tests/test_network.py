"""The professional graph (sim.network): structure of the default generator, the
networkx interface, and user-supplied graphs in the model."""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import fields

import networkx as nx
import numpy as np
import pytest
from conftest import assert_global_random_state_is, global_random_state, small_scenario
from scipy import sparse

from sim.model import CredentialMarket, Streams
from sim.network import ProfessionalGraph, _assemble, _BlockSampler, build_graph
from sim.population import Employers, Learners, draw_employers, draw_learners

ARRAYS = ("ll_indptr", "ll_indices", "le_indptr", "le_indices", "el_indptr", "el_indices")


def _build(n: int, seed: int, overrides=None):
    """Learners, employers and the default graph, drawn as the model draws them."""
    scn = small_scenario(n, overrides)
    streams = Streams(seed)
    pop_rng = streams.rng("population")
    learners = draw_learners(scn, pop_rng)
    employers = draw_employers(scn, pop_rng)
    graph = build_graph(scn, learners, employers, streams.rng("graph"))
    return scn, learners, employers, graph


@pytest.fixture(scope="module")
def big():
    return _build(20_000, seed=11)


def _rows(indptr: np.ndarray) -> np.ndarray:
    return np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))


def _assert_same_graph(a: ProfessionalGraph, b: ProfessionalGraph) -> None:
    assert (a.n_learners, a.n_employers) == (b.n_learners, b.n_employers)
    for f in ARRAYS:
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f), err_msg=f)


def test_csr_arrays_are_well_formed(big):
    _, learners, employers, g = big
    n, m = len(learners), len(employers)
    assert (g.n_learners, g.n_employers) == (n, m)
    for indptr, indices, rows, cols in (
        (g.ll_indptr, g.ll_indices, n, n),
        (g.le_indptr, g.le_indices, n, m),
        (g.el_indptr, g.el_indices, m, n),
    ):
        assert len(indptr) == rows + 1 and indptr[0] == 0 and indptr[-1] == len(indices)
        assert (np.diff(indptr) >= 0).all()
        assert indices.min(initial=0) >= 0 and indices.max(initial=0) < cols


def test_no_self_loops_or_duplicate_links(big):
    g = big[3]
    src = _rows(g.ll_indptr)
    assert not (src == g.ll_indices).any()
    # rows are sorted and strictly increasing: no link appears twice
    for indptr, indices in (
        (g.ll_indptr, g.ll_indices),
        (g.le_indptr, g.le_indices),
        (g.el_indptr, g.el_indices),
    ):
        rows = _rows(indptr)
        same_row = rows[1:] == rows[:-1]
        assert (indices[1:][same_row] > indices[:-1][same_row]).all()


def test_learner_links_are_symmetric_and_employer_links_mirror(big):
    g = big[3]
    src = _rows(g.ll_indptr)
    fwd = set(zip(src.tolist(), g.ll_indices.tolist(), strict=True))
    assert fwd == {(b, a) for a, b in fwd}
    assert g.n_learner_links * 2 == len(g.ll_indices)
    le = set(zip(_rows(g.le_indptr).tolist(), g.le_indices.tolist(), strict=True))
    el = set(zip(g.el_indices.tolist(), _rows(g.el_indptr).tolist(), strict=True))
    assert le == el


def test_degrees_are_heavy_tailed(big):
    scn, _, _, g = big
    deg = g.learner_degree()
    assert deg.mean() == pytest.approx(scn.graph.mean_degree, rel=0.15)
    assert deg.max() > 10 * deg.mean()
    assert np.median(deg) < deg.mean()  # right-skewed


def test_links_are_homophilous_by_domain_and_country(big):
    """Share of links within a group, against the share under random mixing (sum p^2)."""
    _, learners, _, g = big
    src, dst = _rows(g.ll_indptr), g.ll_indices
    for trait, factor in ((learners.domain, 2.0), (learners.developing, 1.05)):
        within = (trait[src] == trait[dst]).mean()
        p = np.bincount(trait.astype(np.int64)) / len(trait)
        random_mixing = float(p @ p)
        assert within > factor * random_mixing, (within, random_mixing)


def test_employers_link_only_to_their_domain(big):
    _, learners, employers, g = big
    src = _rows(g.le_indptr)
    assert len(src) > 0
    np.testing.assert_array_equal(employers.domain[g.le_indices], learners.domain[src])


def test_more_homophily_gives_more_within_domain_links():
    shares = []
    for h in (0.0, 0.9):
        _, learners, _, g = _build(10_000, seed=3, overrides={"graph.domain_homophily": h})
        src = _rows(g.ll_indptr)
        shares.append((learners.domain[src] == learners.domain[g.ll_indices]).mean())
    assert shares[1] > shares[0] + 0.4


def test_same_seed_same_graph_and_different_seed_differs():
    a = _build(5_000, seed=21)[3]
    b = _build(5_000, seed=21)[3]
    _assert_same_graph(a, b)
    c = _build(5_000, seed=22)[3]
    assert not np.array_equal(a.ll_indptr, c.ll_indptr)


def test_networkx_round_trip(big):
    g = big[3]
    nxg = g.to_networkx()
    n, m = g.n_learners, g.n_employers
    assert nxg.number_of_nodes() == n + m
    assert nxg.number_of_edges() == g.n_learner_links + g.n_employer_links
    kinds = nx.get_node_attributes(nxg, "kind")
    assert all(kinds[v] == "learner" for v in range(n))
    assert all(kinds[v] == "employer" for v in range(n, n + m))
    _assert_same_graph(ProfessionalGraph.from_networkx(nxg), g)


def _user_graph(n: int, n_employers: int, seed: int) -> nx.Graph:
    """A Barabasi-Albert learner graph plus employers following random learners."""
    g = nx.barabasi_albert_graph(n, 3, seed=seed)
    nx.set_node_attributes(g, "learner", "kind")
    rng = np.random.default_rng(seed)
    for e in range(n_employers):
        g.add_node(n + e, kind="employer")
        g.add_edges_from((n + e, int(j)) for j in rng.choice(n, 40, replace=False))
    return g


def test_a_user_networkx_graph_runs_in_the_model():
    n, m = 3_000, 12
    user = _user_graph(n, m, seed=4)
    model = CredentialMarket(small_scenario(n), rng=1, graph=user)
    assert len(model.learners) == n and len(model.employers) == m
    assert model.network.n_employers == m
    expected = np.array([sum(1 for v in user[u] if v < n) for u in range(n)])
    np.testing.assert_array_equal(model.network.learner_degree(), expected)
    res = model.run()
    assert res.series["hires_learners"].sum() > 0
    assert res.learners["shared"].any()
    # the same user graph and seed reproduce the run
    again = CredentialMarket(small_scenario(n), rng=1, graph=user).run()
    np.testing.assert_array_equal(again.learners["first_job_week"], res.learners["first_job_week"])


def test_a_professional_graph_can_be_passed_directly():
    n = 2_000
    pg = ProfessionalGraph.from_networkx(_user_graph(n, 8, seed=9))
    model = CredentialMarket(small_scenario(n), rng=2, graph=pg)
    assert model.network is pg
    model.step()


def test_graph_with_the_wrong_learner_count_is_rejected():
    user = _user_graph(2_999, 10, seed=1)
    with pytest.raises(ValueError, match=r"2999 learners.*3000 learners"):
        CredentialMarket(small_scenario(3_000), rng=1, graph=user)


def test_graph_without_employers_is_rejected_clearly():
    user = _user_graph(2_000, 0, seed=1)
    with pytest.raises(ValueError, match="employer"):
        CredentialMarket(small_scenario(2_000), rng=1, graph=user)


def test_nodes_without_kind_are_rejected():
    g = _user_graph(500, 3, seed=2)
    del g.nodes[7]["kind"]
    with pytest.raises(ValueError, match="kind") as err:
        ProfessionalGraph.from_networkx(g)
    assert "7" in str(err.value)
    g.nodes[7]["kind"] = "recruiter"
    with pytest.raises(ValueError, match="kind"):
        ProfessionalGraph.from_networkx(g)


def test_from_networkx_drops_self_loops_and_employer_employer_links():
    g = nx.Graph()
    g.add_nodes_from(range(4), kind="learner")
    g.add_nodes_from(["e1", "e2"], kind="employer")
    g.add_edges_from([(0, 1), (1, 1), (2, 3), ("e1", "e2"), (0, "e1"), ("e2", 3)])
    pg = ProfessionalGraph.from_networkx(g)
    assert (pg.n_learners, pg.n_employers) == (4, 2)
    assert pg.n_learner_links == 2
    assert pg.learner_neighbors(1).tolist() == [0]
    assert pg.employer_neighbors(0).tolist() == [0]
    assert pg.employer_neighbors(3).tolist() == [1]
    assert pg.employer_followees(1).tolist() == [3]


def test_build_graph_leaves_global_random_state_alone():
    before = global_random_state()
    _build(3_000, seed=5)
    ProfessionalGraph.from_networkx(_user_graph(300, 2, seed=5))
    assert_global_random_state_is(before)


# ---- the fast generator gives exactly what the plain one gave ----------------------------


def _pinned_inputs():
    """Learners, employers and graph parameters fixed here, independent of the defaults."""
    n, m = 3_000, 12
    rng = np.random.default_rng(2024)
    scn = small_scenario(
        n,
        {
            "graph.mean_degree": 12.0,
            "graph.degree_exponent": 2.5,
            "graph.domain_homophily": 0.6,
            "graph.country_homophily": 0.7,
            "graph.employer_links_per_learner": 2.0,
        },
    )
    learners = Learners(**{f.name: np.zeros(n) for f in fields(Learners)})
    learners.domain = rng.integers(0, 4, n).astype(np.int8)
    learners.developing = rng.random(n) < 0.9
    learners.activity = (rng.random(n) * 2).astype(np.float32)
    employers = Employers(
        domain=np.arange(m, dtype=np.int8) % 4,
        size=rng.random(m) * 2,
        developing=np.arange(m) % 8 >= 4,  # fixed: the graph does not read it
    )
    return scn, learners, employers


@pytest.mark.parametrize("threads", [False, True], ids=["one core", "two threads"])
def test_default_graph_at_a_fixed_seed_is_unchanged(threads):
    """A digest of every array, as the generator gave it before it was made fast (scipy's
    COO->CSR, a searchsorted per draw). A change of the model, or of the order in which it
    consumes its random stream, changes this on purpose; a speed-up must not, and neither
    must building it on two threads."""
    scn, learners, employers = _pinned_inputs()
    with ThreadPoolExecutor(1) as pool:
        g = build_graph(
            scn, learners, employers, np.random.default_rng(7), pool if threads else None
        )
    digest = hashlib.sha256()
    for f in ARRAYS:
        digest.update(np.ascontiguousarray(getattr(g, f)).tobytes())
    assert (g.n_learner_links, g.n_employer_links) == (16_833, 3_103)
    assert digest.hexdigest() == (
        "a4aea5d3ed57c6586eb61d0314f025054c0309f2c9ac3480f26e672d01d7a330"
    )


@pytest.mark.parametrize(
    "weights",
    [
        "pareto",  # heavy tail: a few nodes span many buckets
        "tiny",  # most weight on a few nodes: many nodes share a bucket
        "zeros",  # zero weights: ties in the cumulative weights
        "one",
    ],
)
def test_partner_search_is_exactly_searchsorted(weights):
    rng = np.random.default_rng(3)
    n = 1 if weights == "one" else 4_000
    w = {
        "pareto": lambda: rng.pareto(1.5, n) + 1.0,
        "tiny": lambda: np.where(rng.random(n) < 0.01, 1e6, 1e-9 * rng.random(n)),
        "zeros": lambda: np.where(rng.random(n) < 0.3, 0.0, rng.random(n)),
        "one": lambda: np.ones(n),
    }[weights]()
    block = rng.integers(0, 3, n)
    s = _BlockSampler(w, block, 3)
    cum = s.cum
    u = np.concatenate(
        [
            rng.random(50_000) * cum[-1],
            cum,  # exact hits
            np.nextafter(cum, 0),
            np.nextafter(cum, np.inf),
            s.lo,
            s.hi,
            [0.0, cum[-1]],
        ]
    )
    np.testing.assert_array_equal(s.search(u), np.searchsorted(cum, u, side="right"))
    blocks = rng.integers(0, 3, 1_000)
    drawn = s.draw(blocks, np.random.default_rng(1))
    assert ((block[drawn] == blocks) | (s.counts[blocks] == 0)).all()


def test_csr_assembly_matches_scipy():
    """Self-loops dropped, links symmetrised, duplicates merged, rows sorted: as scipy's
    canonical CSR format has them."""
    rng = np.random.default_rng(5)
    n, m, k = 300, 7, 5_000
    a, b = rng.integers(0, n, k), rng.integers(0, n, k)
    li, ej = rng.integers(0, n, 800), rng.integers(0, m, 800)
    g = _assemble(n, m, a, b, li, ej)
    keep = a != b

    def canonical(rows, cols, shape):
        mat = sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=shape)
        mat.sum_duplicates()
        return mat.indptr, mat.indices

    for (indptr, indices), (ref_ptr, ref_idx) in (
        (
            (g.ll_indptr, g.ll_indices),
            canonical(np.r_[a[keep], b[keep]], np.r_[b[keep], a[keep]], (n, n)),
        ),
        ((g.le_indptr, g.le_indices), canonical(li, ej, (n, m))),
        ((g.el_indptr, g.el_indices), canonical(ej, li, (m, n))),
    ):
        assert indptr.dtype == np.int64 and indices.dtype == np.int32
        np.testing.assert_array_equal(indptr, ref_ptr)
        np.testing.assert_array_equal(indices, ref_idx)
