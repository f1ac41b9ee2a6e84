// A mutation in flight when the server closes the socket is resent by the npm client on
// the new socket (same session id, same request id) and applied exactly once.
//
//   node tests/npm/sync-exactly-once.mjs <deploymentUrl>
//
// The test closes the sockets while `messages:slowSend` runs.

import { ConvexClient } from "convex/browser";
import { deploymentUrl, emit, main, toJson } from "./lib/harness.mjs";

main(async () => {
  const client = new ConvexClient(deploymentUrl());
  const result = await client.mutation("messages:slowSend", { body: "exactly once" });
  emit("mutation", { result: toJson(result) });
  const messages = await client.query("messages:list", {});
  emit("list", { bodies: messages.map((m) => m.body) });
  await client.close();
});
