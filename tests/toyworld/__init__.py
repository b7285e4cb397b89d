"""Tests of antisd.toyworld, one file per module (a package: test_evaluate.py also exists one level up)."""
