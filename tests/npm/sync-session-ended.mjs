// A signed-in client whose sign-in session ends on the server ends up signed out: the
// server drops the identity and the client, finding no new token, clears its auth.
//
//   node tests/npm/sync-session-ended.mjs <deploymentUrl> <token>
//
// Instructions on stdin: {"cmd":"signOut"} makes the token fetcher return null from now on
// (as an auth library does after a sign-out); the test then ends the session.

import { ConvexClient } from "convex/browser";
import { deploymentUrl, emit, main, nextCommand, scenarioArgs, waitFor } from "./lib/harness.mjs";

main(async () => {
  const [token] = scenarioArgs();
  const client = new ConvexClient(deploymentUrl());
  let signedOut = false;
  const states = [];
  client.setAuth(
    async () => (signedOut ? null : token),
    (isAuthenticated) => states.push(isAuthenticated),
  );
  let who;
  client.onUpdate("identity:whoami", {}, (value) => {
    who = value;
    emit("whoami", { who: value });
  });
  await waitFor("signed in", () => (who !== undefined && who !== null && states.includes(true) ? true : undefined));
  emit("signedIn", { who });

  const command = await nextCommand();
  if (command?.cmd !== "signOut") throw new Error(`unexpected command ${JSON.stringify(command)}`);
  signedOut = true;
  emit("tokenGone");
  await waitFor("signed out", () => (who === null && states.at(-1) === false ? true : undefined));
  emit("signedOut", { states });
  await client.close();
});
