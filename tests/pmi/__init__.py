"""Tests of antisd.pmi, one file per module (a package, so that basenames may repeat elsewhere)."""
