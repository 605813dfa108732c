import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
COVID_CT = SHARED / "covid-ct"


@pytest.fixture
def covid_ct() -> Path:
    """The real COVID-CT pool from ../shared/datasets; the test skips when it is absent."""
    if not (COVID_CT / "CT_COVID").is_dir():
        pytest.skip("../shared/datasets/covid-ct is not available")
    return COVID_CT


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Each test gets its own cache folder so tests never share or pollute a user cache."""
    monkeypatch.setenv("DSAUDIT_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="module")
def cluster(request):
    """A real Dask LocalCluster for the module's tests (tests/test_dask.py, tests/test_sharded.py):
    two single-threaded worker processes, as the engine's own; nannies restart dead ones.
    allowed-failures=1 so that a file that kills workers is detected after two deaths, not four."""
    distributed = pytest.importorskip("distributed")
    import cloudpickle
    import dask

    cloudpickle.register_pickle_by_value(request.module)  # workers cannot import the test file
    with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
        cl = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                      dashboard_address=None, silence_logs=40)
    yield cl
    cl.close()


@pytest.fixture(scope="module")
def client(cluster):
    import distributed

    c = distributed.Client(cluster, set_as_default=False)
    yield c
    c.close()
