import os
import sys
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
torch.set_num_threads(int(os.environ.get("DGSS_TEST_THREADS", "2")))  # the margin sweep varies it
sys.path.insert(0, str(Path(__file__).parent))  # tests' shared helpers (learning.py) for every test folder


@pytest.fixture(autouse=True, scope="session")
def _text_cache(tmp_path_factory):
    """Text tables of the tests go to a fresh cache, never the user's."""
    os.environ["DGSS_CACHE_DIR"] = str(tmp_path_factory.mktemp("dgss_cache"))


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module (``pytestmark = pytest.mark.usefixtures("one_thread")``): tiny tensors and
    tiny training runs are faster on one thread, and robust on a shared 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


SHARED = Path(__file__).resolve().parents[1].parent / "shared"
FIXTURES = SHARED / "fixtures"


@pytest.fixture
def fixtures_dir() -> Path:
    if not FIXTURES.is_dir():
        pytest.skip(f"real fixtures not found at {FIXTURES} (the ../shared folder beside the repo)")
    return FIXTURES
