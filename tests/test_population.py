"""Helpers of sim.population that replace numpy routines for speed: same results."""

from __future__ import annotations

import numpy as np
import pytest

from sim.population import _categorical, _lexsort2


@pytest.mark.parametrize("p", [[0.5, 0.5], [0.1, 0.0, 0.6, 0.3, 0.0], [1.0], [0.2, 0.8, 0.0]])
def test_categorical_is_the_inverse_cdf_by_searchsorted(p):
    p = np.array(p)
    got = _categorical(np.random.default_rng(1), p, 20_000)
    cdf = np.cumsum(p)
    cdf /= cdf[-1]
    u = np.random.default_rng(1).random(20_000)
    np.testing.assert_array_equal(got, np.searchsorted(cdf, u, side="right").astype(np.int8))
    assert got.dtype == np.int8


@pytest.mark.parametrize("groups", ["small", "negative", "wide"])
@pytest.mark.parametrize("ties", [False, True])
def test_lexsort2_is_lexsort(groups, ties):
    rng = np.random.default_rng(2)
    n = 10_000
    key = rng.random(n)
    if ties:  # repeated keys, within and across groups: broken by position
        key = np.round(key, 2)
    g = {
        "small": rng.integers(0, 900, n),
        "negative": rng.integers(-5, 5, n),
        "wide": rng.integers(0, 1 << 40, n) // (1 << 30),
    }[groups]
    np.testing.assert_array_equal(_lexsort2(key, g), np.lexsort((key, g)))


def test_lexsort2_handles_empty_and_single():
    for n in (0, 1):
        np.testing.assert_array_equal(
            _lexsort2(np.zeros(n), np.zeros(n, np.int64)), np.lexsort((np.zeros(n), np.zeros(n)))
        )
