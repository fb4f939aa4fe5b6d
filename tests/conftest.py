import os
import sys
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Torch threads per test process: DGSS_TEST_THREADS (the margin sweep varies it), else the cores shared out
# among pytest-xdist's workers (`make test` runs two on a 2-core machine: one thread each, no oversubscription).
WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
THREADS = int(os.environ.get("DGSS_TEST_THREADS") or max(1, min(2, (os.cpu_count() or 2) // WORKERS)))
torch.set_num_threads(THREADS)
sys.path.insert(0, str(Path(__file__).parent))  # tests' shared helpers (learning.py) for every test folder


def pytest_collection_modifyitems(config, items):
    """Heaviest modules first (mypy's cold run, then by their number of ``e2e`` / ``learning`` tests), each
    module's tests in their own order (module fixtures stay shared). pytest-xdist's work stealing then ends
    the run on light tests instead of leaving one worker idle behind a long training run."""
    heavy: dict[str, int] = {}
    for item in items:
        name = item.nodeid.split("::")[0]
        if item.get_closest_marker("e2e") or item.get_closest_marker("learning"):
            heavy[name] = heavy.get(name, 0) + 1
    heavy["tests/test_lint_types.py"] = 100  # a cold mypy run: the single longest test
    items[:] = sorted(items, key=lambda item: -heavy.get(item.nodeid.split("::")[0], 0))


@pytest.fixture(autouse=True, scope="session")
def _text_cache(tmp_path_factory):
    """Text tables of the tests go to a fresh cache, never the user's."""
    os.environ["DGSS_CACHE_DIR"] = str(tmp_path_factory.mktemp("dgss_cache"))


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module (``pytestmark = pytest.mark.usefixtures("one_thread")``): tiny tensors and
    tiny training runs are faster on one thread, and robust on a shared 2-core machine. ``DGSS_TEST_THREADS``
    overrides it, so that the margin sweep's thread settings reach these tests too."""
    threads = torch.get_num_threads()
    torch.set_num_threads(int(os.environ.get("DGSS_TEST_THREADS") or 1))  # the margin sweep varies it
    yield
    torch.set_num_threads(threads)


SHARED = Path(__file__).resolve().parents[1].parent / "shared"
FIXTURES = SHARED / "fixtures"


@pytest.fixture
def fixtures_dir() -> Path:
    if not FIXTURES.is_dir():
        pytest.skip(f"real fixtures not found at {FIXTURES} (the ../shared folder beside the repo)")
    return FIXTURES
