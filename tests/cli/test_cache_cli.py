"""`mlobs cache ls | use | diff` as a user meets them."""

from __future__ import annotations

import json

import pytest

import mlobs
from mlobs.cache.store import ArtifactStore
from mlobs.cache.versions import diff_versions, list_videos
from mlobs.cli.main import main
from mlobs.core.errors import ConfigError
from mlobs.core.signature import idempotency_key, model_signature

GEMMA = mlobs.ModelRef("gemma2", "9b", "sha256:" + "1" * 64, engine="torch", precision="fp16")
QWEN = mlobs.ModelRef("qwen2.5", "14b", "sha256:" + "2" * 64, engine="torch", precision="fp16")


def save(store: ArtifactStore, video: str, component: str, value, model, run_id: str):
    key = idempotency_key(platform_id="youtube", video_id=video, component=component,
                          config_hash="c", sampling_policy_version="sp",
                          producer_version="1", schema_version="1",
                          model_signature=model_signature([model]))
    return store.save("youtube", video, component, value, key=key, input_hash="i",
                      models=[model], run_id=run_id)


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setenv("MLOBS_ROOT", str(tmp_path))
    store = ArtifactStore(tmp_path / "cache")
    save(store, "abc", "cleaning", {"text": "hello world", "lang": "en"}, GEMMA, "run-1")
    save(store, "abc", "cleaning", {"text": "Hello, world!", "lang": "en"}, QWEN, "run-2")
    save(store, "abc", "summary", {"summary": "greeting"}, QWEN, "run-2")
    save(store, "xyz", "cleaning", {"text": "other"}, GEMMA, "run-3")
    return tmp_path


def test_ls_shows_versions_models_and_the_current_one(root, capsys):
    assert main(["cache", "ls"]) == 0
    out = capsys.readouterr().out
    lines = [line.split() for line in out.splitlines()[2:]]
    assert [line[:4] for line in lines] == [
        ["youtube/abc", "cleaning", "v1", "gemma2:9b"],     # not current: empty column
        ["youtube/abc", "cleaning", "v2", "*"],
        ["youtube/abc", "summary", "v1", "*"],
        ["youtube/xyz", "cleaning", "v1", "*"]]
    assert "created (UTC)" in out and "run-2" in out and "qwen2.5:14b" in out

    assert main(["cache", "ls", "--video-id", "xyz", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [d["video_id"] for d in data] == ["xyz"]
    assert data[0]["schema"] == "mlobs.cache/1"
    assert data[0]["entries"]["cleaning"][0]["model_name"] == "gemma2:9b"

    assert main(["cache", "ls", "--platform-id", "vimeo"]) == 0
    assert ("has 4 version(s) of 2 video(s), but none for platform 'vimeo'; "
            "`mlobs cache ls` lists them all") in capsys.readouterr().out
    assert [i.video_id for i in list_videos(ArtifactStore(root / "cache"),
                                            platform_id="youtube", video_id="abc")] == ["abc"]


def test_use_switches_the_current_version(root, capsys):
    assert main(["cache", "use", "--platform-id", "youtube", "--video-id", "abc",
                 "cleaning", "1"]) == 0
    assert "current version is now v1 (was v2)" in capsys.readouterr().out
    store = ArtifactStore(root / "cache")
    assert store.load("youtube", "abc", "cleaning") == {"text": "hello world", "lang": "en"}
    assert main(["cache", "use", "--platform-id", "youtube", "--video-id", "abc",
                 "cleaning", "v1"]) == 0
    assert "v1 was already current" in capsys.readouterr().out


def test_use_refuses_unknown_versions(root, capsys):
    assert main(["cache", "use", "--platform-id", "youtube", "--video-id", "abc",
                 "cleaning", "7"]) == 1
    err = capsys.readouterr().err
    # the versions there are, and the command that shows them, with the --root given
    assert err.startswith("mlobs: error:") and "has no version 7; its versions: v1, v2 " \
        "(current) (`mlobs cache ls --platform-id youtube --video-id abc` shows" in err
    assert main(["cache", "use", "--platform-id", "youtube", "--video-id", "abc",
                 "cleaning", "7", "--root", str(root)]) == 1
    assert f"--video-id abc --root {root}`" in capsys.readouterr().err
    assert main(["cache", "use", "--platform-id", "youtube", "--video-id", "nope",
                 "cleaning", "1"]) == 1
    assert "nothing is cached for youtube/nope under" in capsys.readouterr().err
    assert main(["cache", "use", "--platform-id", "youtube", "--video-id", "abc",
                 "clean", "1"]) == 1
    assert "youtube/abc has no cached 'clean'; its components: cleaning, summary" in \
        capsys.readouterr().err
    # the current version did not move
    assert ArtifactStore(root / "cache").entry("youtube", "abc", "cleaning").version == 2


def test_diff_is_a_unified_diff_of_pretty_json(root, capsys):
    assert main(["cache", "diff", "--platform-id", "youtube", "--video-id", "abc",
                 "cleaning", "1", "2"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith("--- cleaning v1 (gemma2:9b, ") and "run run-1" in lines[0]
    assert lines[1].startswith("+++ cleaning v2 (qwen2.5:14b, ")
    assert '-  "text": "hello world"' in lines
    assert '+  "text": "Hello, world!"' in lines
    assert '   "lang": "en",' in lines     # context: keys sorted, two-space indent
    assert main(["cache", "diff", "--platform-id", "youtube", "--video-id", "abc",
                 "cleaning", "2", "2"]) == 0
    assert "identical" in capsys.readouterr().out
    text = diff_versions(ArtifactStore(root / "cache"), "youtube", "abc", "cleaning", 2, 1,
                         context=0)
    assert '   "lang": "en",' not in text.splitlines() and text.startswith("--- cleaning v2")


def test_diff_errors_are_clear(root, capsys):
    base = ["cache", "diff", "--platform-id", "youtube", "--video-id", "abc"]
    assert main([*base, "cleaning", "1", "9"]) == 1
    assert "has no version 9; its versions: v1, v2 (current)" in capsys.readouterr().err
    assert main([*base, "asr", "1", "2"]) == 1
    assert "has no cached 'asr'; its components: cleaning, summary" in \
        capsys.readouterr().err
    # a version file edited behind the store's back
    (root / "cache" / "youtube" / "abc" / "cleaning" / "v1.json").write_text('{"text": "x"}')
    assert main([*base, "cleaning", "1", "2"]) == 1
    assert "does not match its recorded SHA-256" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main([*base, "cleaning", "zero", "2"])
    assert exc.value.code == 2
    with pytest.raises(ConfigError):
        diff_versions(ArtifactStore(root / "cache"), "youtube", "abc", "summary", 1, 2)
    capsys.readouterr()


def test_root_option_and_missing_cache(tmp_path, capsys):
    assert main(["cache", "ls", "--root", str(tmp_path / "empty")]) == 0
    assert "no cached results" in capsys.readouterr().out
    assert not (tmp_path / "empty").exists()
