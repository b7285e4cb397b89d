"""Shared by the antisd.rewards tests."""

# math-verify 0.9.0's time grows exponentially with nested bare braces: ~1 s at depth 5,
# ~7 s at 12, ~19 s at 15; at 50 it parses for >10 s and compares for >60 s.
PATHOLOGICAL = "\\boxed{" + "{" * 50 + "1" + "}" * 50 + "}"
