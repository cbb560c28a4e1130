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
"""
import json
import os
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
         "edits": 0, "images_dropped": 0, "post_calls": {}}
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
        return self.headers.get("Authorization") == f"Bearer {TOKEN}"

    def do_GET(self):
        url = urlparse(self.path)
        if url.path == "/api/v1/instance":
            self.send_json(200, {"uri": "bench.local", "title": "Bench", "version": "4.3.2"})
        elif url.path == "/api/v2/instance":
            self.send_json(200, {"domain": "bench.local", "configuration": {"media_attachments": {"description_limit": 1500}}})
        elif url.path == "/api/v1/accounts/verify_credentials":
            if self.authorized():
                self.send_json(200, {"id": "1", "username": "bench", "acct": "bench", "display_name": "Bench"})
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
        elif url.path == "/api/v1/accounts/1/statuses":
            if not self.authorized():
                return self.send_json(401, {"error": "The access token is invalid"})
            allowed, headers = rate_headers()
            if not allowed:
                return self.send_json(429, {"error": "Too many requests"}, headers)
            q = parse_qs(url.query)
            limit = min(int(q.get("limit", ["20"])[0]), 40)
            max_id = int(q["max_id"][0]) if "max_id" in q else None
            page = [p for p in TIMELINE if max_id is None or int(p["id"]) < max_id][:limit]
            with LOCK:
                STATS["statuses_calls"] += 1
            if page:
                headers.append(("Link", f'<{BASE}/api/v1/accounts/1/statuses?limit={limit}&max_id={page[-1]["id"]}'
                                        f'&only_media=true&exclude_reblogs=true>; rel="next", '
                                        f'<{BASE}/api/v1/accounts/1/statuses?limit={limit}&min_id={page[0]["id"]}>; rel="prev"'))
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


ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
