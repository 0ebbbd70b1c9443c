"""`make bench-scale`: the coordinator alone over a store of N finished runs and N adapters (issue 35).

For each N (default 100, 1,000 and 10,000) it builds a synthetic store: one finished 12-passage run made by
the real run engine over fake services (tests/unit/fake_services.py), copied N times, each copy a valid
finished run under its own id (its spec and manifest rewritten, its other records hard links on a local store),
and N adapter folders (config and `seal_adapter.json`). Then it starts `python -m services.coordinator` over
it twice: the first start finds no run index (a store an older seal-lab wrote) and rebuilds it from the
records; the second start is the measured one:
- start: seconds from launching the process to `/healthz` 200;
- rss: resident memory (MiB) after the idle window;
- idle cpu: CPU seconds the process used over the idle window (no requests), in % of one core;
- worst: the slowest `/healthz` answer over a second window as long, polled every 50 ms;
- runs page / adapters page: median (ms) of 5 requests each of the first and of a later page.
With `--s3-sizes` the same runs on a SeaweedFS S3 server (tests/s3_server.py), uploads in parallel.

Writes `benchmarks/results/scale_<time>_cpu<cores>.json` (never overwrites) and ends with the line
`scale: N=<largest> start <s> s, rss <m> MiB, idle cpu <p>%, worst <w> ms, runs page <a> ms, adapters page <b> ms`
(of the local store). The machine it ran on is named in the file: timings on a shared machine vary.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(REPO / "src"), str(REPO), str(HERE)]

from resultfiles import write_new  # noqa: E402

from seal_lab.formats.adapters import ADAPTER_CONFIG, ADAPTER_META  # noqa: E402
from seal_lab.formats.passages import demo_passages, passages_to_json  # noqa: E402
from seal_lab.store import ObjectStore  # noqa: E402
from seal_lab.store.local import LocalStore  # noqa: E402
from services.coordinator.engine.manager import RunManager  # noqa: E402
from services.coordinator.run.schemas import RunConfig, RunCreate  # noqa: E402
from services.coordinator.settings import CoordinatorSettings  # noqa: E402
from tests.unit.fake_services import FakeClients  # noqa: E402

PASSAGES = 12
IDLE_SECONDS = 30.0
REPEATS = 5
EDITED = ("spec.json", "spec.copy.json", "manifest.json")


def template_run(root: Path) -> str:
    """One finished 12-passage run, made by the run engine over the fake services; its id."""
    demo = passages_to_json(demo_passages())
    passages = [{**demo[i % len(demo)], "id": f"p{i:02d}"} for i in range(PASSAGES)]
    config = CoordinatorSettings(trainer_addresses=["trainer-a:1"], initial_backoff_seconds=0.0)

    async def main() -> str:
        manager = RunManager(LocalStore(root), FakeClients(config.trainer_addresses), config)
        await manager.start()
        try:
            run = await manager.create(RunCreate(passages=passages, config=RunConfig(k=2)))
            while run.id in manager._tasks:
                await asyncio.sleep(0.01)
            assert run.status == "succeeded", run.error
            return run.id
        finally:
            await manager.shutdown()

    return asyncio.run(main())


def run_copies(template: Path, run_id: str, n: int) -> list[tuple[str, dict[str, bytes], list[Path]]]:
    """Per copy: its id, its rewritten records (spec and manifest carry the id and a creation time of their
    own) and the template's other files."""
    folder = template / "runs" / run_id
    files = [p for p in folder.rglob("*") if p.is_file() and p.relative_to(folder).as_posix() not in EDITED]
    records = {name: json.loads((folder / name).read_bytes()) for name in EDITED}
    copies = []
    base = time.time() - n - 86400
    for i in range(n):
        new_id = f"run-20260101-000000-{i:06x}"
        edited = {}
        for name, record in records.items():
            record = {**record, "id": new_id}
            if "created_at" in record:
                record["created_at"] = base + i
            if "finished_at" in record:
                record["finished_at"] = base + i + 60
            edited[name] = json.dumps(record, sort_keys=True, indent=1).encode()
        copies.append((new_id, edited, files))
    return copies


def adapter_folders(n: int) -> list[tuple[str, dict[str, bytes]]]:
    config = json.dumps({"peft_type": "LORA", "r": 8, "target_modules": ["q_proj", "v_proj"]}).encode()
    out = []
    for i in range(n):
        digest = hashlib.sha256(f"adapter {i}".encode()).hexdigest()
        meta = {"base_model": {"id": "embedded:smollm2-135m-instruct"}, "dataset_key": "", "seed": i}
        out.append((f"adapters/{digest}", {ADAPTER_CONFIG: config, ADAPTER_META: json.dumps(meta).encode()}))
    return out


def build_local(root: Path, template: Path, run_id: str, n: int) -> None:
    folder = template / "runs" / run_id
    for new_id, edited, files in run_copies(template, run_id, n):
        target = root / "runs" / new_id
        for path in files:
            dest = target / path.relative_to(folder)
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.link(path, dest)
        for name, data in edited.items():
            (target / name).write_bytes(data)
    for key, files in adapter_folders(n):
        (root / key).mkdir(parents=True)
        for name, data in files.items():
            (root / key / name).write_bytes(data)


def build_store(store: ObjectStore, template: Path, run_id: str, n: int) -> None:
    """The same store through the ObjectStore interface (S3), 16 uploads at a time."""
    folder = template / "runs" / run_id
    writes: list[tuple[str, Callable[[], bytes]]] = []
    for new_id, edited, files in run_copies(template, run_id, n):
        for path in files:
            writes.append((f"runs/{new_id}/{path.relative_to(folder).as_posix()}", path.read_bytes))
        for name, data in edited.items():
            writes.append((f"runs/{new_id}/{name}", lambda d=data: d))
    for key, files in adapter_folders(n):
        for name, data in files.items():
            writes.append((f"{key}/{name}", lambda d=data: d))
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda w: store.put_bytes(w[0], w[1]()), writes))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 30.0) -> tuple[int, bytes, float]:
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read(), time.perf_counter() - started
    except urllib.error.HTTPError as exc:
        return exc.code, b"", time.perf_counter() - started
    except OSError:
        return 0, b"", time.perf_counter() - started


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def measure(env: dict[str, str], idle_seconds: float, full: bool) -> dict[str, Any]:
    """Start the coordinator, time it to /healthz 200; with `full`, the idle window and the pages too."""
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        **env,
        "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)]),
        "SEAL_COORDINATOR_HOST": "127.0.0.1",
        "SEAL_COORDINATOR_PORT": str(port),
        "SEAL_LOG_LEVEL": "WARNING",
    }
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "services.coordinator"], cwd=REPO, env=env)
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the coordinator exited with {process.returncode}")
            status, _, _ = _get(f"{base}/healthz", timeout=5)
            if status == 200:
                break
            time.sleep(0.05)
        result: dict[str, Any] = {"start_s": round(time.perf_counter() - started, 2)}
        result["rss_after_start_mib"] = round(_rss_mib(process.pid), 1)
        if not full:
            return result
        time.sleep(2)  # past start-up's own work (the first lease watch)
        cpu, idle_started = _cpu_seconds(process.pid), time.perf_counter()
        time.sleep(idle_seconds)  # idle: nobody asks anything
        elapsed = time.perf_counter() - idle_started
        result["idle_cpu_percent"] = round(100 * (_cpu_seconds(process.pid) - cpu) / elapsed, 2)
        result["idle_seconds"] = round(elapsed, 1)
        worst, probing = 0.0, time.perf_counter()
        while time.perf_counter() - probing < idle_seconds:  # then a probe every 50 ms: the worst answer
            status, _, took = _get(f"{base}/healthz", timeout=30)
            assert status == 200, status
            worst = max(worst, took)
            time.sleep(0.05)
        result["worst_ms"] = round(worst * 1000, 1)
        result["rss_mib"] = round(_rss_mib(process.pid), 1)
        result["runs_page_ms"] = _pages(base, "/v1/runs?page_size=50", "next_page_token", "page_token")
        result["adapters_page_ms"] = _pages(base, "/v1/adapters?limit=50", "next_after", "after")
        return result
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _pages(base: str, first: str, token_field: str, param: str) -> dict[str, float]:
    """Median and worst (ms) over REPEATS reads of the first page and of the page after the 10th."""
    times = []
    url = f"{base}{first}"
    for _ in range(10):  # walk to a later page
        status, body, _ = _get(url)
        assert status == 200, (url, status)
        token = json.loads(body).get(token_field)
        if not token:
            break
        url = f"{base}{first}&{param}={urllib.parse.quote(token)}"
    for target in (f"{base}{first}", url):
        for _ in range(REPEATS):
            status, _, took = _get(target)
            assert status == 200, (target, status)
            times.append(took * 1000)
    return {"median": round(statistics.median(times), 1), "worst": round(max(times), 1)}


def one_size(kind: str, n: int, template: Path, run_id: str, work: Path, idle: float, s3: Any) -> dict:
    if kind == "local":
        root = work / f"store-{n}"
        build_started = time.perf_counter()
        build_local(root, template, run_id, n)
        env = {"SEAL_STORE_KIND": "local", "SEAL_STORE_LOCAL_ROOT": str(root)}
    else:
        from seal_lab.store.s3 import S3Store
        from tests.s3_server import unique_bucket

        bucket = unique_bucket()
        store = S3Store.from_settings(s3.store_settings(bucket))
        store.check()
        build_started = time.perf_counter()
        build_store(store, template, run_id, n)
        env = {
            "SEAL_STORE_KIND": "s3",
            "SEAL_STORE_S3_ENDPOINT": s3.endpoint,
            "SEAL_STORE_S3_BUCKET": bucket,
            "SEAL_STORE_S3_ACCESS_KEY": s3.access_key,
            "SEAL_STORE_S3_SECRET_KEY": s3.secret_key,
        }
    built = round(time.perf_counter() - build_started, 1)
    print(f"{kind} N={n}: store built in {built} s; first start (rebuilds the index)...", flush=True)
    first = measure(env, idle, full=False)
    print(f"{kind} N={n}: first start {first['start_s']} s; measured start...", flush=True)
    result = {"store": kind, "n": n, "build_s": built, "first_start": first, **measure(env, idle, full=True)}
    print(json.dumps(result), flush=True)
    if kind == "local":
        shutil.rmtree(root, ignore_errors=True)
    return result


def _line(r: dict[str, Any]) -> str:
    return (
        f"scale: N={r['n']} start {r['start_s']} s, rss {r['rss_mib']:.0f} MiB, idle cpu {r['idle_cpu_percent']}%, "
        f"worst {r['worst_ms']:.0f} ms, runs page {r['runs_page_ms']['median']} ms, "
        f"adapters page {r['adapters_page_ms']['median']} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="100,1000,10000", help="N for the local store, comma-separated")
    parser.add_argument("--s3-sizes", default="", help="N for the S3 test server (e.g. 100,1000); none: skip")
    parser.add_argument("--idle-seconds", type=float, default=IDLE_SECONDS)
    parser.add_argument("--work", type=Path, default=None, help="where the stores are built (a temp dir)")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    s3_sizes = [int(s) for s in args.s3_sizes.split(",") if s]
    work = Path(tempfile.mkdtemp(prefix="seal-scale-", dir=args.work))
    started = time.perf_counter()
    try:
        template = work / "template"
        run_id = template_run(template)
        files = sum(1 for p in (template / "runs" / run_id).rglob("*") if p.is_file())
        results: dict[str, Any] = {
            "machine": {
                "cpus": os.cpu_count(),
                "host": socket.gethostname(),
                "python": sys.version.split()[0],
            },
            "run_files": files,
            "passages": PASSAGES,
            "idle_seconds": args.idle_seconds,
            "sizes": [],
        }
        for n in sizes:
            results["sizes"].append(one_size("local", n, template, run_id, work, args.idle_seconds, None))
        if s3_sizes:
            from tests.s3_server import running_s3_server

            with running_s3_server() as s3:
                for n in s3_sizes:
                    results["sizes"].append(one_size("s3", n, template, run_id, work, args.idle_seconds, s3))
        results["seconds"] = round(time.perf_counter() - started, 1)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    path = write_new(args.out, "scale", results)
    print(f"wrote {path}")
    for r in results["sizes"]:
        print(
            f"  {r['store']:5s} {_line(r)} (first start, rebuilding the index: {r['first_start']['start_s']} s)"
        )
    local = [r for r in results["sizes"] if r["store"] == "local"]
    if local:
        print(_line(max(local, key=lambda r: r["n"])))


if __name__ == "__main__":
    main()
