"""check_structure's verdict on payload.values: the quick whole-window test (_plain_values) never passes a window
that the exact rule (row_problem, row by row) refuses, and the verdict and its reason are the exact rule's."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from uingest_tools.acquisition import InvalidMessage, _plain_values, check_structure, row_problem

CELLS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**1030), max_value=2**1030),  # some too large for a float
    st.sampled_from([2**1024 - 2**970 - 1, 2**1024 - 2**970, -(2**1024) + 2**970, 2**1024, 1e308, -1e308]),
    st.sampled_from([True, False, None, "1", 0.0, -0.0]),
)
ROWS = st.one_of(CELLS, st.lists(CELLS, min_size=0, max_size=5), st.lists(st.lists(CELLS, max_size=2), max_size=2))


def message(values, width):
    sensors = [{"name": "s%d" % i, "units": "g"} for i in range(width)]
    payload = {"device_type": "T", "interval_ms": 10, "sensors": sensors, "values": values}
    return {"protected": {"ver": "v1", "alg": "none"}, "signature": "0" * 64, "payload": payload}


def exact_verdict(values, width):
    """The rule as row_problem states it, row by row: the first bad row's reason, or None."""
    for r, row in enumerate(values):
        problem = row_problem(r, row, width)
        if problem:
            return problem
    return None


def verdict(values, width):
    try:
        check_structure(message(values, width))
        return None
    except InvalidMessage as e:
        return str(e)


@settings(max_examples=400, deadline=None)
@given(width=st.integers(min_value=1, max_value=4), values=st.lists(ROWS, min_size=1, max_size=12))
def test_the_quick_test_passes_only_what_the_exact_rule_passes(width, values):
    if _plain_values(values, width):
        assert exact_verdict(values, width) is None
    assert verdict(values, width) == exact_verdict(values, width)


@settings(max_examples=200, deadline=None)
@given(
    width=st.integers(min_value=1, max_value=4),
    rows=st.integers(min_value=1, max_value=50),
    cell=st.floats(allow_nan=False, allow_infinity=False, width=32),
)
def test_plain_windows_pass_the_quick_test(width, rows, cell):
    """The windows boards send: every row width finite floats (or bare numbers for one sensor)."""
    assert _plain_values([[cell] * width for _ in range(rows)], width)
    if width == 1:
        assert _plain_values([cell] * rows, 1)
        assert _plain_values([int(cell)] * rows, 1)  # int16 audio


@pytest.mark.parametrize(
    "values, width, reason",
    [
        ([[1e308, 1e308, 1e308]], 3, None),  # the sum overflows: row by row, and every cell is finite
        ([[2**1024 - 2**970 - 1]], 1, None),  # the largest int that rounds to a finite double: row by row
        ([[2**1024 - 2**970]], 1, "payload.values[0] holds a value that is not a finite number"),  # rounds to inf
        ([[0.0, 1.0], [float("nan"), 1.0]], 2, "payload.values[1] holds a value that is not a finite number"),
        ([[0.0, True]], 2, "payload.values[0] holds a value that is not a finite number"),
        ([1.0, [2.0]], 1, None),  # bare numbers and one-cell rows mixed: both are right for one sensor
        ([[1.0, 2.0], [1.0]], 2, "payload.values[1] has 1 values, expected 2"),
        ([1.0, 2.0], 2, "payload.values[0] must be a list of 2 numbers"),
    ],
)
def test_doubted_windows_get_the_exact_rules_reason(values, width, reason):
    assert verdict(values, width) == reason


def test_shared_references_that_multiply_the_numbers_are_refused_at_once():
    """CBOR's shared references (cbor2 decodes them) let a 71 KB body name one row of 2000 numbers 2000 times:
    refused, without checking 4 million numbers. A body whose rows are short of the sensors is not mistaken
    for one: it gets the exact rule's reason."""
    import time

    import cbor2

    from uingest_tools.collector_rules import Rejected, validate_message

    row = [1.0] * 2000
    body = cbor2.dumps(message([row] * 2000, 2000), value_sharing=True)
    started = time.monotonic()
    with pytest.raises(Rejected) as refused:
        validate_message(body, "cbor")
    assert time.monotonic() - started < 1
    assert refused.value.status == 400
    assert "holds 4000000 numbers in a body of %d bytes: CBOR shared references" % len(body) in refused.value.line
    short_rows = cbor2.dumps(message([[1.0]] * 300, 300))  # 300 rows x 300 sensors > its bytes, 300 numbers
    assert 300 * 300 > len(short_rows)
    with pytest.raises(Rejected) as refused:
        validate_message(short_rows, "cbor")
    assert refused.value.line == "payload.values[0] has 1 values, expected 300"
    shared_once = cbor2.dumps(message([[1.0, 2.0]] * 5, 2), value_sharing=True)  # shared, not multiplied
    assert validate_message(shared_once, "cbor")["rows"] == 5
