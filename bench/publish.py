#!/usr/bin/env python3
"""Review and publishing benchmarks, against bench/fake_instance.py (a fake Mastodon that counts
every call and enforces a rate limit with Mastodon's headers, and an instant Ollama).

1. Publishing: a run drafts 100 images spread over 60 posts; one bulk approval of all 100; the
   fake counts the calls on each post (goal: at most three: status, source, edit), the 429s it had
   to answer (goal: none: fedialt waits for the reset when X-RateLimit-Remaining reaches 0), and
   images dropped by an edit (must be 0). The fake allows RATE_LIMIT calls per RATE_WINDOW_S
   (default 100 per 15 s, so publishing has to wait for a reset at least once).
2. The review page: PEOPLE people (default 5) with 500 pending drafts each; their sessions fetch
   random pages of /review from 4 threads at once; the latency of each answer as the client sees
   it (an upper bound of the app's time; goal: under 50 ms).

    cargo build --release --locked && python3 bench/publish.py     # prints a markdown report
"""
import json
import os
import random
import re
import statistics
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import runs as R  # noqa: E402  (the app, person and process helpers)

RATE_LIMIT = int(os.environ.get("RATE_LIMIT", "100"))
RATE_WINDOW = int(os.environ.get("RATE_WINDOW_S", "15"))
PEOPLE = int(os.environ.get("PEOPLE", "5"))


def start_app(db, work, name, fake_port, users):
    port, redis_port = R.free_port(), R.free_port()
    R.spawn(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], os.environ)
    data_dir = os.path.join(work, f"{db}-{name}")
    R.fresh_database(db, data_dir)
    env = R.app_env(db, data_dir, port, redis_port, {"CAPTION_BASE_URL": f"http://127.0.0.1:{fake_port}"})
    R.create_users(env, users)
    app = R.spawn([R.BIN, "serve"], env)
    base = f"http://127.0.0.1:{port}"
    R.wait_http(base + "/healthz")
    return app, base


def run_to_end(person, posts):
    person.start(person.csrf())
    while True:
        status = person.status()
        if status["state"] in ("completed", "failed", "cancelled"):
            break
        time.sleep(0.05)
    assert status["state"] == "completed", status
    return status


def draft_ids(person, state):
    ids, page = [], 1
    while True:
        html = person.get(f"/review?state={state}&page={page}")
        found = re.findall(r'<article class="draft review-draft" id="draft-(\d+)"', html)
        ids += found
        pages = re.search(r"; page (\d+) of (\d+)\.", html)
        if not found or not pages or pages.group(1) == pages.group(2):
            return ids
        page += 1


def publishing(db, work):
    fake_port = R.free_port()
    fake_env = {**os.environ, "MODEL_DELAY_MS": "0", "EXTRA_IMAGE_POSTS": "40",
                "RATE_LIMIT": str(RATE_LIMIT), "RATE_WINDOW_S": str(RATE_WINDOW)}
    fake = R.spawn([sys.executable, os.path.join(R.ROOT, "bench", "fake_instance.py"), str(fake_port), "bench-token", "60"], fake_env)
    R.wait_http(f"http://127.0.0.1:{fake_port}/stats")
    app, base = start_app(db, work, "publish", fake_port, ["bench"])
    person = R.Person(base)
    person.sign_in("bench")
    person.connect_and_configure(f"http://127.0.0.1:{fake_port}", 60)
    status = run_to_end(person, 60)
    ids = draft_ids(person, "pending")
    assert len(ids) == 100, (len(ids), status)
    stats = lambda: json.loads(urllib.request.urlopen(f"http://127.0.0.1:{fake_port}/stats").read())
    before = stats()
    started = time.monotonic()
    fields = [("csrf_token", person.csrf()), ("action", "approve")] + [("draft_ids", i) for i in ids]
    code = person.post("/review/bulk", fields)
    assert code == 303, code
    while True:
        s = stats()
        if s["described"] >= 100:
            break
        assert time.monotonic() - started < 600, s
        time.sleep(0.1)
    wall = time.monotonic() - started
    # Every draft recorded as published too.
    while len(draft_ids(person, "published")) < 100:
        assert time.monotonic() - started < 600
        time.sleep(0.2)
    wall_all = time.monotonic() - started
    app.terminate(); app.wait()
    fake.terminate()
    return {"posts": s["posts_called"], "max_calls": s["max_calls_per_post"], "edits": s["edits"],
            "calls": s["api_calls"] - before["api_calls"], "rate_limited": s["rate_limited"],
            "dropped": s["images_dropped"], "wall": wall, "wall_all": wall_all}


def review_page(db, work):
    fake_port = R.free_port()
    fake = R.spawn([sys.executable, os.path.join(R.ROOT, "bench", "fake_instance.py"), str(fake_port), "bench-token", "500"],
                   {**os.environ, "MODEL_DELAY_MS": "0"})
    R.wait_http(f"http://127.0.0.1:{fake_port}/stats")
    names = [f"reviewer{i}" for i in range(PEOPLE)]
    app, base = start_app(db, work, "review", fake_port, names)
    people = []
    for name in names:
        p = R.Person(base)
        p.sign_in(name)
        p.connect_and_configure(f"http://127.0.0.1:{fake_port}", 500)
        run_to_end(p, 500)
        people.append(p)
    first = people[0].get("/review")
    assert "page 1 of 25" in first, "500 pending drafts, 20 a page"
    latencies, lock = [], threading.Lock()

    def browse(seed):
        rnd = random.Random(seed)
        for _ in range(100):
            p = rnd.choice(people)
            path = f"/review?state=pending&page={rnd.randint(1, 25)}"
            t = time.perf_counter()
            html = p.get(path)
            ms = (time.perf_counter() - t) * 1000
            assert "review-draft" in html
            with lock:
                latencies.append(ms)

    threads = [threading.Thread(target=browse, args=(i,)) for i in range(4)]
    cpu_before = R.cpu_seconds(app.pid)
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - started
    cpu = R.cpu_seconds(app.pid) - cpu_before
    app.terminate(); app.wait()
    fake.terminate()
    latencies.sort()
    n = len(latencies)
    return {"n": n, "p50": statistics.median(latencies), "p95": latencies[int(n * 0.95) - 1],
            "max": latencies[-1], "rps": n / wall, "cpu_ms": 1000 * cpu / n}


def main():
    if not os.path.exists(R.BIN):
        raise SystemExit("build first: cargo build --release --locked")
    work = tempfile.mkdtemp(prefix="fedialt-bench-publish-")
    lines = []
    try:
        pub = ["| database | drafts | posts edited | calls per post (max) | edits | API calls | 429s | images dropped | all on the instance (s) | all recorded (s) |",
               "|---|---|---|---|---|---|---|---|---|---|"]
        page = ["| database | drafts per person | people | requests | p50 ms | p95 ms | max ms | requests/s | app CPU ms per page |",
                "|---|---|---|---|---|---|---|---|---|"]
        for db in ("sqlite", "postgres"):
            p = publishing(db, work)
            pub.append(f"| {db} | 100 | {p['posts']} | {p['max_calls']} | {p['edits']} | {p['calls']} | {p['rate_limited']} | "
                       f"{p['dropped']} | {p['wall']:.1f} | {p['wall_all']:.1f} |")
            r = review_page(db, work)
            page.append(f"| {db} | 500 | {PEOPLE} | {r['n']} | {r['p50']:.1f} | {r['p95']:.1f} | {r['max']:.1f} | "
                        f"{r['rps']:.0f} | {r['cpu_ms']:.2f} |")
        lines = pub + [""] + page
    finally:
        for proc in R.PROCS:
            if proc.poll() is None:
                proc.terminate()
        for proc in R.PROCS:
            try:
                proc.wait(timeout=10)
            except Exception:
                proc.kill()
    lines += ["", f"Machine: {os.cpu_count()} cores. Command: python3 bench/publish.py (RATE_LIMIT={RATE_LIMIT} per "
              f"{RATE_WINDOW} s on the fake)."]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
