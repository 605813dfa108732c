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
