// The npm `ConvexHttpClient` (and `fetchQuery` / `fetchAction` of `convex/nextjs`, which the
// sign-in library uses) against a deployment's function HTTP API.
//
//   node tests/npm/http_client.mjs <deploymentUrl>
//
// Expects the test deployment of `crates/http/tests/client_api.rs`: the functions
// `messages:list`, `messages:send`, `messages:sendAndList`, `messages:reject` and
// `auth:whoami`, and a token validator that accepts `good-token` only.
//
// Events, one per step, in this order:
//   {"event":"result","step":...,"value":<Convex JSON>}        the call returned
//   {"event":"failure","step":...,"message":...,"convexError":bool,"data":<Convex JSON>|null}
//   {"event":"log","step":...,"line":...}                      a log line the client printed

import { ConvexHttpClient } from "convex/browser";
import { fetchAction, fetchQuery } from "convex/nextjs";
import { anyApi } from "convex/server";
import { ConvexError } from "convex/values";
import { deploymentUrl, emit, main, toJson } from "./lib/harness.mjs";

const url = deploymentUrl();
let step = "start";

// The client prints each function's log lines through its logger.
const logger = {
  logVerbose() {},
  log: (...args) => emit("log", { step, line: args.filter((a) => !String(a).startsWith("color:")).join(" ") }),
  warn: (...args) => emit("log", { step, line: args.join(" ") }),
  error: (...args) => emit("log", { step, line: args.join(" ") }),
};

async function run(name, call) {
  step = name;
  try {
    emit("result", { step, value: toJson(await call()) });
  } catch (error) {
    emit("failure", {
      step,
      message: error instanceof Error ? error.message : String(error),
      convexError: error instanceof ConvexError,
      data: error instanceof ConvexError ? toJson(error.data) : null,
    });
  }
}

main(async () => {
  const client = new ConvexHttpClient(url, { logger });
  const api = anyApi;

  await run("emptyList", () => client.query(api.messages.list, {}));
  await run("send", () =>
    client.mutation(api.messages.send, {
      body: "hello",
      count: 5n,
      payload: new Uint8Array([1, 2, 3]).buffer,
    }),
  );
  await run("listAfterSend", () => client.query(api.messages.list, {}));
  await run("action", () => client.action(api.messages.sendAndList, { body: "from an action" }));
  await run("convexError", () => client.mutation(api.messages.reject, { body: "" }));
  await run("argumentError", () => client.mutation(api.messages.send, { body: 42 }));
  await run("missingFunction", () => client.query(api.messages.nope, {}));
  await run("consistentQuery", () => client.consistentQuery(api.messages.list, {}));

  await run("anonymous", () => client.query(api.auth.whoami, {}));
  client.setAuth("good-token");
  await run("signedIn", () => client.query(api.auth.whoami, {}));
  client.setAuth("forged-token");
  await run("rejectedToken", () => client.query(api.auth.whoami, {}));
  client.clearAuth();

  // What `@convex-dev/auth` does on the server side of a Next.js app.
  await run("fetchQuerySignedIn", () =>
    fetchQuery("auth:whoami", {}, { url, token: "good-token" }),
  );
  await run("fetchActionMissing", () => fetchAction("auth:signIn", {}, { url }));
});
