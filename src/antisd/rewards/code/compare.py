"""EvalPlus's output comparison, on plain data only (pure: no I/O, no numpy).

Port of the checks in ``unsafe_execute`` of evalplus/evalplus ``evalplus/eval/__init__.py``
(v0.3.1) and its special oracles (``evalplus/eval/_special_oracle.py``), Apache-2.0. Both `out`
(the candidate's decoded output) and `exp` (the reference's) are values built by
`antisd.rewards.code.driver.wire.decode`: None, bool, int, float, complex, str, bytes, list, tuple, set,
frozenset, dict. So ``out == exp`` here never runs code the candidate wrote.

For one input (EvalPlus semantics):

1. ``exact = out == exp``; special oracles may widen it (below).
2. ``find_zero`` (HumanEval/32): pass iff ``|poly(xs, out)| <= atol``, nothing else.
3. if ``atol == 0`` and `exp` is a float or a non-empty list/tuple of floats: ``atol = 1e-6``.
4. not exact and ``atol != 0``: pass iff ``type(out) is type(exp)``, equal lengths for
   lists/tuples, and ``np.allclose(out, exp, rtol=1e-7, atol=atol)``:
   ``|o - e| <= atol + rtol * |e|`` elementwise, infinities equal only to themselves, NaN never.
   Shapes must match exactly here (numpy would also broadcast inner dimensions).
5. otherwise pass iff exact.

Difference kept on purpose: EvalPlus assigns step 3's ``atol = 1e-6`` to the loop variable, so it
carries over to the task's later inputs; here each input starts from the task's `atol`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from antisd.rewards.code.driver.wire import checked_hashes

MBPP_SET_EQ_ENTRY_POINTS = frozenset(
    {"similar_elements", "find_char_long", "common_in_nested_lists", "extract_singly", "larg_nnum",
     "intersection_array", "find_dissimilar", "Diff"})
"""MBPP+ tasks compared as sets (EvalPlus ``MBPP_OUTPUT_SET_EQ_TASKS``)."""

MBPP_NOT_NONE_ENTRY_POINTS = frozenset({"check_str", "text_match_three", "text_starta_endb"})
"""MBPP+ tasks whose output is reduced to ``out is not None`` (EvalPlus ``MBPP_OUTPUT_NOT_NONE_TASKS``)."""

MBPP_ORACLES = frozenset({"are_equivalent", "sum_div", "surface_Area", "digit_distance_nums"})
HUMANEVAL_ORACLES = frozenset({"find_zero"})


def _surface_area(base_edge: float, height: float) -> int:
    """Mbpp/581 oracle: total surface area of a square pyramid, height measured perpendicularly."""
    slant_height = math.sqrt((base_edge / 2) ** 2 + height**2)
    return round(base_edge**2 + 4 * (base_edge * slant_height) / 2)


def _digit_distance(num1: int, num2: int) -> int:
    """Mbpp/558 oracle: digit distance with the shorter number zero-padded."""
    a, b = str(num1), str(num2)
    width = max(len(a), len(b))
    return sum(abs(int(x) - int(y)) for x, y in zip(a.zfill(width), b.zfill(width)))


def _poly(xs: Sequence[float], x: float) -> float:
    """HumanEval/32 oracle: sum_i xs[i] * x**i."""
    return sum(coeff * math.pow(x, i) for i, coeff in enumerate(xs))


def is_floats(x: Any) -> bool:
    """EvalPlus ``is_floats``: a float, or a non-empty list/tuple of floats only."""
    if isinstance(x, float):
        return True
    if isinstance(x, (list, tuple)) and x:
        return all(isinstance(i, float) for i in x)
    return False


def _is_number(x: Any) -> bool:
    return isinstance(x, (bool, int, float, complex))


def _close(a: Any, b: Any, atol: float, rtol: float) -> bool:
    """numpy.isclose for two numbers (bools count as 0/1, as in numpy)."""
    if isinstance(a, complex) or isinstance(b, complex):
        a, b = complex(a), complex(b)
        if any(math.isinf(v) for v in (a.real, a.imag, b.real, b.imag)):
            return a == b
        return abs(a - b) <= atol + rtol * abs(b)
    a, b = float(a), float(b)
    if math.isinf(a) or math.isinf(b):
        return a == b
    return abs(a - b) <= atol + rtol * abs(b)


def allclose(out: Any, exp: Any, atol: float, rtol: float = 1e-7) -> bool:
    """numpy.allclose(out, exp, rtol, atol) for numbers and equally-shaped nested lists/tuples."""
    if _is_number(out) and _is_number(exp):
        return _close(out, exp, atol, rtol)
    if isinstance(out, (list, tuple)) and isinstance(exp, (list, tuple)):
        return len(out) == len(exp) and all(allclose(o, e, atol, rtol) for o, e in zip(out, exp))
    return False


def _exact(out: Any, exp: Any, oracle: str | None, args: Sequence[Any], atol: float) -> bool:
    exact = out == exp
    if oracle is None or exact:
        return bool(exact)
    if oracle == "are_equivalent":
        return True
    if oracle == "sum_div":
        return out == 0
    if oracle == "surface_Area":
        return bool(abs(out - _surface_area(*args)) <= atol)
    if oracle == "digit_distance_nums":
        return out == _digit_distance(*args)
    if oracle == "set_eq":  # the program's values never build a hash table unchecked (hash flooding)
        return set(checked_hashes(list(out))) == set(exp)
    return False


def outputs_match(out: Any, exp: Any, atol: float, *, oracle: str | None = None,
                  args: Sequence[Any] = ()) -> bool:
    """Whether `out` passes against `exp` for one input with arguments `args` (module docstring).

    oracle: None, "find_zero", "set_eq", or an MBPP+ entry point in `MBPP_ORACLES`. Any
    exception (an oracle applied to a value of the wrong type) is a failure, as in EvalPlus.
    """
    try:
        if oracle == "find_zero":
            return bool(abs(_poly(*args, out)) <= atol)
        exact = _exact(out, exp, oracle, args, atol)
        if atol == 0 and is_floats(exp):
            atol = 1e-6
        if exact:
            return True
        if atol == 0 or type(out) is not type(exp):
            return False
        if isinstance(exp, (list, tuple)) and len(out) != len(exp):
            return False
        return allclose(out, exp, atol)
    except Exception:  # noqa: BLE001 - e.g. set() of unhashable items, abs() of a string
        return False
