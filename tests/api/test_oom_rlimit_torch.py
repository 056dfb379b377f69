"""A real CPU OOM: torch's allocator failing under ``RLIMIT_AS``, absorbed by halving.

Each case runs in a subprocess whose address space is capped a few hundred MiB above what
it already uses, so a conv net on 256×256 images cannot fit 256, 128 or 64 images per
batch (1 GiB, 512 MiB, 256 MiB of activations) but fits 32.
"""

import json
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("torch")

CHILD = textwrap.dedent("""
    import json, resource, sys
    import psutil, torch
    import mlobs
    from mlobs.testing import capture

    torch.set_num_threads(1)  # one allocator arena: the limit stays predictable
    # oneDNN keeps the scratchpad of its largest convolution, which would eat the headroom
    # the smaller batches need; the native convolution frees everything it allocates.
    torch.backends.mkldnn.enabled = False
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.ReLU(),
                                torch.nn.Conv2d(16, 1, 3, padding=1)).eval()
    with torch.no_grad():  # torch's lazy set-up (kernels, pools) happens before the cap
        model(torch.ones(1, 1, 256, 256))
    floor = int(sys.argv[1])
    with capture() as rec:
        with mlobs.run("youtube", "oom-test") as run:
            with run.component("warm-up"):  # starts mlobs's threads before the cap
                pass
            headroom = 400 * 1024 * 1024
            cap = psutil.Process().memory_info().vms + headroom
            resource.setrlimit(resource.RLIMIT_AS, (cap, resource.RLIM_INFINITY))
            try:
                with run.component("denoise", batch_size=256,
                                   on_oom=mlobs.HalveBatch(min=floor), device="cpu") as c:
                    for attempt in c.attempts():
                        with attempt:
                            with torch.no_grad():
                                out = model(torch.ones(c.batch_size, 1, 256, 256))
                            c.set_items(out.shape[0])
            except RuntimeError as exc:
                print("raised:", type(exc).__name__, file=sys.stderr)
    print(json.dumps(rec.component("denoise").to_dict()))
""")


def run_child(floor: int) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD, str(floor)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_halving_reaches_the_size_that_fits():
    record = run_child(floor=1)
    ooms = [e["attributes"] for e in record["events"] if e["kind"] == "oom"]
    assert [e["batch_size"] for e in ooms] == [256, 128, 64]
    assert [e["requested_bytes"] for e in ooms] == [2**30, 2**29, 2**28]
    assert all(e["device_kind"] == "cpu" and e["address_space_limit_bytes"] > 0 for e in ooms)
    assert (record["status"], record["batch_size"], record["batch_size_requested"],
            record["oom_count"], record["items"]) == ("ok", 32, 256, 3, 32)


def test_a_floor_above_the_fitting_size_ends_oom():
    record = run_child(floor=64)
    assert (record["status"], record["error_code"], record["oom_count"],
            record["batch_size"]) == ("error", "oom", 3, 64)
    assert "DefaultCPUAllocator" in record["error_message"]
