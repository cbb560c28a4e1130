#!/usr/bin/env python3
"""Caption run benchmarks, against bench/fake_instance.py (a fake Mastodon and an instant Ollama).

1. One run of 500 posts (the maximum) and one of 50, each in a fresh app process, on SQLite and
   PostgreSQL: the app's CPU time per image (user + system, from /proc, over the run) and its peak
   RSS (VmHWM).
2. 20 runs of 50 posts, by 20 people, started at once, carried out by two `fedialt worker`
   processes over PostgreSQL (the web process runs none), with a model that takes MODEL_DELAY_MS
   (default 100) per call: the wall time against the model time divided by the total concurrency,
   and a check that no image was drafted twice.

    cargo build --release --locked && python3 bench/runs.py     # prints a markdown report

Uses its own redis-server and PostgreSQL database; the shared Redis on 6379 is not touched.
"""
import base64
import http.cookiejar
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "fedialt")
PG_ADMIN = os.environ.get("PG_ADMIN", "postgres://postgres@127.0.0.1:5432/postgres")
PG_BASE = PG_ADMIN.rsplit("/", 1)[0]
MODEL_DELAY_MS = int(os.environ.get("MODEL_DELAY_MS", "100"))
PASSWORD = "bench-password-123"
PROCS = []


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_http(url, tries=300):
    for _ in range(tries):
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except Exception:
            time.sleep(0.1)
    raise SystemExit(f"no answer from {url}")


def spawn(args, env, **kw):
    p = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)
    PROCS.append(p)
    return p


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def peak_rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM"):
                return int(line.split()[1]) / 1024
    return 0


def psql(sql):
    subprocess.run(["psql", PG_ADMIN, "-qc", sql], check=True, stdout=subprocess.DEVNULL)


class Person:
    """A signed-in browser session: cookies, and the page's CSRF token."""

    def __init__(self, base):
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.jar), NoRedirect())

    def get(self, path):
        with self.opener.open(self.base + path, timeout=30) as r:
            return r.read().decode()

    def post(self, path, fields):
        data = urllib.parse.urlencode(fields).encode()
        try:
            with self.opener.open(self.base + path, data=data, timeout=30) as r:
                return r.status
        except urllib.error.HTTPError as e:
            return e.code

    def sign_in(self, username):
        page = self.get("/login")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        status = self.post("/login", {"username": username, "password": PASSWORD, "csrf_token": token})
        assert status == 303, f"sign-in answered {status}"

    def csrf(self):
        return re.search(r'name="csrf-token" content="([^"]+)"', self.get("/account")).group(1)

    def connect_and_configure(self, fake, posts):
        status = self.post("/platforms", {"csrf_token": self.csrf(), "instance_url": fake,
                                          "access_token": "bench-token"})
        assert status == 303, f"connect answered {status}"
        status = self.post("/caption_settings", {
            "csrf_token": self.csrf(), "max_posts_per_run": str(posts), "max_caption_length": "500",
            "optimal_min_length": "80", "optimal_max_length": "200", "processing_delay": "0"})
        assert status == 303, f"settings answered {status}"

    def start(self, token):
        assert self.post("/caption_generation/start", {"csrf_token": token}) == 303

    def status(self):
        return json.loads(self.get("/caption_generation/status"))


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None

    def http_error_303(self, req, fp, code, msg, headers):
        return fp


def app_env(db, data_dir, port, redis_port, extra=()):
    env = {
        "PATH": os.environ["PATH"], "FEDIALT_DATA_DIR": data_dir, "FEDIALT_BIND": f"127.0.0.1:{port}",
        "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0", "FEDIALT_REDIS_PREFIX": "bench:",
        "FEDIALT_ALLOW_PRIVATE_NETWORK": "true", "RUST_LOG": "warn",
    }
    if db == "postgres":
        env["DATABASE_URL"] = f"{PG_BASE}/fedialt_bench_runs"
        env["FEDIALT_SECRET_KEY"] = SECRET
    env.update(extra)
    return env


SECRET = base64.b64encode(os.urandom(64)).decode()


def fresh_database(db, data_dir):
    if db == "postgres":
        psql("DROP DATABASE IF EXISTS fedialt_bench_runs WITH (FORCE)")
        psql("CREATE DATABASE fedialt_bench_runs")
    os.makedirs(data_dir, exist_ok=True)


def create_users(env, names):
    for name in names:
        subprocess.run([BIN, "create-admin", "--username", name, "--email", f"{name}@example.org"],
                       env={**env, "FEDIALT_ADMIN_PASSWORD": PASSWORD}, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def one_run(db, posts, work):
    """A fresh app and fake; one run of `posts` posts. Returns (images, cpu ms per image, peak MB, wall s)."""
    fake_port, port, redis_port = free_port(), free_port(), free_port()
    spawn(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], os.environ)
    fake = spawn([sys.executable, os.path.join(ROOT, "bench", "fake_instance.py"), str(fake_port), "bench-token", str(posts)],
                 {**os.environ, "MODEL_DELAY_MS": "0"})
    data_dir = os.path.join(work, f"{db}-{posts}")
    fresh_database(db, data_dir)
    env = app_env(db, data_dir, port, redis_port, {"CAPTION_BASE_URL": f"http://127.0.0.1:{fake_port}"})
    create_users(env, ["bench"])
    app = spawn([BIN, "serve"], env)
    base = f"http://127.0.0.1:{port}"
    wait_http(base + "/healthz")
    wait_http(f"http://127.0.0.1:{fake_port}/stats")
    person = Person(base)
    person.sign_in("bench")
    person.connect_and_configure(f"http://127.0.0.1:{fake_port}", posts)
    token = person.csrf()
    cpu_before = cpu_seconds(app.pid)
    started = time.monotonic()
    person.start(token)
    while True:
        status = person.status()
        if status["state"] in ("completed", "failed", "cancelled"):
            break
        time.sleep(0.05)
    wall = time.monotonic() - started
    cpu = cpu_seconds(app.pid) - cpu_before
    peak = peak_rss_mb(app.pid)
    assert status["state"] == "completed", status
    images = status["drafts_made"]
    assert images == posts, status
    app.terminate(); app.wait()
    fake.terminate()
    # The status polls (about 20 a second) are in the CPU time too: an upper bound.
    return images, 1000 * cpu / images, peak, wall


def many_runs(work, people=20, posts=50):
    fake_port, port, redis_port = free_port(), free_port(), free_port()
    spawn(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], os.environ)
    spawn([sys.executable, os.path.join(ROOT, "bench", "fake_instance.py"), str(fake_port), "bench-token", str(posts)],
          {**os.environ, "MODEL_DELAY_MS": str(MODEL_DELAY_MS)})
    data_dir = os.path.join(work, "many")
    fresh_database("postgres", data_dir)
    env = app_env("postgres", data_dir, port, redis_port,
                  {"CAPTION_BASE_URL": f"http://127.0.0.1:{fake_port}", "FEDIALT_WORKER": "false",
                   "CAPTION_CONCURRENCY": "2"})
    names = [f"person{i}" for i in range(people)]
    create_users(env, names)
    spawn([BIN, "serve"], env)
    base = f"http://127.0.0.1:{port}"
    wait_http(base + "/healthz")
    wait_http(f"http://127.0.0.1:{fake_port}/stats")
    persons = []
    for name in names:
        p = Person(base)
        p.sign_in(name)
        p.connect_and_configure(f"http://127.0.0.1:{fake_port}", posts)
        persons.append((p, p.csrf()))
    workers = [spawn([BIN, "worker"], {**env, "FEDIALT_DATA_DIR": os.path.join(data_dir, f"w{i}")}) for i in range(2)]
    time.sleep(1.5)
    started = time.monotonic()
    for p, token in persons:
        p.start(token)
    while True:
        states = [p.status() for p, _ in persons]
        if all(s["state"] in ("completed", "failed", "cancelled") for s in states):
            break
        time.sleep(0.1)
    wall = time.monotonic() - started
    assert all(s["state"] == "completed" for s in states), states
    made = sum(s["drafts_made"] for s in states)
    stats = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{fake_port}/stats").read())
    rows = subprocess.run(["psql", f"{PG_BASE}/fedialt_bench_runs", "-tAc",
                           "SELECT count(*), count(DISTINCT (platform_id, media_id)) FROM caption_drafts"],
                          capture_output=True, text=True, check=True).stdout.strip()
    for w in workers:
        w.terminate()
    total_model = stats["model_calls"] * MODEL_DELAY_MS / 1000
    ideal = total_model / (2 * 2)
    return {"people": people, "posts": posts, "drafts": made, "model_calls": stats["model_calls"],
            "draft_rows": rows, "wall": wall, "ideal": ideal}


def main():
    if not os.path.exists(BIN):
        raise SystemExit("build first: cargo build --release --locked")
    work = tempfile.mkdtemp(prefix="fedialt-bench-runs-")
    lines = ["| database | posts | images | app CPU per image (ms) | peak RSS (MB) | wall (s) |", "|---|---|---|---|---|---|"]
    try:
        for db in ("sqlite", "postgres"):
            for posts in (50, 500):
                images, cpu, peak, wall = one_run(db, posts, work)
                lines.append(f"| {db} | {posts} | {images} | {cpu:.2f} | {peak:.1f} | {wall:.1f} |")
        m = many_runs(work)
        lines += ["", "| runs × posts | drafts made | model calls | draft rows (all, distinct images) | wall (s) | model time ÷ concurrency (s) | wall ÷ ideal |",
                  "|---|---|---|---|---|---|---|",
                  f"| {m['people']} × {m['posts']} | {m['drafts']} | {m['model_calls']} | {m['draft_rows'].replace('|', ', ')} | "
                  f"{m['wall']:.1f} | {m['ideal']:.1f} | {m['wall'] / m['ideal']:.2f} |"]
    finally:
        for p in PROCS:
            if p.poll() is None:
                p.terminate()
        for p in PROCS:
            try:
                p.wait(timeout=10)
            except Exception:
                p.kill()
    lines += ["", f"Machine: {os.cpu_count()} cores. Command: python3 bench/runs.py (MODEL_DELAY_MS={MODEL_DELAY_MS} for the 20 runs)."]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
