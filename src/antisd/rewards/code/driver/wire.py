"""The plain-data codec of the sandbox's wire format (stdlib only; runs inside the sandbox as well).

The in-sandbox driver (`antisd.rewards.code.driver`) encodes what a program returned; the trusted side
decodes it (`antisd.rewards.code.harness`, `antisd.rewards.code.compare`) and encodes test inputs
(`antisd.rewards.code.tasks`). One module, so the two sides share one definition of the format.
Decoding reads untrusted data: it refuses anything malformed, nested too deep, or built to make a hash
table quadratic (`checked_hashes`).
"""

import math

MAX_DEPTH = 100
MAX_SHARED_HASH = 32
_INT_JSON_LIMIT = 1 << 63  # ints at least this large travel as hex (no int/str digit limit on base 16)


class EncodeError(ValueError):
    """A value that is not plain data (or nests deeper than MAX_DEPTH)."""


def _encode_float(x):
    if math.isfinite(x):
        return x
    return {"f": "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")}


def encode(x, depth=0):
    """Plain value -> JSON-able, type-tagged: None, bool, int (hex when huge), float (non-finite
    tagged), str, list; tuple {"t"}, set {"S"}, frozenset {"F"}, dict {"d": [[k, v], ...]},
    complex {"c": [re, im]}, bytes {"b": hex}. Subclasses are stored as their base type; anything
    else raises EncodeError."""
    if depth > MAX_DEPTH:
        raise EncodeError("value nests deeper than %d" % MAX_DEPTH)
    t = type(x)
    if x is None or t is bool or t is str:
        return x
    if t is int:
        return x if -_INT_JSON_LIMIT < x < _INT_JSON_LIMIT else {"i": format(x, "x")}
    if t is float:
        return _encode_float(x)
    if t is list:
        return [encode(v, depth + 1) for v in x]
    if t is tuple:
        return {"t": [encode(v, depth + 1) for v in x]}
    if t is dict:
        return {"d": [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in x.items()]}
    if t is set:
        return {"S": [encode(v, depth + 1) for v in x]}
    if t is frozenset:
        return {"F": [encode(v, depth + 1) for v in x]}
    if t is complex:
        return {"c": [_encode_float(x.real), _encode_float(x.imag)]}
    if t is bytes:
        return {"b": x.hex()}
    for base in (bool, int, float, str, list, tuple, dict, set, frozenset, complex, bytes):
        if isinstance(x, base):  # a subclass (Counter, OrderedDict, IntEnum, ...): store the base value
            return encode(base(x) if base is not bool else bool(int(x)), depth)
    raise EncodeError("not plain data: %s" % t.__name__)


def checked_hashes(values):
    """`values`, after checking that at most MAX_SHARED_HASH of them share one hash.

    Building a set or dict from n values with one hash costs n**2 comparisons; values a program
    chose can do that on purpose (ints equal modulo 2**61 - 1 share a hash). Sorting the hashes
    costs n log n and refuses such input before any hash table is built. A real set's distinct
    elements practically never share a 64-bit hash 32 times."""
    hashes = sorted(hash(v) for v in values)
    run = 1
    for a, b in zip(hashes, hashes[1:]):
        run = run + 1 if a == b else 1
        if run > MAX_SHARED_HASH:
            raise ValueError("more than %d values share one hash" % MAX_SHARED_HASH)
    return values


def _decode_float(v):
    if type(v) in (int, float):
        return float(v)
    if type(v) is dict and v.get("f") in ("nan", "inf", "-inf"):
        return float(v["f"])
    raise ValueError("bad float %r" % (str(v)[:80],))


def _decode_dict(v, depth):
    pairs = [(decode(k, depth), decode(e, depth)) for k, e in v]
    checked_hashes([k for k, _ in pairs])
    return dict(pairs)


_SCALAR_TAGS = ("i", "f", "b")
_TAGGED = {
    "t": lambda v, d: tuple(decode(e, d) for e in v),
    "S": lambda v, d: set(checked_hashes([decode(e, d) for e in v])),
    "F": lambda v, d: frozenset(checked_hashes([decode(e, d) for e in v])),
    "d": _decode_dict,
    "i": lambda v, d: int(v, 16),
    "f": lambda v, d: _decode_float({"f": v}),
    "c": lambda v, d: complex(_decode_float(v[0]), _decode_float(v[1])),
    "b": lambda v, d: bytes.fromhex(v),
}


def decode(obj, depth=0):
    """Inverse of `encode`; raises ValueError/TypeError on anything malformed, nested deeper than
    MAX_DEPTH, or built to collide in a hash table (`checked_hashes`)."""
    if depth > MAX_DEPTH:
        raise ValueError("value nests deeper than %d" % MAX_DEPTH)
    t = type(obj)
    if obj is None or t in (bool, int, float, str):
        return obj
    if t is list:
        return [decode(e, depth + 1) for e in obj]
    if t is dict and len(obj) == 1:
        (tag, value), = obj.items()
        if tag in _TAGGED and (tag in _SCALAR_TAGS or type(value) is list):
            return _TAGGED[tag](value, depth + 1)
    raise ValueError("malformed value %r" % (str(obj)[:80],))
