// The browser side of the post-redirect timeline: the official `ConvexClient` (convex
// 1.48.0) with `setAuth`, subscribed to `users:viewer`, recording every frame of its
// socket and every result it delivers, with wall-clock timestamps.
//
//   node tests/npm/auth_race_client.mjs <deploymentUrl> '<config JSON>'
//
// config:
//   pattern   "subscribe-first": the old client pattern. Subscribe at once, exchange the
//             code meanwhile, `setAuth` once the token is there (after the first answer):
//             the socket sends ModifyQuerySet before Authenticate.
//             "auth-first": `setAuth` first, with a token fetcher that resolves once the
//             token exists, then subscribe; the client sends Connect, Authenticate and
//             ModifyQuerySet back to back.
//   exchange  {site, code, verifier}: the first token comes from the client's own code
//             exchange, `POST <site>/api/auth/token {code, verifier}` (a single-page app).
//   token     "<jwt>": the first token was handed over by a server-rendered page.
//   refresh   {kind: "site", site}: forced refreshes use `POST <site>/api/auth/token
//             {refreshToken}` with the refresh token of the exchange;
//             {kind: "proxy", url, cookie}: they go through the framework's refresh route
//             with the browser's cookies (the refresh token never reaches JavaScript).
//
// Events (each `t` is the wall clock in milliseconds since the Unix epoch, fractional):
//   {"event":"sent", t, type, baseVersion?, newVersion?, tokenType?, adds?}
//   {"event":"received", t, type, startIdentity, endIdentity, startQuerySet, endQuerySet, viewer}
//        viewer: "signedIn" | "signedOut" | "failed" | null (not in this Transition)
//   {"event":"exchange", t, ok, ms, token} {"event":"refreshed", t, ok}
//   {"event":"viewer", t, signedIn}      every onUpdate of users:viewer
//   {"event":"authState", t, isAuthenticated}
//   {"event":"summary", viewer:[bool...], signedOut, states, authenticates, confirmations}
// The run ends once the client's own forced refresh after the first confirmation (see
// protocol spec §4.5) was confirmed too, plus 300 ms for any late result to show up.

import WebSocket from "ws";
import { ConvexClient } from "convex/browser";
import { deploymentUrl, emit, main, scenarioArgs, sleep, waitFor } from "./lib/harness.mjs";

const now = () => performance.timeOrigin + performance.now();

main(async () => {
  const config = JSON.parse(scenarioArgs()[0] ?? "{}");
  if (!["subscribe-first", "auth-first"].includes(config.pattern)) {
    throw new Error(`unknown pattern ${JSON.stringify(config.pattern)}`);
  }

  // The socket, recorded frame by frame.
  const viewerQueryIds = new Set();
  let highestConfirmedIdentity = 0;
  let authenticates = 0;
  let confirmations = 0;
  class RecordingWebSocket extends WebSocket {
    constructor(...args) {
      super(...args);
      // Registered before the client's own `onmessage`, so it runs first.
      this.addEventListener("message", (message) => received(String(message.data)));
    }
    send(data) {
      sent(String(data));
      super.send(data);
    }
  }
  function sent(text) {
    const message = JSON.parse(text);
    const fields = { t: now(), type: message.type };
    if (message.type === "Authenticate") {
      authenticates += 1;
      Object.assign(fields, { baseVersion: message.baseVersion, tokenType: message.tokenType });
    } else if (message.type === "ModifyQuerySet") {
      const adds = message.modifications.filter((m) => m.type === "Add");
      for (const add of adds) {
        if (add.udfPath.startsWith("users:viewer")) {
          viewerQueryIds.add(add.queryId);
        }
      }
      Object.assign(fields, {
        baseVersion: message.baseVersion,
        newVersion: message.newVersion,
        adds: adds.map((m) => m.udfPath),
      });
    } else if (message.type !== "Connect") {
      return; // Events and the like are not part of the timeline.
    }
    emit("sent", fields);
  }
  function received(text) {
    const message = JSON.parse(text);
    if (message.type !== "Transition") {
      if (message.type !== "Ping") {
        emit("received", { t: now(), type: message.type, error: message.error ?? null });
      }
      return;
    }
    let viewer = null;
    for (const modification of message.modifications) {
      if (!viewerQueryIds.has(modification.queryId)) continue;
      if (modification.type === "QueryUpdated") {
        viewer = modification.value === null ? "signedOut" : "signedIn";
      } else if (modification.type === "QueryFailed") {
        viewer = "failed";
      }
    }
    const { startVersion, endVersion } = message;
    if (endVersion.identity > startVersion.identity) {
      confirmations += 1;
      highestConfirmedIdentity = Math.max(highestConfirmedIdentity, endVersion.identity);
    }
    emit("received", {
      t: now(),
      type: "Transition",
      startIdentity: startVersion.identity,
      endIdentity: endVersion.identity,
      startQuerySet: startVersion.querySet,
      endQuerySet: endVersion.querySet,
      viewer,
    });
  }

  // Where tokens come from.
  let refreshToken = null;
  async function exchange() {
    if (typeof config.token === "string") {
      return config.token;
    }
    const { site, code, verifier } = config.exchange;
    const started = now();
    const response = await fetch(`${site}/api/auth/token`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ code, verifier }),
    });
    const body = await response.json();
    const ok = response.status === 200 && typeof body.token === "string";
    emit("exchange", { t: now(), ok, ms: now() - started, token: ok ? body.token : null });
    if (!ok) {
      throw new Error(`the code exchange failed: ${response.status} ${JSON.stringify(body)}`);
    }
    refreshToken = body.refreshToken;
    return body.token;
  }
  async function refresh() {
    let response;
    if (config.refresh?.kind === "proxy") {
      response = await fetch(config.refresh.url, {
        method: "POST",
        headers: { cookie: config.refresh.cookie },
      });
    } else {
      response = await fetch(`${config.refresh.site}/api/auth/token`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ refreshToken }),
      });
    }
    const body = await response.json();
    const ok = typeof body.token === "string";
    emit("refreshed", { t: now(), ok });
    if (!ok) {
      return null;
    }
    if (typeof body.refreshToken === "string") {
      refreshToken = body.refreshToken;
    }
    return body.token;
  }

  const client = new ConvexClient(deploymentUrl(), { webSocketConstructor: RecordingWebSocket });
  const viewer = [];
  const states = [];
  const subscribe = () =>
    client.onUpdate("users:viewer", {}, (value) => {
      viewer.push(value !== null);
      emit("viewer", { t: now(), signedIn: value !== null });
    });
  const onChange = (isAuthenticated) => {
    states.push(isAuthenticated);
    emit("authState", { t: now(), isAuthenticated });
  };

  if (config.pattern === "subscribe-first") {
    subscribe();
    // The token arrives after the first (anonymous) answer, as it does on a real network:
    // the exchange is a round trip plus a signature, the answer a round trip. Waiting for
    // both makes that order certain instead of likely.
    const [token] = await Promise.all([
      exchange(),
      waitFor("the first users:viewer result", () => (viewer.length > 0 ? true : undefined)),
    ]);
    client.setAuth(async ({ forceRefreshToken }) => (forceRefreshToken ? refresh() : token), onChange);
  } else {
    const first = exchange();
    client.setAuth(async ({ forceRefreshToken }) => (forceRefreshToken ? refresh() : first), onChange);
    subscribe();
  }

  // The first confirmation (identity version 1) makes the client refresh at once; wait
  // for the refreshed token's confirmation (version 2) too.
  await waitFor("the confirmation of the refreshed token", () =>
    highestConfirmedIdentity >= 2 && viewer.at(-1) === true && states.includes(true)
      ? true
      : undefined,
  );
  await sleep(300);
  emit("summary", {
    viewer,
    signedOut: viewer.filter((signedIn) => !signedIn).length,
    states,
    authenticates,
    confirmations,
  });
  await client.close();
});
