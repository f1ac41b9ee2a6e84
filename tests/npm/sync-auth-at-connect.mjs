// A client that connects with a valid token (ConvexClient.setAuth) must never receive a
// signed-out result: every onUpdate result of an identity query is counted.
//
//   node tests/npm/sync-auth-at-connect.mjs <deploymentUrl> <token> <subject>

import { ConvexClient } from "convex/browser";
import { deploymentUrl, emit, main, scenarioArgs, sleep, waitFor } from "./lib/harness.mjs";

main(async () => {
  const [token, subject] = scenarioArgs();
  const client = new ConvexClient(deploymentUrl());
  const states = [];
  client.setAuth(
    async () => token,
    (isAuthenticated) => states.push(isAuthenticated),
  );
  const results = [];
  client.onUpdate("identity:whoami", {}, (who) => results.push(who));
  await waitFor("the signed-in result", () => (results.includes(subject) ? true : undefined));
  await waitFor("the confirmation", () => (states.includes(true) ? true : undefined));
  // Give a late signed-out result every chance to show up.
  await sleep(300);
  emit("results", {
    signedOut: results.filter((who) => who !== subject).length,
    signedIn: results.filter((who) => who === subject).length,
    first: results[0],
    states,
  });
  await client.close();
});
