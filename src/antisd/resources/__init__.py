"""Package data, installed with antisd (no download, found from any folder):

    data/*.jsonl.gz   the maths benchmarks and DAPO-Math-17k (antisd.data.shipped) and the code
                      benchmarks (antisd.data.code_benchmarks); provenance, licences, row counts and
                      checksums in data/SOURCES.md
    recipes/          the training recipes of antisd train (--recipe, --config recipes/...;
                      antisd recipe --dir prints the folder)
"""
