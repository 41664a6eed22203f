"""A Python app that calls a VBC API with the access token vbctoken keeps in Secrets Manager.

The reader below follows the rule of vbctoken's Go Source (README "Apps"): cache the token
until shortly after the keeper's planned refresh ("refresh_at" in the access secret), at
most an hour, never past expires_at minus 5 minutes; on a 401 re-read the secret and retry
once with the new token. It never refreshes anything: only the keeper holds the refresh
token.

Environment: VBC_ACCESS_SECRET_ID (the access secret's name or ARN), VBC_API_URL (the API
to call), and the usual AWS settings (region, credentials, AWS_ENDPOINT_URL_SECRETS_MANAGER).

Run by vbctoken's tests (examples/examples_test.go), which drive it over stdin, one line per
command and one line of answer each:
    call        GET VBC_API_URL once; prints "<status> <sub>"
    advance N   move the reader's clock N seconds forward; prints "ok" (the reader's clock
                is a fake one for the tests: it stands still between advances)
"""

import os
import sys

# --- readme:begin ---
import json
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime

import boto3

EARLY = 300  # stop using a token 5 minutes before its expires_at
GRACE = 60  # re-read 1 minute after the keeper's refresh_at, then every minute until it changed
MAX_AGE = 3600  # re-read at least every hour
MIN_REREAD = 1  # re-read a token the API keeps rejecting at most once a second


class NoValidToken(Exception):
    """The access secret holds no token that is valid now (not connected, or expired)."""


def _time(value):
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() if value else None


class VBCToken:
    """The VBC access token from the access secret the vbctoken keeper writes."""

    def __init__(self, secret_id, client=None, clock=time.time):
        self._sm = client or boto3.client("secretsmanager")
        self._secret_id = secret_id
        self._clock = clock
        self._lock = threading.Lock()
        self._token, self._until, self._read_at, self._dead = None, 0.0, 0.0, False

    def token(self):
        """The token to send; reads the secret only when the cached read is over."""
        with self._lock:
            now = self._clock()
            if self._token is None or now >= self._until:
                self._read(now)
            return self._token

    def rejected(self, token):
        """Call on a 401 sent with token: returns the token to retry with, or None."""
        with self._lock:
            now = self._clock()
            if token == self._token and (not self._dead or now - self._read_at >= MIN_REREAD):
                self._read(now)
                self._dead = self._token == token
            return self._token if self._token != token else None

    def _read(self, now):
        out = self._sm.get_secret_value(SecretId=self._secret_id, VersionStage="AWSCURRENT")
        secret = json.loads(out["SecretString"])
        token, expires = secret.get("access_token"), _time(secret.get("expires_at"))
        if not token or expires is None or now >= expires:
            raise NoValidToken("no valid access token in the secret (not connected, or the keeper is behind)")
        until = now + MAX_AGE
        refresh_at = _time(secret.get("refresh_at"))
        if refresh_at is not None:
            until = min(until, max(refresh_at + GRACE, now + GRACE))
        until = min(until, expires - EARLY)
        if until <= now:  # the keeper is late: use the token while valid, look again soon
            until = min(expires, now + MIN_REREAD)
        if token != self._token:
            self._dead = False
        self._token, self._until, self._read_at = token, until, now


def get(reader, url):
    """GET url with the token; on a 401, once more with the token the keeper wrote since.
    (Retry only requests that may be sent twice; the API refused the first before acting.)"""
    token = reader.token()
    status, body = _get(url, token)
    if status == 401:
        retry = reader.rejected(token)
        if retry is not None:
            status, body = _get(url, retry)
    return status, body


def _get(url, token):
    req = urllib.request.Request(url, headers={"Authorization": "Bearer " + token})
    try:
        with urllib.request.urlopen(req, timeout=30) as res:
            return res.status, res.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()
# --- readme:end ---


def main():
    start, offset = time.time(), 0.0  # the test's fake clock, moved only by "advance"
    reader = VBCToken(os.environ["VBC_ACCESS_SECRET_ID"], clock=lambda: start + offset)
    url = os.environ["VBC_API_URL"]
    for line in sys.stdin:
        cmd = line.split()
        if cmd[:1] == ["advance"]:
            offset += float(cmd[1])
            print("ok", flush=True)
        elif cmd[:1] == ["call"]:
            try:
                status, body = get(reader, url)
                sub = json.loads(body).get("sub", "-") if status == 200 else "-"
                print(status, sub, flush=True)
            except Exception as err:  # never print a token: messages here carry none
                print("error", type(err).__name__, flush=True)
        else:
            print("error unknown command", flush=True)


if __name__ == "__main__":
    main()
