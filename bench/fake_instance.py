#!/usr/bin/env python3
"""A minimal fake Mastodon instance for the benchmark: enough of the client API to connect an
account (instance info and verify_credentials). The benchmark never calls it on the measured path."""
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOKEN = sys.argv[2] if len(sys.argv) > 2 else "bench-token"


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def send_json(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/api/v1/instance":
            self.send_json(200, {"uri": "bench.local", "title": "Bench", "version": "4.3.2"})
        elif self.path == "/api/v2/instance":
            self.send_json(200, {"domain": "bench.local", "configuration": {"media_attachments": {"description_limit": 1500}}})
        elif self.path == "/api/v1/accounts/verify_credentials":
            if self.headers.get("Authorization") == f"Bearer {TOKEN}":
                self.send_json(200, {"id": "1", "username": "bench", "acct": "bench", "display_name": "Bench"})
            else:
                self.send_json(401, {"error": "The access token is invalid"})
        else:
            self.send_json(404, {"error": "Record not found"})


ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
