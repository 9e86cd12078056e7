"""xspec: declarative studies of backdoors in CLIP models."""

__version__ = "0.1.0"


def results(workspace="xspec-work"):
    """DuckDB relations over a workspace's results, for notebooks; see `xspec.store.results`."""
    from xspec.store.results import results as open_results

    return open_results(workspace)
