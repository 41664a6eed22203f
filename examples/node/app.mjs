// A Node app that calls a VBC API with the access token vbctoken keeps in Secrets Manager.
//
// The reader below follows the rule of vbctoken's Go Source (README "Apps"): cache the
// token until shortly after the keeper's planned refresh ("refresh_at" in the access
// secret), at most an hour, never past expires_at minus 5 minutes; on a 401 re-read the
// secret and retry once with the new token. It never refreshes anything: only the keeper
// holds the refresh token.
//
// Environment: VBC_ACCESS_SECRET_ID (the access secret's name or ARN), VBC_API_URL (the API
// to call), and the usual AWS settings (region, credentials, AWS_ENDPOINT_URL_SECRETS_MANAGER).
//
// Run by vbctoken's tests (examples/examples_test.go), which drive it over stdin, one line
// per command and one line of answer each:
//   call        GET VBC_API_URL once; prints "<status> <sub>"
//   advance N   move the reader's clock N seconds forward; prints "ok" (the reader's clock
//               is a fake one for the tests: it stands still between advances)
import { createInterface } from "node:readline";
import { pathToFileURL } from "node:url";

// --- readme:begin ---
import { GetSecretValueCommand, SecretsManagerClient } from "@aws-sdk/client-secrets-manager";

const EARLY = 300_000; // stop using a token 5 minutes before its expires_at
const GRACE = 60_000; // re-read 1 minute after the keeper's refresh_at, then every minute until it changed
const MAX_AGE = 3_600_000; // re-read at least every hour
const MIN_REREAD = 1_000; // re-read a token the API keeps rejecting at most once a second

export class NoValidToken extends Error {}

// VBCToken is the VBC access token from the access secret the vbctoken keeper writes.
export class VBCToken {
  #sm;
  #secretId;
  #clock;
  #token = null;
  #until = 0;
  #readAt = 0;
  #dead = false;
  #reading = null; // the read under way, shared by concurrent callers

  constructor(secretId, { client = new SecretsManagerClient({}), clock = Date.now } = {}) {
    this.#sm = client;
    this.#secretId = secretId;
    this.#clock = clock;
  }

  // token is the token to send; it reads the secret only when the cached read is over.
  async token() {
    if (this.#token === null || this.#clock() >= this.#until) await this.#read();
    return this.#token;
  }

  // rejected is called on a 401 sent with token: it returns the token to retry with, or null.
  async rejected(token) {
    if (token === this.#token && (!this.#dead || this.#clock() - this.#readAt >= MIN_REREAD)) {
      await this.#read();
      this.#dead = this.#token === token;
    }
    return this.#token !== token ? this.#token : null;
  }

  #read() {
    this.#reading ??= this.#load().finally(() => { this.#reading = null; });
    return this.#reading;
  }

  async #load() {
    const out = await this.#sm.send(new GetSecretValueCommand({ SecretId: this.#secretId, VersionStage: "AWSCURRENT" }));
    const secret = JSON.parse(out.SecretString);
    const now = this.#clock();
    const token = secret.access_token;
    const expires = secret.expires_at ? Date.parse(secret.expires_at) : NaN;
    if (!token || !(now < expires)) {
      throw new NoValidToken("no valid access token in the secret (not connected, or the keeper is behind)");
    }
    let until = now + MAX_AGE;
    if (secret.refresh_at) until = Math.min(until, Math.max(Date.parse(secret.refresh_at) + GRACE, now + GRACE));
    until = Math.min(until, expires - EARLY);
    if (until <= now) until = Math.min(expires, now + MIN_REREAD); // the keeper is late: look again soon
    if (token !== this.#token) this.#dead = false;
    [this.#token, this.#until, this.#readAt] = [token, until, now];
  }
}

// get sends a GET with the token and, on a 401, once more with the token the keeper wrote
// since. (Retry only requests that may be sent twice; the API refused the first before acting.)
export async function get(reader, url) {
  const token = await reader.token();
  let res = await fetch(url, { headers: { Authorization: `Bearer ${token}` } });
  if (res.status === 401) {
    const retry = await reader.rejected(token);
    if (retry !== null) res = await fetch(url, { headers: { Authorization: `Bearer ${retry}` } });
  }
  return res;
}
// --- readme:end ---

async function main() {
  const start = Date.now(); // the test's fake clock, moved only by "advance"
  let offset = 0;
  const reader = new VBCToken(process.env.VBC_ACCESS_SECRET_ID, { clock: () => start + offset });
  const url = process.env.VBC_API_URL;
  for await (const line of createInterface({ input: process.stdin })) {
    const [cmd, arg] = line.trim().split(/\s+/);
    if (cmd === "advance") {
      offset += Number(arg) * 1000;
      console.log("ok");
    } else if (cmd === "call") {
      try {
        const res = await get(reader, url);
        const body = await res.text();
        console.log(res.status, res.status === 200 ? JSON.parse(body).sub : "-");
      } catch (err) {
        console.log("error", err.name); // never print a token: the names here carry none
      }
    } else {
      console.log("error unknown command");
    }
  }
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) await main();
