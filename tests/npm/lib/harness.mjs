// The contract between a Node scenario script and the Rust test that runs it.
//
// A Rust test runs `node tests/npm/<scenario>.mjs <deploymentUrl> [args...]` (see the
// `conflux-testkit` crate). The script reports what happened as one JSON object per line on
// stdout, each with an `event` name; it writes diagnostics to stderr only. It exits 0 after
// emitting `{"event":"done"}`, or 1 after emitting `{"event":"error", ...}`. Instructions from
// the test, when a scenario needs them, arrive as one JSON object per line on stdin.

import { createInterface } from "node:readline";
import { convexToJson } from "convex/values";

// Stdout carries events only. Anything else that logs (the Convex client's logger uses
// console.log) goes to stderr, which the Rust side keeps for failure reports.
console.log = console.error;
console.info = console.error;
console.debug = console.error;

/** Report an event to the Rust test: one JSON line on stdout. */
export function emit(event, fields = {}) {
  process.stdout.write(JSON.stringify({ event, ...fields }) + "\n");
}

/** A Convex value (bigint, ArrayBuffer, ...) as Convex JSON, safe to pass to `emit`. */
export function toJson(value) {
  return value === undefined ? null : convexToJson(value);
}

/** The deployment URL the test passed as the first argument. */
export function deploymentUrl() {
  const url = process.argv[2];
  if (!url) {
    throw new Error("usage: node <scenario>.mjs <deploymentUrl> [args...]");
  }
  return url;
}

/** The arguments after the deployment URL. */
export function scenarioArgs() {
  return process.argv.slice(3);
}

let stdinLines;

/**
 * The next instruction from the test (a parsed JSON line from stdin), or `null` once the
 * test closed stdin.
 */
export async function nextCommand() {
  stdinLines ??= createInterface({ input: process.stdin })[Symbol.asyncIterator]();
  const { value, done } = await stdinLines.next();
  return done ? null : JSON.parse(value);
}

/** Resolve after `ms` milliseconds. */
export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Poll `check` until it returns a value other than `undefined`, or fail after `timeoutMs`
 * with a message naming `what`.
 */
export async function waitFor(what, check, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) {
      return value;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    }
    await sleep(20);
  }
}

/**
 * Run a scenario: `body` does the work and emits events; `done` or `error` is emitted at the
 * end and the process exits with 0 or 1. A scenario that runs past `timeoutMs` fails on its
 * own, so a stuck client never outlives the test that started it.
 */
export function main(body, { timeoutMs = 60_000 } = {}) {
  const fail = (error) => {
    emit("error", {
      message: error instanceof Error ? error.message : String(error),
      stack: error instanceof Error ? error.stack : undefined,
    });
    process.exit(1);
  };
  process.on("uncaughtException", fail);
  process.on("unhandledRejection", fail);
  setTimeout(() => fail(new Error(`scenario timed out after ${timeoutMs} ms`)), timeoutMs).unref();
  Promise.resolve()
    .then(body)
    .then(() => {
      emit("done");
      process.exit(0);
    }, fail);
}
