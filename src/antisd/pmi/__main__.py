"""``python -m antisd.pmi``: the same as ``antisd pmi``."""

from antisd.pmi.run import main

raise SystemExit(main())
