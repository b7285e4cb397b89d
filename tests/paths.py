"""Where tests find the real maths data: the files shipped in the package (antisd/resources/data,
``<name>.jsonl.gz``; antisd.data.shipped reads them, load_raw takes their names as built-in datasets)."""

from antisd.data.shipped import data_dir

SHARED_DATA = data_dir()  # the name kept for the tests that use it; the files ship with antisd
