"""The scenario schema: defaults, ranges, consistency and error messages (sim.params).

Bounds are read from the schema itself (``field_info``), so the properties keep holding
when a range is changed. A few fields are *coupled* by a consistency rule (batches,
prior precisions, matched vs. population shares); they are tested jointly below and left
out of the single-field properties.
"""

from __future__ import annotations

import math
import re
import tomllib
from datetime import date
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.params import (
    CREDENTIAL_TYPES,
    DOMAINS,
    EDUCATION_LEVELS,
    MIN_ARM_LEARNERS,
    Scenario,
    ScenarioError,
    dumps_toml,
    field_info,
    load_scenario,
)

DEFAULT = Scenario()


def _annotation(key: str) -> Any:
    section, _, name = key.partition(".")
    return Scenario.model_fields[section].default_factory.model_fields[name].annotation


ALL_KEYS = [f"{s}.{k}" for s, body in DEFAULT.to_dict().items() for k in body]
NUMERIC_KEYS = [k for k in ALL_KEYS if _annotation(k) in (int, float)]
BOOL_KEYS = [k for k in ALL_KEYS if _annotation(k) is bool]
#: Fields whose valid range depends on other fields (tested jointly below).
COUPLED = {
    "calendar.n_batches",
    "calendar.matched_batches",
    "signal.prior_precision_thin",
    "signal.prior_precision_thick",
    "population.matched_share",
    "population.developing_share",
    "population.matched_developing_share",
    "population.n_learners",  # with matched_share and treated_share: the arms' sizes
    "study.treated_share",
}
FREE_NUMERIC = [k for k in NUMERIC_KEYS if k not in COUPLED]
SOURCE = "test-source.toml"


def _get(scn: Scenario, key: str) -> Any:
    section, _, name = key.partition(".")
    return getattr(getattr(scn, section), name)


def _bounds(key: str) -> tuple[Any, Any, bool, bool]:
    """(low, high, low_inclusive, high_inclusive) of a numeric field."""
    info = field_info(key)
    lo = info.get("ge", info.get("gt"))
    hi = info.get("le", info.get("lt"))
    return lo, hi, "ge" in info, "le" in info


def in_bounds(key: str) -> st.SearchStrategy:
    """Any value of ``key``'s type inside its declared range."""
    lo, hi, lo_in, hi_in = _bounds(key)
    if _annotation(key) is int:
        return st.integers(lo if lo_in else lo + 1, hi if hi_in else hi - 1)
    return st.floats(lo, hi, exclude_min=not lo_in, exclude_max=not hi_in, allow_nan=False)


def out_of_bounds(key: str) -> st.SearchStrategy:
    """Any value of ``key``'s type below or above its declared range."""
    lo, hi, lo_in, hi_in = _bounds(key)
    if _annotation(key) is int:
        return st.one_of(
            st.integers(max_value=lo - 1 if lo_in else lo),
            st.integers(min_value=hi + 1 if hi_in else hi),
        )
    return st.one_of(
        st.floats(max_value=lo, exclude_max=lo_in, allow_nan=False),
        st.floats(min_value=hi, exclude_min=hi_in, allow_nan=False),
    )


def _raises(overrides: dict[str, Any], source: str = SOURCE) -> str:
    with pytest.raises(ScenarioError) as err:
        DEFAULT.with_overrides(overrides, source=source)
    return str(err.value)


def test_schema_has_numeric_fields_with_bounds():
    assert len(NUMERIC_KEYS) > 50
    for key in NUMERIC_KEYS:
        lo, hi, _, _ = _bounds(key)
        assert lo is not None and hi is not None, f"{key} has no declared range"
        assert lo < hi


@pytest.mark.parametrize("key", ALL_KEYS)
def test_field_info_default_is_the_schema_default(key):
    info = field_info(key)
    assert info["default"] == _get(DEFAULT, key)
    assert isinstance(info["doc"], str) and info["doc"]
    if key in NUMERIC_KEYS:
        lo, hi, lo_in, hi_in = _bounds(key)
        v = info["default"]
        assert (lo <= v if lo_in else lo < v) and (v <= hi if hi_in else v < hi)


# ---- single fields -----------------------------------------------------------------


@settings(max_examples=300)
@given(data=st.data())
def test_any_in_range_value_validates(data):
    key = data.draw(st.sampled_from(FREE_NUMERIC), label="key")
    value = data.draw(in_bounds(key), label="value")
    scn = DEFAULT.with_overrides({key: value})
    assert _get(scn, key) == value
    assert type(_get(scn, key)) is _annotation(key)


@settings(max_examples=300)
@given(data=st.data())
def test_any_out_of_range_value_is_rejected_with_key_source_and_range(data):
    key = data.draw(st.sampled_from(NUMERIC_KEYS), label="key")
    value = data.draw(out_of_bounds(key), label="value")
    msg = _raises({key: value})
    lo, hi, _, _ = _bounds(key)
    assert SOURCE in msg
    assert f"'{key}'" in msg
    assert "range" in msg
    assert re.search(rf"{re.escape(str(lo))}\s*,\s*{re.escape(str(hi))}", msg), msg


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("signal.credibility", -0.1),
        ("signal.credibility", 25.0),
        ("population.n_learners", 10),
        ("graph.degree_exponent", 2.0),
        ("market.vacancy_duration_weeks", 0.0),
    ],
)
def test_out_of_range_examples(key, value):
    msg = _raises({key: value})
    assert f"{SOURCE}: key '{key}'" in msg


NOT_A_NUMBER = st.text(
    alphabet=st.characters(categories=["L", "P", "Zs"]), min_size=1, max_size=12
).filter(lambda s: s.strip().lower().lstrip("+-") not in {"inf", "infinity", "nan"})


@settings(max_examples=150)
@given(data=st.data())
def test_non_numeric_string_for_a_number_is_rejected_naming_the_key(data):
    key = data.draw(st.sampled_from(NUMERIC_KEYS), label="key")
    value = data.draw(NOT_A_NUMBER, label="value")
    msg = _raises({key: value})
    assert SOURCE in msg and f"'{key}'" in msg


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("signal.credibility", "0.5"),  # a quoted number in a TOML file
        ("population.n_learners", "5000"),
        ("signal.credibility", True),  # a boolean for a number
        ("visibility.enabled", "yes"),  # a string for a boolean
    ],
)
def test_wrong_type_is_rejected_even_when_coercible(key, value):
    """A scenario file is validated at the boundary: a value of the wrong TOML type is an
    error naming the key, not silently converted (``credibility = "0.5"``)."""
    msg = _raises({key: value})
    assert SOURCE in msg and f"'{key}'" in msg


def test_wrong_type_in_a_file_names_file_and_key(tmp_path):
    path = tmp_path / "typo.toml"
    path.write_text('[market]\nhiring_bar = "high"\n', encoding="utf-8")
    with pytest.raises(ScenarioError) as err:
        Scenario.from_toml(path)
    assert str(path) in str(err.value)
    assert "'market.hiring_bar'" in str(err.value)


# ---- unknown keys --------------------------------------------------------------------


@given(data=st.data())
def test_unknown_key_suggests_the_nearest_valid_name(data):
    key = data.draw(st.sampled_from(ALL_KEYS), label="key")
    section, _, name = key.partition(".")
    i = data.draw(st.integers(0, len(name) - 1), label="dropped character")
    typo = f"{section}.{name[:i]}{name[i + 1 :]}"
    msg = _raises({typo: 1})
    assert SOURCE in msg and f"'{typo}'" in msg
    assert f"did you mean '{key}'" in msg
    # the same through a file-like mapping
    with pytest.raises(ScenarioError) as err:
        Scenario.from_dict({section: {typo.partition(".")[2]: 1}}, source=SOURCE)
    assert SOURCE in str(err.value) and f"did you mean '{key}'" in str(err.value)


def test_unknown_section_suggests_the_nearest_section():
    with pytest.raises(ScenarioError, match=r"did you mean 'signal'") as err:
        Scenario.from_dict({"signals": {"credibility": 0.5}}, source=SOURCE)
    assert SOURCE in str(err.value)
    assert "did you mean 'signal.credibility'" in _raises({"signl.credibility": 0.5})
    assert "did you mean 'signal.credibility'" in _raises({"credibility": 0.5})


def test_unknown_key_in_a_file_names_the_file(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text("[visibility]\nserach_boost = 2.0\n", encoding="utf-8")
    with pytest.raises(ScenarioError) as err:
        Scenario.from_toml(path)
    assert str(path) in str(err.value)
    assert "did you mean 'visibility.search_boost'" in str(err.value)


# ---- every number is finite -----------------------------------------------------------

FLOAT_KEYS = [k for k in ALL_KEYS if _annotation(k) is float]
#: Tables and lists of numbers: dotted key of the field -> its entries (keys or indexes).
NUMBER_TABLES = {
    k: list(v) if isinstance(v, dict) else list(range(len(v)))
    for k in ALL_KEYS
    if isinstance(v := _get(DEFAULT, k), dict | list)
}
NON_FINITE = [math.nan, math.inf, -math.inf]


def _range_text(bounds: dict[str, Any]) -> str:
    lo = bounds.get("ge", bounds.get("gt"))
    hi = bounds.get("le", bounds.get("lt"))
    return f"{'[' if 'ge' in bounds else '('}{lo}, {hi}{']' if 'le' in bounds else ')'}"


def test_every_table_and_list_of_numbers_has_bounded_entries():
    assert set(NUMBER_TABLES) == {
        *SHARE_DICTS,
        "signal.credential_weight",
        "sharing.app_open_share",
    }
    for key in NUMBER_TABLES:
        items = field_info(key)["items"]
        assert "ge" in items and "le" in items, key
    assert field_info("signal.credential_weight")["items"]["le"] < math.inf


@pytest.mark.parametrize("value", NON_FINITE, ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("key", FLOAT_KEYS)
def test_non_finite_number_is_rejected_with_key_and_range(key, value):
    msg = _raises({key: value})
    assert f"{SOURCE}: key '{key}'" in msg
    assert "finite" in msg
    assert f"allowed range {_range_text(field_info(key))}" in msg


@pytest.mark.parametrize("value", NON_FINITE, ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize(
    ("key", "entry"), [(k, e) for k, entries in NUMBER_TABLES.items() for e in entries]
)
def test_non_finite_entry_of_a_table_or_list_is_rejected_with_dotted_key(key, entry, value):
    old = _get(DEFAULT, key)
    new = dict(old) if isinstance(old, dict) else list(old)
    new[entry] = value
    msg = _raises({key: new})
    dotted = f"{key}[{entry}]" if isinstance(entry, int) else f"{key}.{entry}"
    assert f"{SOURCE}: key '{dotted}'" in msg
    assert "finite" in msg
    assert f"allowed range {_range_text(field_info(key)['items'])}" in msg


@pytest.mark.parametrize("entry", CREDENTIAL_TYPES)
def test_credential_weight_has_an_upper_bound(entry):
    hi = field_info("signal.credential_weight")["items"]["le"]
    weights = dict(DEFAULT.signal.credential_weight, **{entry: hi})
    assert DEFAULT.with_overrides({"signal.credential_weight": weights})
    weights[entry] = hi * 1.5
    msg = _raises({"signal.credential_weight": weights})
    assert f"key 'signal.credential_weight.{entry}'" in msg and f"[0, {hi}]" in msg


@pytest.mark.parametrize(
    ("table", "line"),
    [
        (
            "signal",
            "credential_weight = { course = nan, guided_project = 0.5, "
            "specialization = 1.5, professional_certificate = 2.0 }",
        ),
        ("signal", "credibility = inf"),
        ("sharing", "app_open_share = [0.8, -inf]"),
        ("market", "hiring_bar = nan"),
    ],
)
def test_non_finite_value_in_a_file_names_file_and_dotted_key(tmp_path, table, line):
    path = tmp_path / "nan.toml"
    path.write_text(f"[{table}]\n{line}\n", encoding="utf-8")
    with pytest.raises(ScenarioError) as err:
        Scenario.from_toml(path)
    msg = str(err.value)
    name = line.partition(" ")[0]
    key = {"credential_weight": "credential_weight.course", "app_open_share": "app_open_share[1]"}
    assert f"{path}: key '{table}.{key.get(name, name)}'" in msg
    assert "finite" in msg and "allowed range" in msg


# ---- shares ----------------------------------------------------------------------------

SHARE_DICTS = {
    "population.domain_shares": DOMAINS,
    "population.matched_domain_shares": DOMAINS,
    "population.education_shares": EDUCATION_LEVELS,
    "population.matched_education_shares": EDUCATION_LEVELS,
    "population.credential_type_shares": CREDENTIAL_TYPES,
}


@given(data=st.data())
def test_shares_not_summing_to_one_are_rejected(data):
    key = data.draw(st.sampled_from(sorted(SHARE_DICTS)), label="key")
    names = SHARE_DICTS[key]
    values = data.draw(
        st.lists(st.floats(0, 1), min_size=len(names), max_size=len(names)).filter(
            lambda v: abs(sum(v) - 1) > 1e-4
        ),
        label="values",
    )
    msg = _raises({key: dict(zip(names, values, strict=True))})
    assert SOURCE in msg and key.partition(".")[2] in msg
    assert "sum to 1" in msg


def test_share_dicts_need_exactly_their_keys_and_no_negatives():
    shares = dict(DEFAULT.population.domain_shares)
    del shares["business"]
    assert "domain_shares" in _raises({"population.domain_shares": shares})
    shares = {
        "business": 1.2,
        "computer_science": -0.2,
        "data_science": 0.0,
        "information_technology": 0.0,
    }
    msg = _raises({"population.domain_shares": shares})
    assert "key 'population.domain_shares.computer_science'" in msg  # below 0
    assert "key 'population.domain_shares.business'" in msg  # above 1
    assert msg.count("allowed range [0, 1] share") == 2
    weights = dict(DEFAULT.signal.credential_weight, course=-1.0)
    msg = _raises({"signal.credential_weight": weights})
    assert "key 'signal.credential_weight.course'" in msg and "[0, 100]" in msg


@given(st.floats(0, 1), st.floats(0, 1))
def test_app_open_share_must_be_an_ordered_range(lo, hi):
    if lo <= hi:
        scn = DEFAULT.with_overrides({"sharing.app_open_share": [lo, hi]})
        assert list(scn.sharing.app_open_share) == [lo, hi]
    else:
        msg = _raises({"sharing.app_open_share": [lo, hi]})
        assert f"{SOURCE}: key 'sharing.app_open_share': " in msg and "low <= high" in msg


# ---- cross-field rules name the key they are about ----------------------------------------

CROSS_FIELD = [
    ({"sharing.app_open_share": [0.9, 0.8]}, "sharing.app_open_share", True),
    ({"calendar.matched_batches": 8}, "calendar.matched_batches", True),
    ({"calendar.n_batches": 13}, "calendar.n_batches", True),
    ({"calendar.collection_date": date(2022, 9, 3)}, "calendar.collection_date", True),
    (
        {"signal.prior_precision_thin": 0.5, "signal.prior_precision_thick": 0.25},
        "signal.prior_precision_thick",
        True,
    ),
    ({"signal.credential_weight": {"course": 1.0}}, "signal.credential_weight", False),
    ({"population.developing_share": 0.02}, "population.matched_developing_share", True),
    (
        {"population.matched_share": 0.5},
        "population.matched_education_shares.none_mentioned",
        True,
    ),
    *[({k: {n: 0.5 for n in names}}, k, False) for k, names in SHARE_DICTS.items()],
    *[({k: {"x": 1.0}}, k, False) for k in SHARE_DICTS],
]


@pytest.mark.parametrize(("overrides", "key", "has_range"), CROSS_FIELD)
def test_cross_field_error_names_the_dotted_key(overrides, key, has_range):
    msg = _raises(overrides)
    assert msg.startswith(f"{SOURCE}: key '{key}': "), msg
    section = key.partition(".")[0]
    assert f"key '{section}':" not in msg  # not only the section
    if has_range:
        assert "allowed range" in msg


def test_cross_field_error_gives_the_range_the_other_fields_allow():
    msg = _raises({"calendar.matched_batches": 6, "calendar.n_batches": 4})
    assert "allowed range [1, 4] months" in msg
    msg = _raises({"signal.prior_precision_thin": 0.5, "signal.prior_precision_thick": 0.25})
    assert "allowed range [0.5, 1000]" in msg
    msg = _raises({"calendar.n_batches": 14})  # default calendar: 52 weeks, 12 batches fit
    assert "allowed range [1, 12] months" in msg
    DEFAULT.with_overrides({"calendar.n_batches": 12, "calendar.matched_batches": 5})


def test_cross_field_error_in_a_file_names_file_and_key(tmp_path):
    path = tmp_path / "cal.toml"
    path.write_text("[sharing]\napp_open_share = [0.9, 0.5]\n", encoding="utf-8")
    with pytest.raises(ScenarioError) as err:
        Scenario.from_toml(path)
    assert str(err.value).startswith(f"{path}: key 'sharing.app_open_share': ")


# ---- coupled fields ----------------------------------------------------------------------


@given(n=st.integers(1, 24), matched=st.integers(1, 24))
def test_batches_are_consistent(n, matched):
    """Monthly batches must all graduate before the collection date (default calendar:
    52 weeks, so at most 12 batches), and matched batches are a subset of batches."""
    cal = DEFAULT.calendar
    fits = cal.batch_week(n - 1) < cal.n_weeks
    ov = {"calendar.n_batches": n, "calendar.matched_batches": matched}
    if matched <= n and fits:
        scn = DEFAULT.with_overrides(ov)
        assert (scn.calendar.n_batches, scn.calendar.matched_batches) == (n, matched)
    else:
        msg = _raises(ov)
        assert SOURCE in msg and "calendar" in msg
        if matched > n:
            assert "matched_batches" in msg and "n_batches" in msg


def test_matched_batches_above_n_batches_is_rejected():
    msg = _raises({"calendar.matched_batches": 8})  # default n_batches = 7
    assert "matched_batches" in msg and "n_batches" in msg and SOURCE in msg


def test_collection_date_must_follow_start_date():
    msg = _raises({"calendar.collection_date": date(2022, 8, 1)})
    assert "collection_date" in msg


@given(
    thin=st.floats(0, 1000, exclude_min=True),
    thick=st.floats(0, 1000, exclude_min=True),
)
def test_prior_precisions_are_ordered(thin, thick):
    ov = {"signal.prior_precision_thin": thin, "signal.prior_precision_thick": thick}
    if thin <= thick:
        scn = DEFAULT.with_overrides(ov)
        assert scn.signal.prior_precision_thin == thin
    else:
        msg = _raises(ov)
        assert "prior_precision_thick" in msg and "prior_precision_thin" in msg


def _max_matched_share(pop) -> float:
    """Largest matched share the default margins allow.

    population = m * matched + (1 - m) * rest with rest a share in [0, 1] means
    m <= pop / matched and m <= (1 - pop) / (1 - matched) for every category.
    """
    pairs = (
        [(pop.domain_shares[k], pop.matched_domain_shares[k]) for k in DOMAINS]
        + [(pop.education_shares[k], pop.matched_education_shares[k]) for k in EDUCATION_LEVELS]
        + [(pop.developing_share, pop.matched_developing_share)]
    )
    bound = 1.0
    for p, q in pairs:
        if q > 0:
            bound = min(bound, p / q)
        if q < 1:
            bound = min(bound, (1 - p) / (1 - q))
    return bound


@given(m=st.floats(0, 1, exclude_min=True))
def test_matched_share_must_fit_the_population_margins(m):
    m_max = _max_matched_share(DEFAULT.population)
    assert 0.042 < m_max < 1
    if abs(m - m_max) < 1e-6:
        return
    one_arm = {"study.treated_share": 1.0}  # no minimum arm size for a tiny matched sample
    if m < m_max:
        scn = DEFAULT.with_overrides({"population.matched_share": m, **one_arm})
        assert scn.population.matched_share == m
    else:
        msg = _raises({"population.matched_share": m, **one_arm})
        assert "population" in msg and "cannot be part of" in msg


@given(d=st.floats(0, 1), md=st.floats(0, 1))
def test_developing_shares_must_be_consistent(d, md):
    m = DEFAULT.population.matched_share
    rest = (d - m * md) / (1 - m)  # implied share among unmatched learners
    if min(abs(rest), abs(rest - 1)) < 1e-6:
        return
    ov = {"population.developing_share": d, "population.matched_developing_share": md}
    if 0 <= rest <= 1:
        DEFAULT.with_overrides(ov)
    else:
        msg = _raises(ov)
        assert "developing_share" in msg


def test_matched_value_that_cannot_fit_the_population_is_rejected():
    # 4.2% matched * 85% developing = 3.57% > 2% of the population
    msg = _raises({"population.developing_share": 0.02})
    assert "developing_share" in msg and "cannot be part of" in msg and SOURCE in msg


# ---- both arms of a study are large enough --------------------------------------------


def _smaller_arm(n: int, m: float, share: float, cal=DEFAULT.calendar) -> float:
    """Expected matched learners in the smaller arm (see Scenario.expected_matched)."""
    return n * min(m, cal.matched_batches / cal.n_batches) * min(share, 1 - share)


@settings(max_examples=300)
@given(
    n=st.integers(200, 5_000_000),
    m=st.floats(0.001, 0.3),
    share=st.one_of(st.sampled_from([0.0, 1.0, 0.5, 1e-6, 0.999]), st.floats(0, 1)),
)
def test_treated_share_must_leave_enough_learners_in_both_arms(n, m, share):
    ov = {
        "population.n_learners": n,
        "population.matched_share": m,
        "study.treated_share": share,
    }
    smaller = _smaller_arm(n, m, share)
    if abs(smaller - MIN_ARM_LEARNERS) < 1e-6:
        return
    if share in (0.0, 1.0) or smaller > MIN_ARM_LEARNERS:
        assert DEFAULT.with_overrides(ov).study.treated_share == share
        return
    msg = _raises(ov)
    assert msg.startswith(f"{SOURCE}: key 'study.treated_share': "), msg
    assert f"fewer than the {MIN_ARM_LEARNERS} per arm" in msg
    found = re.search(r"allowed range for this population \[([\d.]+), ([\d.]+)\] share", msg)
    if found:  # the range it states is right: its ends validate, just outside does not
        lo, hi = float(found[1]), float(found[2])
        assert lo <= 0.5 <= hi
        for ok in (lo, hi):
            DEFAULT.with_overrides({**ov, "study.treated_share": ok})
        for bad in (lo - 2e-4, hi + 2e-4):
            if 0 < bad < 1:
                _raises({**ov, "study.treated_share": bad})
    else:
        assert "0 or 1 only" in msg
        need = re.search(r"n_learners >= ([\d,]+)", msg)
        if need:
            need = int(need[1].replace(",", ""))
            assert _smaller_arm(need, m, 0.5) >= MIN_ARM_LEARNERS - 1e-9
            assert _smaller_arm(need - 1, m, 0.5) < MIN_ARM_LEARNERS
        need_m = re.search(r"matched_share >= ([\d.e-]+)\)", msg)
        assert need or need_m, msg
        if need_m:
            assert _smaller_arm(n, float(need_m[1]), 0.5) >= MIN_ARM_LEARNERS - 1e-9


def test_nearly_everyone_nudged_in_a_small_population_is_rejected_before_any_work():
    msg = _raises({"population.n_learners": 20_000, "study.treated_share": 0.999})
    assert "key 'study.treated_share'" in msg and "control arm" in msg
    assert "allowed range for this population [0.0358, 0.9642] share" in msg
    for share in (0.0, 1.0, 0.0358, 0.9642):  # one arm (twin runs), or enough in both
        DEFAULT.with_overrides({"population.n_learners": 20_000, "study.treated_share": share})
    msg = _raises({"population.n_learners": 1_000})
    assert "0 or 1 only" in msg and "n_learners >= 1,429" in msg
    DEFAULT.with_overrides({"population.n_learners": 1_000, "study.treated_share": 1.0})


def test_expected_matched_sample_follows_the_matched_batches():
    scn = DEFAULT.with_overrides({"population.n_learners": 100_000})
    assert scn.expected_matched == pytest.approx(4_200)
    # only 1 of 7 batches can be matched: at most 1/7 of the learners
    few = scn.with_overrides({"calendar.matched_batches": 1, "population.matched_share": 0.3})
    assert few.expected_matched == pytest.approx(100_000 / 7)


# ---- round trip --------------------------------------------------------------------------


@st.composite
def valid_overrides(draw, with_text: bool = False) -> dict[str, Any]:
    """Valid dotted-key overrides: free numeric fields, booleans and coupled groups."""
    ov: dict[str, Any] = {}
    for key in draw(st.lists(st.sampled_from(FREE_NUMERIC), unique=True, max_size=15)):
        ov[key] = draw(in_bounds(key))
    for key in BOOL_KEYS:
        ov[key] = draw(st.booleans())
    n = draw(st.integers(1, 12))
    ov["calendar.n_batches"] = n
    ov["calendar.matched_batches"] = draw(st.integers(1, n))
    thin = draw(st.floats(0, 1000, exclude_min=True))
    ov["signal.prior_precision_thin"] = thin
    ov["signal.prior_precision_thick"] = draw(st.floats(thin, 1000))
    m = draw(st.floats(0.001, 0.3))
    ov["population.matched_share"] = m
    md = draw(st.floats(0, 1))
    ov["population.matched_developing_share"] = md
    ov["population.developing_share"] = draw(st.floats(m * md + 1e-6, m * md + (1 - m) - 1e-6))
    lo = draw(st.floats(0, 1))
    ov["sharing.app_open_share"] = [lo, draw(st.floats(lo, 1))]
    if with_text:
        ov["meta.name"] = draw(st.text(max_size=20))
        ov["meta.description"] = draw(st.text(max_size=60))
    return ov


@settings(max_examples=150)
@given(ov=valid_overrides())
def test_to_toml_round_trips(ov):
    scn = DEFAULT.with_overrides(ov)
    text = scn.to_toml()
    back = Scenario.from_dict(tomllib.loads(text), source="round trip")
    assert back == scn
    assert back.to_toml() == text


@given(ov=valid_overrides(with_text=True))
def test_to_toml_round_trips_any_name_and_description(ov):
    """Any string is a valid name or description (e.g. a two-line description); the
    written TOML must read back to the same scenario."""
    scn = DEFAULT.with_overrides(ov)
    back = Scenario.from_dict(tomllib.loads(scn.to_toml()), source="round trip")
    assert back == scn


@pytest.mark.parametrize("text", ["two\nlines", "tab\there", "bell\x07", 'quote " and \\'])
def test_to_toml_escapes_strings(text):
    scn = DEFAULT.with_overrides({"meta.description": text})
    back = Scenario.from_dict(tomllib.loads(scn.to_toml()), source="round trip")
    assert back.meta.description == text
    assert Scenario.from_toml_text(scn.to_toml()) == scn


@pytest.mark.parametrize("name", ['say "hi"', "line\nbreak", "back\\slash", "é ü 中", "'single'"])
def test_to_toml_round_trips_dates_and_quoted_strings(name):
    scn = DEFAULT.with_overrides(
        {
            "meta.name": name,
            "meta.description": f'"""{name}"""\n\tend',
            "calendar.start_date": date(2021, 2, 28),
            "calendar.collection_date": date(2022, 3, 1),
        }
    )
    text = scn.to_toml()
    assert Scenario.from_toml_text(text) == scn
    assert tomllib.loads(text)["calendar"]["start_date"] == date(2021, 2, 28)


def test_dumps_toml_writes_nested_tables_and_dotted_keys():
    """The project's one TOML writer: what calibration and analysis write with it."""
    data = {
        "provenance": {
            "command": 'credsim calibrate "x"',
            "fitted": {"sharing.nudge_strength": 0.0085, "signal.credibility": 0.97},
            "seeds": ["[1, 0]", "[1, 1]"],
            "finished": date(2026, 1, 1),
            "deeper": {"a b": {"c.d": True, "e": [1, 2]}},
        },
        "top": 1.5,
    }
    text = dumps_toml(data)
    assert tomllib.loads(text) == data
    assert '"sharing.nudge_strength" = 0.0085' in text


def test_to_toml_writes_every_parameter():
    data = tomllib.loads(DEFAULT.to_toml())
    assert {f"{s}.{k}" for s, body in data.items() for k in body} == set(ALL_KEYS)


def test_from_toml_reads_a_written_file(tmp_path):
    scn = DEFAULT.with_overrides({"signal.credibility": 0.8, "population.n_learners": 2345})
    path = tmp_path / "x.toml"
    path.write_text(scn.to_toml(), encoding="utf-8")
    assert Scenario.from_toml(path) == scn
    assert load_scenario("x", scenarios_dir=tmp_path) == scn


def test_partial_file_takes_defaults(tmp_path):
    path = tmp_path / "partial.toml"
    path.write_text("[signal]\ncredibility = 0.9\n", encoding="utf-8")
    scn = Scenario.from_toml(path)
    assert scn.signal.credibility == 0.9
    assert scn.model_copy(update={"signal": DEFAULT.signal}) == DEFAULT


def test_with_overrides_leaves_the_original_unchanged():
    default = field_info("signal.credibility")["default"]
    new = 0.9 if default != 0.9 else 0.1
    scn = DEFAULT.with_overrides({"signal.credibility": new})
    assert DEFAULT.signal.credibility == default and scn.signal.credibility == new
    assert Scenario() == DEFAULT


# ---- file errors -------------------------------------------------------------------------


def test_missing_file_is_named(tmp_path):
    path = tmp_path / "nope.toml"
    with pytest.raises(ScenarioError) as err:
        Scenario.from_toml(path)
    assert str(path) in str(err.value)
    with pytest.raises(ScenarioError) as err:
        load_scenario("nope", scenarios_dir=tmp_path)
    assert "nope.toml" in str(err.value)


@pytest.mark.parametrize(
    "text",
    [
        "[signal\ncredibility = 0.5\n",
        "[signal]\ncredibility = \n",
        "a = = 1\n",
        "[signal]\ncredibility = 0.5\ncredibility = 0.6\n",
    ],
)
def test_malformed_toml_is_named(tmp_path, text):
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ScenarioError) as err:
        Scenario.from_toml(path)
    assert str(path) in str(err.value)
    assert "TOML" in str(err.value)


def test_out_of_range_value_in_a_file_names_file_key_and_range(tmp_path):
    path = tmp_path / "range.toml"
    path.write_text("[study]\ntreated_share = 1.5\n", encoding="utf-8")
    with pytest.raises(ScenarioError) as err:
        Scenario.from_toml(path)
    msg = str(err.value)
    assert str(path) in msg and "'study.treated_share'" in msg
    assert re.search(r"0\s*,\s*1", msg)


def test_scenario_error_is_a_value_error():
    assert issubclass(ScenarioError, ValueError)


# ---- a scenario file extends another: [meta] base ------------------------------------------


def _file(folder, name: str, text: str):
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_base_by_name_starts_from_that_scenario_and_applies_the_files_values(tmp_path):
    from sim import scenarios

    path = _file(
        tmp_path,
        "mine.toml",
        '[meta]\nbase = "small"\nname = "mine"\n\n'
        "[signal]\ncredibility = 0.5\n"
        "credential_weight = { course = 1.0, guided_project = 1.0, specialization = 1.0, "
        "professional_certificate = 1.0 }\n",
    )
    scn = Scenario.from_toml(path)
    small = scenarios.load("small")  # paper.toml may sit at the defaults before calibration
    expected = small.with_overrides(
        {
            "meta.name": "mine",
            "meta.description": "",
            "signal.credibility": 0.5,
            "signal.credential_weight": dict.fromkeys(CREDENTIAL_TYPES, 1.0),
        }
    )
    assert scn == expected
    assert scn.population.n_learners == small.population.n_learners != DEFAULT.population.n_learners


def test_meta_is_the_files_own_and_the_resolved_scenario_has_no_base(tmp_path):
    path = _file(tmp_path, "x.toml", '[meta]\nbase = "small"\n')
    scn = Scenario.from_toml(path)
    assert (scn.meta.name, scn.meta.description) == ("unnamed", "")  # not small's
    assert scn.population.n_learners == 20_000
    text = scn.to_toml()
    assert "base" not in tomllib.loads(text)["meta"]
    data = tomllib.loads(text)
    assert {f"{s}.{k}" for s, body in data.items() for k in body} == set(ALL_KEYS)
    assert Scenario.from_toml_text(text) == scn


def test_base_path_is_relative_to_the_file_and_bases_chain(tmp_path):
    _file(tmp_path, "shared/root.toml", "[market]\nhiring_bar = 1.5\n[signal]\ncredibility = 0.3\n")
    _file(tmp_path, "shared/mid.toml", '[meta]\nbase = "root.toml"\n[signal]\ncredibility = 0.4\n')
    leaf = _file(tmp_path, "a/b/leaf.toml", '[meta]\nbase = "../../shared/mid.toml"\n')
    scn = Scenario.from_toml(leaf)
    assert (scn.market.hiring_bar, scn.signal.credibility) == (1.5, 0.4)
    # the same text elsewhere: a relative base is taken from `folder`, else the cwd
    text = leaf.read_text(encoding="utf-8")
    assert Scenario.from_toml_text(text, folder=leaf.parent) == scn
    with pytest.raises(ScenarioError, match=r"nowhere: key .meta\.base.: no such scenario"):
        Scenario.from_toml_text(text, source="nowhere")


def test_a_base_name_is_looked_up_next_to_the_file_first(tmp_path):
    _file(tmp_path, "small.toml", "[population]\nn_learners = 4321\n")
    child = _file(tmp_path, "child.toml", '[meta]\nbase = "small"\n')
    assert Scenario.from_toml(child).population.n_learners == 4321


@pytest.mark.parametrize(
    "files",
    [
        {"a.toml": '[meta]\nbase = "a"\n'},
        {"a.toml": '[meta]\nbase = "b.toml"\n', "b.toml": '[meta]\nbase = "a"\n'},
        {
            "a.toml": '[meta]\nbase = "b"\n',
            "b.toml": '[meta]\nbase = "sub/../c.toml"\n',
            "c.toml": '[meta]\nbase = "a.toml"\n',
        },
    ],
    ids=["self", "two", "three"],
)
def test_a_cycle_of_bases_is_an_error_naming_the_file_and_key(tmp_path, files):
    (tmp_path / "sub").mkdir()
    for name, text in files.items():
        _file(tmp_path, name, text)
    with pytest.raises(ScenarioError) as err:
        Scenario.from_toml(tmp_path / "a.toml")
    msg = str(err.value)
    assert msg.startswith(f"{tmp_path / 'a.toml'}: key 'meta.base'"), msg
    assert "cycle of bases" in msg


def test_base_errors_name_the_file_and_the_key(tmp_path):
    missing = _file(tmp_path, "m.toml", '[meta]\nbase = "no_such_scenario"\n')
    with pytest.raises(ScenarioError) as err:
        Scenario.from_toml(missing)
    msg = str(err.value)
    assert msg.startswith(f"{missing}: key 'meta.base': ") and "no_such_scenario" in msg
    assert "known scenarios: " in msg and "paper" in msg

    for value in ("3", "true", '""', '["paper"]'):
        bad = _file(tmp_path, "t.toml", f"[meta]\nbase = {value}\n")
        with pytest.raises(ScenarioError, match=r"key 'meta.base': expected the name or path"):
            Scenario.from_toml(bad)

    # an invalid base: named, inside the error of the file that uses it
    _file(tmp_path, "broken.toml", "[signal]\ncredibility = 25.0\n")
    child = _file(tmp_path, "c.toml", '[meta]\nbase = "broken"\n')
    with pytest.raises(ScenarioError) as err:
        Scenario.from_toml(child)
    msg = str(err.value)
    assert msg.startswith(f"{child}: key 'meta.base' = 'broken': in the base scenario: ")
    assert f"{tmp_path / 'broken.toml'}: key 'signal.credibility'" in msg

    # a bad value of the file itself names the file, not the base
    child = _file(tmp_path, "d.toml", '[meta]\nbase = "paper"\n[signal]\ncredibilty = 0.5\n')
    with pytest.raises(ScenarioError) as err:
        Scenario.from_toml(child)
    msg = str(err.value)
    assert msg.startswith(f"{child}: unknown key 'signal.credibilty'")
    assert "did you mean 'signal.credibility'" in msg

    # a rule across files: this file's population and the base's treated share
    child = _file(tmp_path, "e.toml", '[meta]\nbase = "small"\n[study]\ntreated_share = 0.999\n')
    with pytest.raises(
        ScenarioError, match=rf"^{re.escape(str(child))}: key 'study.treated_share'"
    ):
        Scenario.from_toml(child)
