"""Behaviour unchanged across a refactor: the same small run on two checkouts gives the same store.

    PYTHONPATH=<old>/src:<old> .venv/bin/python benchmarks/same_store.py run old.json /tmp/old
    PYTHONPATH=<new>/src:<new> .venv/bin/python benchmarks/same_store.py run new.json /tmp/new
    .venv/bin/python benchmarks/same_store.py compare /tmp/old /tmp/new

`run`: one ReST-EM round on a demo passage, two held-out passages with a hand-written teacher, on the code on
PYTHONPATH; writes its results' fingerprint (self-edit keys and rewards, policy keys, condition scores).
`compare`: every dataset, adapter and evaluation key in both stores, byte for byte (timings excepted).
"""

import json
import sys
import time
from pathlib import Path

import httpx

from seal_lab.formats.passages import demo_passages, passages_to_json
from services.coordinator.cli.launcher import LocalStack


def compare(old: Path, new: Path) -> None:
    def files(root: Path) -> set[str]:
        return {
            str(p.relative_to(root))
            for top in ("datasets", "adapters", "trainer-jobs", "evaluations")
            for p in (root / top).rglob("*")
            if p.is_file()
        }

    a, b = files(old / "store"), files(new / "store")
    timed = ("seal_adapter.json", "trainer-jobs/")  # these records carry seconds and tokens per second
    differ = [
        k for k in sorted(a & b) if (old / "store" / k).read_bytes() != (new / "store" / k).read_bytes()
    ]
    print(
        json.dumps(
            {
                "keys": [len(a), len(b)],
                "only_in_one": sorted(a ^ b),
                "differ": [k for k in differ if not any(t in k for t in timed)],
                "differ_timed_records": len([k for k in differ if any(t in k for t in timed)]),
            },
            indent=1,
        )
    )


if sys.argv[1] == "compare":
    compare(Path(sys.argv[2]), Path(sys.argv[3]))
    sys.exit(0)
out, workdir = Path(sys.argv[2]), Path(sys.argv[3])
passages = passages_to_json(demo_passages())
train, heldout = passages[:1], passages[1:3]
teacher = [
    {
        "title": p["title"],
        "context": p["context"],
        "completions": ["\n".join(f"{i}. {s.strip()}." for i, s in enumerate(p["context"].split(". "), 1))],
    }
    for p in heldout
]
env = {"SEAL_TRAINER_MAX_EPOCHS": "2", "SEAL_TRAINER_MAX_STEPS": "4", "SEAL_TRAINER_MAX_MAX_LENGTH": "160"}
body = {
    "name": "compare",
    "passages": train,
    "heldout_passages": heldout,
    "teachers": [{"name": "hand", "passages": teacher}],
    "config": {
        "rounds": 1,
        "k": 2,
        "max_new_tokens": 48,
        "eval_max_new_tokens": 12,
        "seed": 5,
        "retention": False,
        "specificity_control": False,
        "min_reward": -1,
    },
}
started = time.time()
with (
    LocalStack(workdir, extra_env=env) as stack,
    httpx.Client(base_url=stack.coordinator_url, timeout=30) as c,
):
    run_id = c.post("/v1/runs", json=body).json()["id"]
    while (d := c.get(f"/v1/runs/{run_id}").json())["status"] in ("queued", "running"):
        time.sleep(2)
r = d["results"]
fp = {
    "status": d["status"],
    "self_edits": [
        [(e["dataset_key"], e["reward"]) for p in rr["passages"] for e in p["self_edits"]]
        for rr in r["rounds"]
    ],
    "policies": [rr["policy_update"]["adapter_key"] for rr in r["rounds"]],
    "heldout": [(c["condition"], c["mean"], c["stderr"]) for c in r["heldout"]["conditions"]],
    "seconds": round(time.time() - started),
}
out.write_text(json.dumps(fp, indent=1))
print(json.dumps(fp)[:2000])
