#!/usr/bin/env python3
"""Watching benchmarks, against bench/fake_instance.py with STREAM_ACCOUNTS (a fake Mastodon with a
streaming API that sends a heartbeat every 15 s, as Mastodon does, and an Ollama that answers after
MODEL_DELAY_MS).

One `fedialt worker` process (the web process runs none) watches ACCOUNTS accounts (default 1000)
over PostgreSQL:
1. idle: the worker's resident memory with none, half and all of them taken up (each with its
   stream open); per watched account, the growth from half to all (the fixed costs, such as the
   database pool, come with the first half) and from none to all; and its CPU time over IDLE_S
   seconds (default 60) of heartbeats;
2. a burst of BURST new posts (default 200) spread over the accounts at once: the time until the
   last draft, against the model's time divided by CAPTION_CONCURRENCY (default 4), and a check
   that each post was drafted once.

    cargo build --release --locked && python3 bench/watch.py     # prints a markdown report

Uses its own redis-server and PostgreSQL database; the shared Redis on 6379 is not touched.
"""
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import runs as r  # noqa: E402  (the helpers of bench/runs.py)

ACCOUNTS = int(os.environ.get("ACCOUNTS", "1000"))
BURST = int(os.environ.get("BURST", "200"))
IDLE_S = int(os.environ.get("IDLE_S", "60"))
MODEL_DELAY_MS = int(os.environ.get("MODEL_DELAY_MS", "50"))
CONCURRENCY = int(os.environ.get("CAPTION_CONCURRENCY", "4"))
DB = "fedialt_bench_watch"


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    return 0.0


def sql(query):
    return subprocess.run(["psql", f"{r.PG_BASE}/{DB}", "-tAc", query],
                          capture_output=True, text=True, check=True).stdout.strip()


def stats(fake_port):
    return json.loads(urllib.request.urlopen(f"http://127.0.0.1:{fake_port}/stats").read())


def until(check, limit, what):
    deadline = time.monotonic() + limit
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out: {what}")
        time.sleep(0.2)


def main():
    if not os.path.exists(r.BIN):
        raise SystemExit("build first: cargo build --release --locked")
    work = tempfile.mkdtemp(prefix="fedialt-bench-watch-")
    fake_port, port, redis_port = r.free_port(), r.free_port(), r.free_port()
    try:
        r.spawn(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no"], os.environ)
        r.spawn([sys.executable, os.path.join(r.ROOT, "bench", "fake_instance.py"), str(fake_port),
                 "bench-token", "0"],
                {**os.environ, "MODEL_DELAY_MS": str(MODEL_DELAY_MS), "STREAM_ACCOUNTS": str(ACCOUNTS)})
        r.psql(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        r.psql(f"CREATE DATABASE {DB}")
        data_dir = os.path.join(work, "app")
        os.makedirs(data_dir)
        env = r.app_env("postgres", data_dir, port, redis_port,
                        {"CAPTION_BASE_URL": f"http://127.0.0.1:{fake_port}", "FEDIALT_WORKER": "false",
                         "CAPTION_CONCURRENCY": str(CONCURRENCY), "DATABASE_URL": f"{r.PG_BASE}/{DB}",
                         "FEDIALT_WATCH_POLL_SECS": "300"})
        r.create_users(env, ["bench"])
        r.spawn([r.BIN, "serve"], env)
        base = f"http://127.0.0.1:{port}"
        r.wait_http(base + "/healthz")
        r.wait_http(f"http://127.0.0.1:{fake_port}/stats")
        person = r.Person(base)
        person.sign_in("bench")
        token = person.csrf()
        fake = f"http://127.0.0.1:{fake_port}"
        for n in range(1, ACCOUNTS + 1):
            status = person.post("/platforms", {"csrf_token": token, "instance_url": fake,
                                                "access_token": f"bench-token-{n}"})
            assert status == 303, f"connect answered {status}"
        worker = r.spawn([r.BIN, "worker"], {**env, "FEDIALT_DATA_DIR": os.path.join(data_dir, "w")})
        time.sleep(3)
        rss_before = rss_mb(worker.pid)
        ids = sql("SELECT id FROM platform_connections ORDER BY id").split()
        half = ids[: len(ids) // 2]

        def take_up(batch, total):
            for pid in batch:
                assert person.post(f"/platforms/{pid}/watch", {"csrf_token": token, "watch": "on"}) == 303
            until(lambda: stats(fake_port)["streams_open"] >= total, 300, "every stream open")
            until(lambda: sql("SELECT count(*) FROM watches WHERE mode = 'stream'") == str(total), 300,
                  "every watch live")
            time.sleep(5)
            return rss_mb(worker.pid)

        # Per account: the growth from half of them to all of them (the pool, the first
        # connections and the allocator's start are in the first half).
        started = time.monotonic()
        rss_half = take_up(half, len(half))
        rss_after = take_up(ids[len(half):], ACCOUNTS)
        taken_up = time.monotonic() - started
        cpu_before = r.cpu_seconds(worker.pid)
        time.sleep(IDLE_S)
        idle_cpu = r.cpu_seconds(worker.pid) - cpu_before
        rss_idle = rss_mb(worker.pid)

        model_before = stats(fake_port)["model_calls"]
        started = time.monotonic()
        urllib.request.urlopen(urllib.request.Request(f"{fake}/burst?n={BURST}", method="POST")).read()
        until(lambda: sql("SELECT count(*) FROM caption_drafts") == str(BURST), 600, "every draft")
        burst = time.monotonic() - started
        drafts = sql("SELECT count(*), count(DISTINCT (platform_id, media_id)) FROM caption_drafts")
        model_calls = stats(fake_port)["model_calls"] - model_before
        ideal = BURST * MODEL_DELAY_MS / 1000 / CONCURRENCY
        per_account_kb = (max(rss_after, rss_idle) - rss_half) * 1024 / (ACCOUNTS - len(half))
        overall_kb = (max(rss_after, rss_idle) - rss_before) * 1024 / ACCOUNTS
        lines = [
            "| watched accounts | taken up in (s) | worker RSS: none / half / all (MB) "
            "| per account, half to all (KB) | per account, none to all (KB) "
            "| CPU over an idle minute, all of them (ms) |",
            "|---|---|---|---|---|---|",
            f"| {ACCOUNTS} | {taken_up:.1f} | {rss_before:.1f} / {rss_half:.1f} / {max(rss_after, rss_idle):.1f} "
            f"| {per_account_kb:.1f} | {overall_kb:.1f} | {idle_cpu * 1000 * 60 / IDLE_S:.0f} |",
            "",
            "| new posts at once | drafts (all, distinct images) | model calls | time to the last draft (s) "
            "| model time ÷ concurrency (s) | ratio |",
            "|---|---|---|---|---|---|",
            f"| {BURST} | {drafts.replace('|', ', ')} | {model_calls} | {burst:.1f} | {ideal:.1f} | {burst / ideal:.2f} |",
            "",
            f"Machine: {os.cpu_count()} cores. Command: python3 bench/watch.py (ACCOUNTS={ACCOUNTS}, BURST={BURST}, "
            f"IDLE_S={IDLE_S}, MODEL_DELAY_MS={MODEL_DELAY_MS}, CAPTION_CONCURRENCY={CONCURRENCY}).",
        ]
        print("\n".join(lines))
    finally:
        for p in r.PROCS:
            if p.poll() is None:
                p.terminate()
        for p in r.PROCS:
            try:
                p.wait(timeout=10)
            except Exception:
                p.kill()


if __name__ == "__main__":
    main()
