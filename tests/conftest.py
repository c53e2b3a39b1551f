"""Shared fixtures: the real IFCB bins of the shared data folder."""
import json
import os
from pathlib import Path

import pytest
from hypothesis import settings

# Every run draws its own examples and none is replayed from a saved database, so a run's
# result never depends on what an earlier run on this machine happened to find.
settings.register_profile("ifcbfs", database=None)
settings.load_profile("ifcbfs")

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "ifcb-data"


@pytest.fixture(autouse=True, scope="session")
def state_home(tmp_path_factory) -> Path:
    """A private $XDG_STATE_HOME: daemons the tests start in the background without syslog
    write their default log file there, never into the home folder."""
    path = tmp_path_factory.mktemp("state")
    os.environ["XDG_STATE_HOME"] = str(path)
    return path


@pytest.fixture(scope="session")
def ifcb_data() -> Path:
    """The real IFCB data folder ($IFCB_TEST_DATA, default ../shared/ifcb-data); skip if absent."""
    path = Path(os.environ.get("IFCB_TEST_DATA", DEFAULT_DATA))
    if not (path / "expected.json").is_file():
        pytest.skip(f"real IFCB test data not found at {path} (set IFCB_TEST_DATA)")
    return path


@pytest.fixture(scope="session")
def expected(ifcb_data) -> dict:
    """expected.json: images, stitched pairs and header properties of every real bin."""
    return json.loads((ifcb_data / "expected.json").read_text())


@pytest.fixture(autouse=True, scope="session")
def _fresh_cache_home(tmp_path_factory):
    """Indexes go to a folder of this run: no test sees what an earlier run left behind."""
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("cache-home"))
    os.environ.pop("CACHE_DIRECTORY", None)


@pytest.fixture(scope="session")
def s3(ifcb_data, tmp_path_factory):
    """A SeaweedFS S3 server on localhost holding the staged bins (tests/s3server.py): `tree/`
    and `kit/` in bucket s3server.BUCKET, the same files under `s3.stage` for local mounts.
    Fails in CI and skips elsewhere when the server cannot start."""
    from s3server import WeedServer, match_stamps, stage

    try:
        import boto3  # noqa: F401
    except ImportError as err:
        _unavailable(f"S3 tests need boto3 (pip install -e '.[s3]'): {err}")
    work = tmp_path_factory.mktemp("s3")
    server = WeedServer(work / "weed")
    try:
        server.start()
    except (RuntimeError, OSError) as err:
        _unavailable(f"cannot start the SeaweedFS S3 server: {err}")
    try:
        server.stage = stage(ifcb_data, work / "stage")
        match_stamps(server.stage, server.upload(server.stage))
        yield server
    finally:
        server.stop()


def _unavailable(reason: str) -> None:
    """Fail in CI (which installs everything), skip elsewhere."""
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)
