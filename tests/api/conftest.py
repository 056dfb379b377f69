import pytest

import mlobs.recording.recorder


@pytest.fixture(autouse=True)
def isolated_root(tmp_path, monkeypatch):
    """Every test records under its own root, and leaves no recorder behind."""
    monkeypatch.setenv("MLOBS_ROOT", str(tmp_path / "mlobs-data"))
    monkeypatch.delenv("MLOBS_DB_URL", raising=False)
    yield tmp_path / "mlobs-data"
    mlobs.recording.recorder.set_recorder(None)
