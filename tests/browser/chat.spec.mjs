#!/usr/bin/env node
// Real-browser test of the chat example, the story a new user sees:
//
//   1. two people open the app and sign in with Google (in tests the example's Google provider
//      points at a local OpenID Connect provider that signs a test user in without any page);
//   2. a message sent by one appears live for the other;
//   3. a server-side call (`POST <site>/api/auth/signout` with the second person's token) signs
//      the second page out live, without a reload, and it stays signed out after one;
//   4. the first person is still signed in and signs out with the button;
//   5. at no moment did a page show the signed-in view and a sign-in button together.
//
// It drives Debian's headless `chromium` through playwright-core (no browser download).
//
//   node tests/browser/chat.spec.mjs --site http://127.0.0.1:SITE --api http://127.0.0.1:API \
//        --artifacts DIR [--expect-name NAME] [--chromium /usr/bin/chromium]
//
// Prints one JSON line per step (`{"step":"...","ok":true,"ms":...}`), keeps a screenshot of
// every step and each page's console in DIR, and exits 1 with a message naming the failed step.

import { randomUUID } from "node:crypto";
import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { parseArgs } from "node:util";
import { chromium } from "playwright-core";

const USAGE =
  "usage: node tests/browser/chat.spec.mjs --site http://127.0.0.1:SITE --api http://127.0.0.1:API " +
  "--artifacts DIR [--expect-name NAME] [--chromium /usr/bin/chromium]";

/** Flags for a quiet, reproducible headless Chromium that only talks to the pages it is sent to. */
const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/** How long a change may take to reach another page ("live"). */
const LIVE_MS = 5_000;
/** A whole sign-in round trip: app → provider → callback → app → token exchange → confirmation. */
const SIGN_IN_MS = 30_000;
/** First paint of the app, including fetching `/config.json`. */
const PAGE_READY_MS = 15_000;
/** Timeout of each direct HTTP call the test makes. */
const HTTP_MS = 5_000;
/** The whole run; a hung server must not hang CI. */
const RUN_MS = 180_000;

const CHANNEL = "general";
const SIGNED_IN = '[data-testid="signed-in-as"]';
const SIGNED_IN_READY = '[data-testid="signed-in-as"][data-state="ready"]';
const SIGN_IN_BUTTON = 'button[data-testid^="signin-"]';
const JWT_KEY_PREFIX = "__convexAuthJWT_";

/** A failure whose message is the whole explanation (no stack trace needed). */
class TestFailure extends Error {}

function fail(message) {
  throw new TestFailure(message);
}

function parseOptions() {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        site: { type: "string" },
        api: { type: "string" },
        artifacts: {
          type: "string",
          default: path.join("tests", "artifacts", "browser"),
        },
        "expect-name": { type: "string" },
        chromium: { type: "string", default: "/usr/bin/chromium" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
    }));
  } catch (error) {
    console.error(`${error.message}\n${USAGE}`);
    process.exit(2);
  }
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  for (const flag of ["site", "api"]) {
    const value = values[flag];
    if (value === undefined || !/^https?:\/\/[^/]+/.test(value)) {
      console.error(
        `--${flag} must be an http:// origin such as http://127.0.0.1:3211, got ${JSON.stringify(value)}\n${USAGE}`,
      );
      process.exit(2);
    }
    values[flag] = value.replace(/\/+$/, "");
  }
  return values;
}

/** The visible text of a page, shortened, to say where it got stuck. */
async function pageSummary(page) {
  try {
    const text = (await page.locator("body").innerText({ timeout: 1_000 }))
      .replace(/\s+/g, " ")
      .trim();
    return `url ${page.url()}, page text: ${JSON.stringify(text.slice(0, 300))}`;
  } catch {
    return `url ${page.url()}, page text unavailable`;
  }
}

/** Waits for `locator`, or fails with `explain()`'s message. */
async function waitOrFail(locator, timeout, explain, state = "visible") {
  try {
    await locator.waitFor({ state, timeout });
  } catch (error) {
    if (error?.name !== "TimeoutError") throw error;
    fail(await explain());
  }
}

async function httpJson(url, init, what) {
  let response;
  try {
    response = await fetch(url, {
      ...init,
      signal: AbortSignal.timeout(HTTP_MS),
    });
  } catch (error) {
    fail(
      `${what}: ${init?.method ?? "GET"} ${url} failed (${error.cause?.code ?? error.cause?.message ?? error.message}); is the example server running there?`,
    );
  }
  const text = await response.text();
  let body = null;
  try {
    body = JSON.parse(text);
  } catch {
    // Reported below with the raw text.
  }
  return { status: response.status, ok: response.ok, body, text };
}

/** Runs the Convex HTTP query API, the same one `ConvexHttpClient` uses. */
async function query(api, functionPath, args) {
  const res = await httpJson(
    `${api}/api/query`,
    {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ path: functionPath, args, format: "json" }),
    },
    `query ${functionPath}`,
  );
  if (!res.ok || res.body?.status !== "success") {
    fail(
      `query ${functionPath} at ${api}/api/query answered ${res.status}: ${res.text.slice(0, 300)}`,
    );
  }
  return res.body.value;
}

/** Where screenshots and console logs go, once known (named in the failure message). */
let artifactsDir = null;

async function main() {
  const options = parseOptions();
  const { site, api } = options;
  const artifacts = path.resolve(options.artifacts);
  await mkdir(artifacts, { recursive: true });
  artifactsDir = artifacts;

  const results = [];
  const violations = [];
  const consoleLines = new Map();
  const pages = {};
  let shot = 0;

  const screenshot = async (label, page) => {
    shot += 1;
    const file = path.join(
      artifacts,
      `${String(shot).padStart(2, "0")}-${label}.png`,
    );
    await page.screenshot({ path: file, fullPage: true, timeout: 5_000 });
    return file;
  };

  const checkInvariant = () => {
    if (violations.length > 0) {
      const first = violations[0];
      fail(
        `${first.context} showed "signed-in-as" and a sign-in button at the same time ` +
          `(${violations.length} time(s); first at ${first.url}: ${JSON.stringify(first.text)})`,
      );
    }
  };

  const step = async (name, run) => {
    const started = performance.now();
    try {
      const detail = (await run()) ?? {};
      checkInvariant();
      const line = {
        step: name,
        ok: true,
        ms: Math.round(performance.now() - started),
        ...detail,
      };
      results.push(line);
      console.log(JSON.stringify(line));
    } catch (error) {
      const message =
        error instanceof TestFailure
          ? error.message
          : (error?.stack ?? String(error));
      const line = {
        step: name,
        ok: false,
        ms: Math.round(performance.now() - started),
        error: message,
      };
      results.push(line);
      console.log(JSON.stringify(line));
      for (const [label, page] of Object.entries(pages)) {
        await screenshot(`failed-${name}-${label}`, page).catch(() => {});
      }
      throw new TestFailure(`step "${name}" failed: ${message}`);
    }
  };

  let browser;
  const watchdog = setTimeout(() => {
    console.error(
      `chat browser test: gave up after ${RUN_MS / 1000} s; the last step never finished`,
    );
    process.exit(1);
  }, RUN_MS);
  watchdog.unref();

  try {
    let config;
    await step("preflight", async () => {
      const res = await httpJson(
        `${site}/config.json`,
        {},
        "reading the app's config",
      );
      if (
        !res.ok ||
        res.body === null ||
        typeof res.body.convexUrl !== "string"
      ) {
        fail(
          `${site}/config.json answered ${res.status} ${JSON.stringify(res.text.slice(0, 200))}; the example server serves {"convexUrl": ..., "providers": [...]} there`,
        );
      }
      config = res.body;
      if (
        !Array.isArray(config.providers) ||
        !config.providers.includes("google")
      ) {
        fail(
          `${site}/config.json lists providers ${JSON.stringify(config.providers)}; the test needs "google" (set AUTH_GOOGLE_ID, AUTH_GOOGLE_SECRET and AUTH_GOOGLE_ISSUER)`,
        );
      }
      if (config.convexUrl.replace(/\/+$/, "") !== api) {
        console.error(
          `note: ${site}/config.json points the app at ${config.convexUrl}, not at --api ${api}`,
        );
      }
      const viewer = await query(api, "users:viewer", {});
      if (viewer !== null)
        fail(
          `users:viewer without a token returned ${JSON.stringify(viewer)}, expected null`,
        );
      return { convexUrl: config.convexUrl };
    });

    await step("launch-chromium", async () => {
      try {
        browser = await chromium.launch({
          executablePath: options.chromium,
          headless: true,
          args: CHROMIUM_ARGS,
          timeout: 30_000,
        });
      } catch (error) {
        fail(
          `could not start Chromium at ${options.chromium} (install Debian's package: apt-get install -y chromium): ${error.message.split("\n")[0]}`,
        );
      }
      return { version: browser.version() };
    });

    const openContext = async (label) => {
      const context = await browser.newContext({
        baseURL: site,
        viewport: { width: 1000, height: 760 },
      });
      // The watcher reports through a binding, so a conflict is recorded even if the page
      // navigates away right after it.
      await context.exposeBinding(
        "__confluxReportBothViews",
        ({ page }, text) => {
          violations.push({ context: label, url: page.url(), text });
        },
      );
      await context.addInitScript(
        ({ signedIn, signInButton }) => {
          let reported = false;
          window.__confluxViewChecks = 0;
          const check = () => {
            window.__confluxViewChecks += 1;
            const both =
              document.querySelector(signedIn) !== null &&
              document.querySelector(signInButton) !== null;
            if (both && !reported) {
              reported = true;
              window.__confluxReportBothViews(
                document.body.innerText.slice(0, 300),
              );
            }
            if (!both) reported = false;
          };
          // The observer sees every React commit; the interval is a second, independent poll.
          new MutationObserver(check).observe(document, {
            childList: true,
            subtree: true,
            attributes: true,
          });
          setInterval(check, 50);
        },
        { signedIn: SIGNED_IN, signInButton: SIGN_IN_BUTTON },
      );
      const page = await context.newPage();
      const lines = [];
      consoleLines.set(label, lines);
      page.on("console", (message) =>
        lines.push(
          `[${new Date().toISOString()}] ${message.type()}: ${message.text()}`,
        ),
      );
      page.on("pageerror", (error) =>
        lines.push(`[${new Date().toISOString()}] pageerror: ${error.message}`),
      );
      page.on("framenavigated", (frame) => {
        if (frame === page.mainFrame())
          lines.push(`[${new Date().toISOString()}] navigated: ${frame.url()}`);
      });
      pages[label] = page;
      return page;
    };

    const signIn = async (label) => {
      const page = await openContext(label);
      await page.goto("/", { waitUntil: "domcontentloaded" });
      const button = page.getByTestId("signin-google");
      await waitOrFail(
        button,
        PAGE_READY_MS,
        async () =>
          `the "Sign in with Google" button never appeared at ${site}/ (${await pageSummary(page)})`,
      );
      const label_ = (await button.innerText()).trim();
      if (label_ !== "Sign in with Google")
        fail(
          `the sign-in button reads ${JSON.stringify(label_)}, expected "Sign in with Google"`,
        );
      await screenshot(`${label}-signed-out`, page);
      await button.click();
      await waitOrFail(
        page.locator(SIGNED_IN_READY),
        SIGN_IN_MS,
        async () =>
          `after clicking "Sign in with Google", the page did not show "Signed in as NAME" within ${SIGN_IN_MS / 1000} s (${await pageSummary(page)})`,
      );
      const shown = (await page.locator(SIGNED_IN).innerText()).trim();
      const name = shown.replace(/^Signed in as\s+/, "");
      if (shown === name || name.length === 0)
        fail(
          `the signed-in view reads ${JSON.stringify(shown)}, expected "Signed in as NAME"`,
        );
      if (
        options["expect-name"] !== undefined &&
        name !== options["expect-name"]
      ) {
        fail(
          `signed in as ${JSON.stringify(name)}, expected ${JSON.stringify(options["expect-name"])}`,
        );
      }
      const url = new URL(page.url());
      if (url.origin !== new URL(site).origin)
        fail(`sign-in ended at ${url.href}, not on the site ${site}`);
      if (url.searchParams.has("code"))
        fail(`the one-time ?code= is still in the address bar: ${url.href}`);
      await screenshot(`${label}-signed-in`, page);
      return name;
    };

    let name1;
    await step("sign-in-context-1", async () => {
      name1 = await signIn("context-1");
      return { name: name1 };
    });

    await step("sign-in-context-2", async () => {
      const name = await signIn("context-2");
      return { name };
    });

    const page1 = pages["context-1"];
    const page2 = pages["context-2"];
    const body = `hello from context 1, ${randomUUID().slice(0, 8)}`;

    await step("message-appears-live-in-context-2", async () => {
      await waitOrFail(
        page1.getByTestId("message-list"),
        LIVE_MS,
        async () =>
          `context 1 never showed the message list (${await pageSummary(page1)})`,
        "attached",
      );
      await page1.getByTestId("message-input").fill(body);
      const sent = performance.now();
      await page1.getByTestId("send-button").click();
      await waitOrFail(
        page2.getByTestId("message").filter({ hasText: body }),
        LIVE_MS,
        async () => {
          const sendError = await page1
            .getByTestId("send-error")
            .innerText({ timeout: 200 })
            .catch(() => null);
          return (
            `the message sent from context 1 did not appear in context 2 within ${LIVE_MS / 1000} s` +
            (sendError
              ? ` (context 1 shows ${JSON.stringify(sendError)})`
              : ` (context 2: ${await pageSummary(page2)})`)
          );
        },
      );
      const latencyMs = Math.round(performance.now() - sent);
      await waitOrFail(
        page1.getByTestId("message").filter({ hasText: body }),
        LIVE_MS,
        async () =>
          `context 1 does not show its own message (${await pageSummary(page1)})`,
      );
      const author = (
        await page2
          .getByTestId("message")
          .filter({ hasText: body })
          .getByTestId("message-author")
          .innerText()
      ).trim();
      if (author !== name1)
        fail(
          `context 2 shows the message's author as ${JSON.stringify(author)}, expected ${JSON.stringify(name1)}`,
        );
      const inputAfter = await page1.getByTestId("message-input").inputValue();
      if (inputAfter !== "")
        fail(
          `the message box still holds ${JSON.stringify(inputAfter)} after sending`,
        );
      await screenshot("context-1-sent", page1);
      await screenshot("context-2-received", page2);
      return { latencyMs };
    });

    await step("message-stored", async () => {
      const messages = await query(api, "messages:list", { channel: CHANNEL });
      if (!Array.isArray(messages))
        fail(
          `messages:list returned ${JSON.stringify(messages).slice(0, 200)}, expected a list`,
        );
      const stored = messages.find((m) => m.body === body);
      if (stored === undefined)
        fail(
          `messages:list over HTTP does not contain the message ${JSON.stringify(body)}`,
        );
      if (stored.author !== name1 || stored.channel !== CHANNEL) {
        fail(
          `the stored message is ${JSON.stringify(stored)}, expected author ${JSON.stringify(name1)} in #${CHANNEL}`,
        );
      }
      if (messages.at(-1)?.body !== body)
        fail("the new message is not the last (newest) one in messages:list");
    });

    await step("server-side-sign-out-context-2", async () => {
      const jwt = await page2.evaluate((prefix) => {
        const key = Object.keys(localStorage).find((k) => k.startsWith(prefix));
        return key === undefined ? null : localStorage.getItem(key);
      }, JWT_KEY_PREFIX);
      if (!jwt)
        fail(
          `context 2 has no token in localStorage (no key starting with ${JWT_KEY_PREFIX})`,
        );
      let reloaded = false;
      const onNavigate = (frame) => {
        if (frame === page2.mainFrame()) reloaded = true;
      };
      page2.on("framenavigated", onNavigate);
      const started = performance.now();
      const res = await httpJson(
        `${site}/api/auth/signout`,
        { method: "POST", headers: { Authorization: `Bearer ${jwt}` } },
        "server-side sign-out",
      );
      if (!res.ok)
        fail(
          `POST ${site}/api/auth/signout answered ${res.status}: ${res.text.slice(0, 300)}`,
        );
      await waitOrFail(
        page2.getByTestId("unauthenticated"),
        LIVE_MS,
        async () =>
          `context 2 still looks signed in ${LIVE_MS / 1000} s after the server-side sign-out (${await pageSummary(page2)})`,
      );
      const signedOutMs = Math.round(performance.now() - started);
      page2.off("framenavigated", onNavigate);
      if (reloaded)
        fail(
          "context 2 was reloaded or navigated; the sign-out must reach the open page live",
        );
      if ((await page2.locator(SIGNED_IN).count()) !== 0)
        fail('context 2 shows the sign-in button but still has "signed-in-as"');
      await screenshot("context-2-signed-out-by-server", page2);
      return { status: res.status, signedOutMs };
    });

    await step("context-2-stays-signed-out-after-reload", async () => {
      await page2.reload({ waitUntil: "domcontentloaded" });
      await waitOrFail(
        page2.getByTestId("unauthenticated"),
        PAGE_READY_MS,
        async () =>
          `after a reload, context 2 did not show the sign-in view (${await pageSummary(page2)})`,
      );
      await screenshot("context-2-after-reload", page2);
    });

    await step("context-1-still-signed-in", async () => {
      await waitOrFail(
        page1.locator(SIGNED_IN_READY),
        1_000,
        async () =>
          `signing context 2 out also signed context 1 out (${await pageSummary(page1)})`,
      );
      if ((await page1.getByTestId("unauthenticated").count()) !== 0)
        fail("context 1 shows the sign-in view");
    });

    await step("sign-out-button-context-1", async () => {
      await page1.getByTestId("signout-button").click();
      await waitOrFail(
        page1.getByTestId("unauthenticated"),
        LIVE_MS,
        async () =>
          `clicking "Sign out" did not show the sign-in view within ${LIVE_MS / 1000} s (${await pageSummary(page1)})`,
      );
      const leftover = await page1.evaluate(
        (prefix) =>
          Object.keys(localStorage).filter(
            (k) => k.startsWith(prefix) && localStorage.getItem(k),
          ),
        JWT_KEY_PREFIX,
      );
      if (leftover.length > 0)
        fail(
          `after "Sign out", localStorage still holds ${leftover.join(", ")}`,
        );
      await screenshot("context-1-signed-out", page1);
    });

    await step("never-signed-in-and-sign-in-button-together", async () => {
      const checks = {};
      for (const [label, page] of Object.entries(pages)) {
        checks[label] = await page.evaluate(
          () => window.__confluxViewChecks ?? 0,
        );
        if (checks[label] === 0) fail(`the view watcher never ran in ${label}`);
      }
      return { checksSinceLastLoad: checks };
    });
  } finally {
    clearTimeout(watchdog);
    for (const [label, lines] of consoleLines) {
      await writeFile(
        path.join(artifacts, `console-${label}.log`),
        lines.join("\n") + "\n",
      ).catch(() => {});
    }
    await browser?.close().catch(() => {});
    const passed = results.filter((r) => r.ok).length;
    console.log(`browser: ${passed} passed, ${results.length - passed} failed`);
  }
}

main().then(
  () => process.exit(0),
  (error) => {
    console.error(
      `chat browser test FAILED: ${error instanceof TestFailure ? error.message : (error?.stack ?? error)}`,
    );
    if (artifactsDir !== null)
      console.error(`screenshots and console logs are in ${artifactsDir}`);
    process.exit(1);
  },
);
