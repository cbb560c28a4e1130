#!/usr/bin/env python3
"""A fake Mastodon instance and a fake Ollama in one small server, for the benchmarks and for trying
fedialt by hand without a real instance or model.

    python3 bench/fake_instance.py PORT [TOKEN] [POSTS]

Mastodon side (http://127.0.0.1:PORT): instance info, verify_credentials for TOKEN (default
bench-token), the account's statuses (POSTS posts, default 50, newest first, one undescribed image
each; every 5th post also has a described image and a video), paged by max_id with Mastodon's Link
header, and the images themselves; EXTRA_IMAGE_POSTS=N gives the N oldest posts a second
undescribed image. Publishing as Mastodon does it: GET /api/v1/statuses/:id and its /source, PUT
/api/v1/statuses/:id (a JSON edit; without media_ids the images are dropped, as on Mastodon).
RATE_LIMIT=N (with RATE_WINDOW_S, default 300) allows N API calls per window, with Mastodon's
X-RateLimit headers, and answers 429 past it. Ollama side (CAPTION_BASE_URL=http://127.0.0.1:PORT):
POST /api/chat answers at once (MODEL_DELAY_MS=… to make it slow). GET /stats gives the counts.

Watching: the streaming API (GET /api/v1/streaming/user, server-sent events with a ":thump"
heartbeat every HEARTBEAT_S, default 15, as Mastodon sends) on the same port.
STREAM_ACCOUNTS=N adds N more accounts: tokens bench-token-1 … bench-token-N, account ids 1001 …
(their timelines start empty). To make a new post, `curl -X POST 'localhost:PORT/post'` (the
bench account) or `/post?account=1001`; `/burst?n=200` makes 200 posts spread over the extra
accounts. Each new post has one undescribed image and goes out as an `update` event.
"""
import json
import os
import queue
import struct
import sys
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

PORT = int(sys.argv[1])
TOKEN = sys.argv[2] if len(sys.argv) > 2 else "bench-token"
POSTS = int(sys.argv[3]) if len(sys.argv) > 3 else 50
MODEL_DELAY = float(os.environ.get("MODEL_DELAY_MS", "0")) / 1000
EXTRA_IMAGE_POSTS = int(os.environ.get("EXTRA_IMAGE_POSTS", "0"))
RATE_LIMIT = int(os.environ.get("RATE_LIMIT", "0"))
RATE_WINDOW = float(os.environ.get("RATE_WINDOW_S", "300"))
STREAM_ACCOUNTS = int(os.environ.get("STREAM_ACCOUNTS", "0"))
HEARTBEAT = float(os.environ.get("HEARTBEAT_S", "15"))
BASE = f"http://127.0.0.1:{PORT}"


def png(width=320, height=240):
    """A real grey-gradient PNG (fedialt decodes what it sends the model)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    rows = b"".join(b"\x00" + bytes((x + y) % 256 for x in range(width)) for y in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


IMAGE = png()
LOCK = threading.Lock()
STATS = {"model_calls": 0, "statuses_calls": 0, "image_calls": 0, "api_calls": 0, "rate_limited": 0,
         "edits": 0, "images_dropped": 0, "post_calls": {}, "new_posts": 0, "streams_opened": 0}
WINDOW = {"start": 0.0, "used": 0}


def post(i):
    pid = 100000 + i
    media = [{"id": f"m{pid}", "type": "image", "url": f"{BASE}/media/m{pid}.png",
              "preview_url": f"{BASE}/media/m{pid}_small.png", "description": None}]
    if i <= EXTRA_IMAGE_POSTS:
        media.append({"id": f"n{pid}", "type": "image", "url": f"{BASE}/media/n{pid}.png",
                      "preview_url": f"{BASE}/media/n{pid}_small.png", "description": None})
    if i % 5 == 0:
        media.append({"id": f"d{pid}", "type": "image", "url": f"{BASE}/media/d{pid}.png",
                      "preview_url": f"{BASE}/media/d{pid}_small.png", "description": "Already described"})
        media.append({"id": f"v{pid}", "type": "video", "url": f"{BASE}/media/v{pid}.mp4",
                      "preview_url": f"{BASE}/media/v{pid}_small.png", "description": None})
    return {"id": str(pid), "url": f"{BASE}/@bench/{pid}", "uri": f"{BASE}/@bench/{pid}",
            "content": f"<p>Bench post {i}</p>", "language": "en", "reblog": None,
            "media_attachments": media}


# Newest first: the highest id first.
TIMELINE = [post(i) for i in range(POSTS, 0, -1)]
BY_ID = {p["id"]: p for p in TIMELINE}
for p in TIMELINE:
    p["account"] = {"id": "1"}
    p["created_at"] = "2026-11-01T10:00:00.000Z"
# token -> account id; account id -> its timeline (newest first) and its open streams' queues.
TOKENS = {TOKEN: "1"}
for n in range(1, STREAM_ACCOUNTS + 1):
    TOKENS[f"bench-token-{n}"] = str(1000 + n)
TIMELINES = {"1": TIMELINE}
STREAMS = {}
NEXT_ID = [900000]


def new_post(account):
    """A post made now by `account`: on its timeline and on its open streams."""
    with LOCK:
        NEXT_ID[0] += 1
        pid = str(NEXT_ID[0])
        media = [{"id": f"w{pid}", "type": "image", "url": f"{BASE}/media/w{pid}.png",
                  "preview_url": f"{BASE}/media/w{pid}_small.png", "description": None}]
        p = {"id": pid, "url": f"{BASE}/@bench/{pid}", "uri": f"{BASE}/@bench/{pid}",
             "content": f"<p>New post {pid}</p>", "language": "en", "reblog": None,
             "account": {"id": account}, "media_attachments": media,
             "created_at": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())}
        TIMELINES.setdefault(account, []).insert(0, p)
        BY_ID[pid] = p
        STATS["new_posts"] += 1
        event = f"event: update\ndata: {json.dumps(p)}\n\n".encode()
        for q in STREAMS.get(account, []):
            q.put(event)
    return pid


def rate_headers():
    """Counts an API call against the window: (allowed, headers)."""
    if not RATE_LIMIT:
        return True, []
    with LOCK:
        now = time.time()
        if now >= WINDOW["start"] + RATE_WINDOW:
            WINDOW["start"], WINDOW["used"] = now, 0
        reset = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(WINDOW["start"] + RATE_WINDOW + 1))
        if WINDOW["used"] >= RATE_LIMIT:
            STATS["rate_limited"] += 1
            return False, [("X-RateLimit-Limit", str(RATE_LIMIT)), ("X-RateLimit-Remaining", "0"),
                           ("X-RateLimit-Reset", reset),
                           ("Retry-After", str(int(WINDOW["start"] + RATE_WINDOW - now) + 1))]
        WINDOW["used"] += 1
        STATS["api_calls"] += 1
        return True, [("X-RateLimit-Limit", str(RATE_LIMIT)),
                      ("X-RateLimit-Remaining", str(RATE_LIMIT - WINDOW["used"])),
                      ("X-RateLimit-Reset", reset)]


def count_post_call(pid):
    with LOCK:
        STATS["post_calls"][pid] = STATS["post_calls"].get(pid, 0) + 1


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: without this, Nagle's algorithm and the client's
    # delayed ACK add 40 ms to every answer, and the fake, not fedialt, sets the pace.
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    def send_json(self, status, body, headers=()):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def authorized(self):
        return self.account() is not None

    def account(self):
        auth = self.headers.get("Authorization", "")
        return TOKENS.get(auth[len("Bearer "):]) if auth.startswith("Bearer ") else None

    def stream(self):
        """The user stream: events for this account, a heartbeat comment between them."""
        account = self.account()
        if account is None:
            return self.send_json(401, {"error": "Error: Invalid access token"})
        q = queue.Queue()
        with LOCK:
            STREAMS.setdefault(account, []).append(q)
            STATS["streams_opened"] += 1
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            self.chunk(b":)\n")
            while True:
                try:
                    data = q.get(timeout=HEARTBEAT)
                except queue.Empty:
                    data = b":thump\n"
                self.chunk(data)
        except (BrokenPipeError, ConnectionResetError, OSError):
            pass
        finally:
            with LOCK:
                STREAMS[account].remove(q)
        self.close_connection = True

    def chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def do_GET(self):
        url = urlparse(self.path)
        if url.path == "/api/v1/instance":
            self.send_json(200, {"uri": "bench.local", "title": "Bench", "version": "4.3.2"})
        elif url.path == "/api/v2/instance":
            self.send_json(200, {"domain": "bench.local", "configuration": {"urls": {"streaming": f"ws://127.0.0.1:{PORT}"},
                                                                         "media_attachments": {"description_limit": 1500}}})
        elif url.path == "/api/v1/streaming/user":
            self.stream()
        elif url.path == "/api/v1/accounts/verify_credentials":
            account = self.account()
            if account is not None:
                name = "bench" if account == "1" else f"bench{account}"
                self.send_json(200, {"id": account, "username": name, "acct": name, "display_name": name})
            else:
                self.send_json(401, {"error": "The access token is invalid"})
        elif url.path.startswith("/api/v1/statuses/"):
            if not self.authorized():
                return self.send_json(401, {"error": "The access token is invalid"})
            parts = url.path.split("/")
            pid = parts[4]
            allowed, headers = rate_headers()
            if not allowed:
                return self.send_json(429, {"error": "Too many requests"}, headers)
            count_post_call(pid)
            found = BY_ID.get(pid)
            if found is None:
                return self.send_json(404, {"error": "Record not found"}, headers)
            if len(parts) > 5 and parts[5] == "source":
                return self.send_json(200, {"id": pid, "text": found["content"][3:-4], "spoiler_text": ""}, headers)
            with LOCK:
                self.send_json(200, found, headers)
        elif url.path.startswith("/api/v1/accounts/") and url.path.endswith("/statuses"):
            account = self.account()
            if account is None or url.path.split("/")[4] != account:
                return self.send_json(401, {"error": "The access token is invalid"})
            allowed, headers = rate_headers()
            if not allowed:
                return self.send_json(429, {"error": "Too many requests"}, headers)
            q = parse_qs(url.query)
            limit = min(int(q.get("limit", ["20"])[0]), 40)
            max_id = int(q["max_id"][0]) if "max_id" in q else None
            since_id = int(q["since_id"][0]) if "since_id" in q else None
            with LOCK:
                page = [p for p in TIMELINES.get(account, []) if (max_id is None or int(p["id"]) < max_id)
                        and (since_id is None or int(p["id"]) > since_id)][:limit]
            with LOCK:
                STATS["statuses_calls"] += 1
            if page:
                path = url.path
                headers.append(("Link", f'<{BASE}{path}?limit={limit}&max_id={page[-1]["id"]}'
                                        f'&only_media=true&exclude_reblogs=true>; rel="next", '
                                        f'<{BASE}{path}?limit={limit}&min_id={page[0]["id"]}>; rel="prev"'))
            self.send_json(200, page, headers)
        elif url.path.startswith("/media/"):
            with LOCK:
                STATS["image_calls"] += 1
            body = IMAGE
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif url.path == "/stats":
            with LOCK:
                calls = STATS["post_calls"].values()
                self.send_json(200, {**STATS, "posts_called": len(calls), "max_calls_per_post": max(calls, default=0),
                                     "streams_open": sum(len(v) for v in STREAMS.values()),
                                     "described": sum(1 for p in TIMELINE for m in p["media_attachments"]
                                                      if m["description"] and m["description"] != "Already described")})
        else:
            self.send_json(404, {"error": "Record not found"})

    def do_PUT(self):
        url = urlparse(self.path)
        length = int(self.headers.get("Content-Length", "0"))
        body = json.loads(self.rfile.read(length) or b"{}")
        if not url.path.startswith("/api/v1/statuses/"):
            return self.send_json(404, {"error": "Record not found"})
        if not self.authorized():
            return self.send_json(401, {"error": "The access token is invalid"})
        pid = url.path.split("/")[4]
        allowed, headers = rate_headers()
        if not allowed:
            return self.send_json(429, {"error": "Too many requests"}, headers)
        count_post_call(pid)
        found = BY_ID.get(pid)
        if found is None:
            return self.send_json(404, {"error": "Record not found"}, headers)
        with LOCK:
            ids = body.get("media_ids") or []
            kept = [m for m in found["media_attachments"] if m["id"] in ids]
            STATS["images_dropped"] += len(found["media_attachments"]) - len(kept)
            for attribute in body.get("media_attributes") or []:
                for m in kept:
                    if m["id"] == attribute.get("id") and "description" in attribute:
                        if len(attribute["description"]) > 1500:
                            return self.send_json(422, {"error": "Validation failed: Description is too long"}, headers)
                        m["description"] = attribute["description"]
            found["media_attachments"] = kept
            STATS["edits"] += 1
            self.send_json(200, found, headers)

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        url = urlparse(self.path)
        if url.path == "/post":
            account = parse_qs(url.query).get("account", ["1"])[0]
            return self.send_json(200, {"id": new_post(account)})
        if url.path == "/burst":
            n = int(parse_qs(url.query).get("n", ["200"])[0])
            accounts = [str(1000 + i) for i in range(1, STREAM_ACCOUNTS + 1)] or ["1"]
            ids = [new_post(accounts[i % len(accounts)]) for i in range(n)]
            return self.send_json(200, {"ids": ids})
        if self.path == "/api/chat":
            request = json.loads(body or b"{}")
            with LOCK:
                STATS["model_calls"] += 1
            if MODEL_DELAY:
                time.sleep(MODEL_DELAY)
            self.send_json(200, {"model": request.get("model"), "created_at": "2026-11-29T10:00:00Z",
                                 "message": {"role": "assistant", "content": "A bench photo of a quiet street at dusk."},
                                 "done": True})
        else:
            self.send_json(404, {"error": "not found"})


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 4096


Server(("127.0.0.1", PORT), Handler).serve_forever()
