"""A webhook receiver for the end-to-end tests, verifying with the official Standard Webhooks
library from PyPI (`standardwebhooks`), not with our code.

POST /secrets {"name": "whsec_…", …} sets the secrets to try. Every other POST is a webhook:
the path says how to answer (`/ok`: 200; `/fail/N`: 500 for the first N requests of each
webhook-id, then 200; `/gone`: 410). Each request is printed as one JSON line on stdout:
which secrets verify it, whether a tampered body and a forged timestamp are rejected, and
whether the signature matches the library's own signing when the timestamp is ignored."""

import json
import sys
import threading
from collections import Counter
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

SECRETS = {}
SEEN = Counter()
# Requests are handled on threads: one line is written at a time, whole.
OUTPUT = threading.Lock()


def verifies(secret, body, headers):
    try:
        Webhook(secret).verify(body, headers)
        return None
    except WebhookVerificationError as e:
        return str(e) or "verification failed"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status, text):
        data = text.encode()
        self.send_response(status)
        self.send_header("content-type", "text/plain")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0"))).decode()
        if self.path == "/secrets":
            SECRETS.clear()
            SECRETS.update(json.loads(body))
            return self.answer(200, "ok")
        headers = {k.lower(): v for k, v in self.headers.items()}
        msg_id = headers.get("webhook-id", "")
        timestamp = headers.get("webhook-timestamp", "0")
        signatures = headers.get("webhook-signature", "").split(" ")
        verified, errors, signed = [], {}, []
        tampered_rejected = forged_timestamp_rejected = True
        for name, secret in SECRETS.items():
            error = verifies(secret, body, headers)
            if error is None:
                verified.append(name)
            else:
                errors[name] = error
            # The signature as the library computes it for the timestamp sent, whatever the clock.
            wh = Webhook(secret)
            expected = wh.sign(msg_id, datetime.fromtimestamp(int(timestamp), tz=timezone.utc), body)
            if expected in signatures:
                signed.append(name)
                flipped = body[:-2] + ("x" if body[-2] != "x" else "y") + body[-1:]
                if verifies(secret, flipped, headers) is None:
                    tampered_rejected = False
                forged = dict(headers, **{"webhook-timestamp": str(int(timestamp) - 600)})
                if verifies(secret, body, forged) is None:
                    forged_timestamp_rejected = False
        with OUTPUT:
            SEEN[(self.path, msg_id)] += 1
            seen = SEEN[(self.path, msg_id)]
        status = 200
        if self.path.startswith("/fail/"):
            if seen <= int(self.path.split("/")[2]):
                status = 500
        elif self.path == "/gone":
            status = 410
        record = {
            "path": self.path,
            "id": msg_id,
            "timestamp": int(timestamp),
            "verified_with": verified,
            "errors": errors,
            "signature_matches": signed,
            "tampered_rejected": tampered_rejected,
            "forged_timestamp_rejected": forged_timestamp_rejected,
            "status": status,
            "body": json.loads(body) if body else None,
        }
        with OUTPUT:
            sys.stdout.write(json.dumps(record) + "\n")
            sys.stdout.flush()
        self.answer(status, "received" if status == 200 else "receiver failure")


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print("READY %d" % server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
