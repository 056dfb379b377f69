"""Choosing a batch size before the run (model system rules §8)."""

import json
import subprocess
import sys
import textwrap

import pytest

import mlobs
from mlobs.hooks.batch_size import MemoryCost, choose_batch_size, load_checklist
from mlobs.testing import capture

MIB = 1024 * 1024


def test_largest_size_that_fits_the_usable_share_of_free_memory():
    cost = MemoryCost(per_item_bytes=40 * MIB, fixed_bytes=1000 * MIB)
    choice = choose_batch_size(cost, device="cuda:0", free_bytes=4000 * MIB,
                               safety_fraction=0.9)
    # (3600 - 1000) / 40 = 65 items
    assert choice.batch_size == 65 and choice.usable_bytes == 3600 * MIB
    capped = choose_batch_size(cost, device="cuda:0", free_bytes=4000 * MIB, max_batch_size=32)
    assert capped.batch_size == 32


def test_nothing_fits_is_insufficient_gpu_memory_on_a_gpu_and_oom_on_cpu():
    cost = MemoryCost(per_item_bytes=10 * MIB, fixed_bytes=900 * MIB)
    with pytest.raises(mlobs.ComponentError) as gpu:
        choose_batch_size(cost, device="cuda:1", free_bytes=1000 * MIB)
    assert gpu.value.code == "insufficient_gpu_memory"
    with pytest.raises(mlobs.ComponentError) as cpu:
        choose_batch_size(cost, device="cpu", free_bytes=1000 * MIB)
    assert cpu.value.code == "oom"


def test_checklists_in_toml_json_and_dicts(tmp_path):
    toml = tmp_path / "memory.toml"
    toml.write_text('[asr]\nper_item_mib = 48\nfixed_mib = 1900\n[ocr]\nper_item_bytes = 1024\n')
    costs = load_checklist(toml)
    assert costs["asr"] == MemoryCost(48 * MIB, 1900 * MIB)
    assert costs["ocr"] == MemoryCost(1024, 0)
    as_json = tmp_path / "memory.json"
    as_json.write_text(json.dumps({"asr": {"per_item_mib": 48, "fixed_mib": 1900}}))
    assert load_checklist(as_json) == {"asr": costs["asr"]}
    with pytest.raises(mlobs.ConfigError, match="needs per_item_bytes or per_item_mib"):
        load_checklist({"asr": {"fixed_mib": 1}})
    with pytest.raises(mlobs.ConfigError, match="cannot read memory checklist"):
        load_checklist(tmp_path / "missing.toml")


def test_the_choice_is_recorded_on_the_component():
    choice = choose_batch_size(MemoryCost(per_item_bytes=MIB), device="cpu",
                               free_bytes=100 * MIB, max_batch_size=50)
    with capture() as rec:
        with mlobs.run("youtube", "abc") as run:
            with run.component("asr", batch_size=choice) as c:
                assert c.batch_size == 50
    asr = rec.component("asr")
    assert (asr.batch_size, asr.batch_size_requested) == (50, 50)
    [event] = asr.events
    assert event.kind == "batch_size_chosen"
    assert event.attributes["free_bytes"] == 100 * MIB
    assert event.attributes["per_item_bytes"] == MIB


def test_cpu_free_memory_respects_the_address_space_limit():
    child = textwrap.dedent("""
        import resource, psutil
        from mlobs.hooks.batch_size import MemoryCost, choose_batch_size
        vms = psutil.Process().memory_info().vms
        resource.setrlimit(resource.RLIMIT_AS, (vms + 300 * 2**20, resource.RLIM_INFINITY))
        print(choose_batch_size(MemoryCost(per_item_bytes=2**20), safety_fraction=1.0).batch_size)
    """)
    done = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert 250 <= int(done.stdout) <= 300
