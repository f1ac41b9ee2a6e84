// A web framework's server side (what Next.js middleware, route handlers and server
// rendering do for Convex Auth), played with plain `node:http`, in front of a Conflux
// deployment with the built-in sign-in.
//
//   node tests/npm/middleware_server.mjs <naive|middleware>
//
// Why it exists: right after the OAuth redirect the browser lands on the APP's server with
// `?code=`. What that server does with the code decides whether its first answer says
// "signed in". Two modes:
//
// - `naive`: the single-page-app setup. The server leaves `?code=` to the browser's
//   JavaScript, which keeps the tokens in localStorage; a server-side "is authenticated"
//   check only sees cookies, so it says false on the first request, and on every later one.
// - `middleware`: the pattern Conflux recommends for frameworks with middleware. A GET with
//   `?code=` (and `Accept: text/html`) is exchanged by the server itself through
//   `POST <site>/api/auth/token {code, verifier}`; the tokens go into httpOnly cookies and
//   the browser is redirected to the same URL without `code`. The next request carries the
//   cookie, and `GET <site>/api/auth/session` (Bearer: the cookie's JWT) says authenticated.
//
// Routes (both modes):
//   POST /api/auth          the sign-in proxy: {action:"auth:signIn", args:{provider, params}}
//                           -> calls auth:signIn on the client API, keeps the verifier in an
//                           httpOnly cookie, answers {redirect}
//   POST /api/auth/refresh  refresh from the refresh-token cookie -> {token} (new cookies)
//   POST /api/signout       a route handler signing the user out on the server:
//                           POST <site>/api/auth/signout (Bearer: the cookie's JWT), then the
//                           cookies are cleared
//   GET  <any other path>   a page: {path, authenticated, userId, sessionId, token} where
//                           `token` is what a server-rendered page hands to its client
//                           component (Convex Auth's `serverState`)
//
// Protocol with the test (see lib/harness.mjs):
//   {"event":"listening","url":"http://127.0.0.1:<port>"}
//   <- stdin {"client": "<client API origin>", "site": "<site origin>"}
//   {"event":"configured"}
//   then one event per request and per call to the deployment, each with `t`, the wall
//   clock in milliseconds since the Unix epoch (fractional):
//   {"event":"request", t, method, path, hadCode, cookies:[names]}
//   {"event":"exchange", t, ok, status, ms}          the middleware's code exchange
//   {"event":"check", t, path, hadCookie, authenticated, reason}
//   {"event":"refresh", t, ok, status}
//   {"event":"signout", t, signedOut, status}
//   <- stdin closed: the server stops.

import { createServer } from "node:http";
import { emit, main, nextCommand } from "./lib/harness.mjs";

const MODES = ["naive", "middleware"];
const mode = process.argv[2];

/** Wall clock, milliseconds since the Unix epoch, with sub-millisecond precision. */
const now = () => performance.timeOrigin + performance.now();

/** Where the deployment is, once the test said so. */
let backend = null;

// ---------------------------------------------------------------------------------------
// Cookies, named and set as Convex Auth's Next.js middleware does
// ---------------------------------------------------------------------------------------

const JWT = "__convexAuthJWT";
const REFRESH = "__convexAuthRefreshToken";
const VERIFIER = "__convexAuthOAuthVerifier";

/** `localhost:<port>` and `127.0.0.1:<port>` get plain names and no `Secure`. */
function isLocalhost(req) {
  return /^(localhost|127\.0\.0\.1):\d+$/.test(req.headers.host ?? "");
}

function cookieName(req, name) {
  return isLocalhost(req) ? name : `__Host-${name}`;
}

function parseCookies(req) {
  const cookies = {};
  for (const part of (req.headers.cookie ?? "").split(";")) {
    const index = part.indexOf("=");
    if (index > 0) {
      cookies[part.slice(0, index).trim()] = decodeURIComponent(part.slice(index + 1).trim());
    }
  }
  return cookies;
}

function cookieOf(req, name) {
  return parseCookies(req)[cookieName(req, name)];
}

function setCookie(req, name, value) {
  const secure = isLocalhost(req) ? "" : "; Secure";
  return `${cookieName(req, name)}=${encodeURIComponent(value)}; Path=/; HttpOnly; SameSite=Lax${secure}`;
}

function clearCookie(req, name) {
  const secure = isLocalhost(req) ? "" : "; Secure";
  return `${cookieName(req, name)}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT${secure}`;
}

function clearAll(req) {
  return [JWT, REFRESH, VERIFIER].map((name) => clearCookie(req, name));
}

// ---------------------------------------------------------------------------------------
// Calls to the deployment
// ---------------------------------------------------------------------------------------

async function postJson(url, body, headers = {}) {
  const response = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify(body),
  });
  const text = await response.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {
    json = { unparsed: text };
  }
  return { status: response.status, json };
}

/** `GET <site>/api/auth/session` with the JWT as Bearer: the server-side check. */
async function sessionOf(token) {
  const response = await fetch(`${backend.site}/api/auth/session`, {
    headers: { authorization: `Bearer ${token}` },
  });
  return response.json();
}

/** Is the request authenticated? No cookie: false (nothing to check). */
async function check(req, path) {
  const token = cookieOf(req, JWT);
  if (token === undefined) {
    emit("check", { t: now(), path, hadCookie: false, authenticated: false, reason: "no cookie" });
    return { authenticated: false, token: null };
  }
  const session = await sessionOf(token);
  emit("check", {
    t: now(),
    path,
    hadCookie: true,
    authenticated: session.authenticated === true,
    reason: session.reason ?? null,
  });
  return session.authenticated === true
    ? { authenticated: true, token, userId: session.userId, sessionId: session.sessionId }
    : { authenticated: false, token: null };
}

// ---------------------------------------------------------------------------------------
// Request handling
// ---------------------------------------------------------------------------------------

function send(res, status, body, headers = {}) {
  res.writeHead(status, { "content-type": "application/json", "cache-control": "no-store", ...headers });
  res.end(body === undefined ? "" : JSON.stringify(body));
}

async function readJson(req) {
  const chunks = [];
  for await (const chunk of req) {
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString("utf8");
  return text === "" ? {} : JSON.parse(text);
}

/** The middleware's code exchange: exchange, set or clear the cookies, redirect without `code`. */
async function exchangeCode(req, res, url) {
  const code = url.searchParams.get("code");
  const verifier = cookieOf(req, VERIFIER);
  const started = now();
  const { status, json } = await postJson(`${backend.site}/api/auth/token`, { code, verifier });
  const ok = status === 200 && typeof json?.token === "string";
  emit("exchange", { t: now(), ok, status, ms: now() - started, error: ok ? null : json });
  url.searchParams.delete("code");
  const cookies = ok
    ? [setCookie(req, JWT, json.token), setCookie(req, REFRESH, json.refreshToken), clearCookie(req, VERIFIER)]
    : clearAll(req);
  // 307, as `NextResponse.redirect` answers by default.
  send(res, 307, undefined, { location: url.pathname + url.search, "set-cookie": cookies });
}

async function signInProxy(req, res) {
  const { action, args } = await readJson(req);
  if (action !== "auth:signIn") {
    return send(res, 400, { error: "Invalid action" });
  }
  const { status, json } = await postJson(`${backend.client}/api/action`, {
    path: "auth:signIn",
    args: [args ?? {}],
    format: "convex_encoded_json",
  });
  if (status !== 200 || json?.status !== "success") {
    return send(res, 400, { error: json?.errorMessage ?? `auth:signIn failed (${status})` }, {
      "set-cookie": clearAll(req),
    });
  }
  const { redirect, verifier } = json.value;
  send(res, 200, { redirect }, { "set-cookie": [setCookie(req, VERIFIER, verifier)] });
}

async function refresh(req, res) {
  const refreshToken = cookieOf(req, REFRESH);
  if (refreshToken === undefined) {
    emit("refresh", { t: now(), ok: false, status: null });
    return send(res, 200, { token: null }, { "set-cookie": clearAll(req) });
  }
  const { status, json } = await postJson(`${backend.site}/api/auth/token`, { refreshToken });
  const ok = status === 200 && typeof json?.token === "string";
  emit("refresh", { t: now(), ok, status });
  if (!ok) {
    return send(res, 200, { token: null }, { "set-cookie": clearAll(req) });
  }
  send(res, 200, { token: json.token }, {
    "set-cookie": [setCookie(req, JWT, json.token), setCookie(req, REFRESH, json.refreshToken)],
  });
}

/** A route handler that signs the user out on the server, then clears the cookies. */
async function signOut(req, res) {
  const token = cookieOf(req, JWT);
  const refreshToken = cookieOf(req, REFRESH);
  let outcome = { status: null, json: { signedOut: false } };
  if (token !== undefined) {
    outcome = await postJson(`${backend.site}/api/auth/signout`, {}, { authorization: `Bearer ${token}` });
  } else if (refreshToken !== undefined) {
    outcome = await postJson(`${backend.site}/api/auth/signout`, { refreshToken });
  }
  const signedOut = outcome.json?.signedOut === true;
  emit("signout", { t: now(), signedOut, status: outcome.status });
  send(res, 200, { signedOut }, { "set-cookie": clearAll(req) });
}

async function page(req, res, url) {
  const state = await check(req, url.pathname);
  send(res, 200, {
    path: url.pathname,
    authenticated: state.authenticated,
    userId: state.userId ?? null,
    sessionId: state.sessionId ?? null,
    token: state.token,
  });
}

async function handle(req, res) {
  const url = new URL(req.url, "http://framework.invalid");
  emit("request", {
    t: now(),
    method: req.method,
    path: url.pathname,
    hadCode: url.searchParams.has("code"),
    cookies: Object.keys(parseCookies(req)).sort(),
  });
  if (backend === null) {
    return send(res, 503, { error: "not configured yet" });
  }
  if (req.method === "POST" && url.pathname === "/api/auth") {
    return signInProxy(req, res);
  }
  if (req.method === "POST" && url.pathname === "/api/auth/refresh") {
    return refresh(req, res);
  }
  if (req.method === "POST" && url.pathname === "/api/signout") {
    return signOut(req, res);
  }
  if (req.method !== "GET") {
    return send(res, 405, { error: `${req.method} is not served here` });
  }
  const wantsHtml = (req.headers.accept ?? "").includes("text/html");
  if (mode === "middleware" && url.searchParams.has("code") && wantsHtml) {
    return exchangeCode(req, res, url);
  }
  return page(req, res, url);
}

main(
  async () => {
    if (!MODES.includes(mode)) {
      throw new Error(`usage: node middleware_server.mjs <${MODES.join("|")}>`);
    }
    const server = createServer((req, res) => {
      handle(req, res).catch((error) => {
        process.stderr.write(`request failed: ${error?.stack ?? error}\n`);
        if (!res.headersSent) {
          send(res, 500, { error: String(error?.message ?? error) });
        } else {
          res.end();
        }
      });
    });
    await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
    emit("listening", { url: `http://127.0.0.1:${server.address().port}` });
    const config = await nextCommand();
    if (typeof config?.client !== "string" || typeof config?.site !== "string") {
      throw new Error(`expected {"client": ..., "site": ...} on stdin, got ${JSON.stringify(config)}`);
    }
    backend = { client: config.client, site: config.site };
    emit("configured");
    // Serve until the test closes stdin.
    while ((await nextCommand()) !== null) {}
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  },
  { timeoutMs: 120_000 },
);
