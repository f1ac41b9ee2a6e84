// The npm ConvexClient against a Conflux server: live queries, mutations with
// read-your-writes, actions, ConvexError data, auth set and rejected, and live updates
// that continue after the server closed the socket.
//
//   node tests/npm/sync-live.mjs <deploymentUrl>
//
// Instructions on stdin: {"cmd":"expect","body":"..."} waits until the reader's live list
// contains a message with that body (the test writes it after closing the sockets).

import { ConvexClient } from "convex/browser";
import { ConvexError } from "convex/values";
import { deploymentUrl, emit, main, nextCommand, toJson, waitFor } from "./lib/harness.mjs";

main(async () => {
  const url = deploymentUrl();
  const reader = new ConvexClient(url);
  const writer = new ConvexClient(url);

  let latest;
  reader.onUpdate("messages:list", {}, (messages) => {
    latest = messages;
    emit("update", { bodies: messages.map((m) => m.body) });
  });
  await waitFor("the first list", () => latest);

  const id = await writer.mutation("messages:send", { body: "hello" });
  emit("mutation", { result: toJson(id) });
  // Read-your-writes: the mutation resolved only once a Transition reached its commit.
  const seenByWriter = await writer.query("messages:list", {});
  emit("readYourWrites", { bodies: seenByWriter.map((m) => m.body) });
  await waitFor("the live update", () =>
    latest.some((m) => m.body === "hello") ? true : undefined,
  );
  emit("live", { bodies: latest.map((m) => m.body) });

  const shouted = await writer.action("actions:shout", { text: "hey" });
  emit("action", { result: toJson(shouted) });

  try {
    await writer.mutation("messages:fail", {});
    emit("convexError", { thrown: false });
  } catch (error) {
    emit("convexError", {
      thrown: true,
      isConvexError: error instanceof ConvexError,
      data: error instanceof ConvexError ? toJson(error.data) : null,
      message: String(error.message),
    });
  }

  // Auth: a valid token signs the client in; a refused one never does.
  const alice = new ConvexClient(url);
  const aliceStates = [];
  alice.setAuth(
    async () => "user:alice:s1",
    (isAuthenticated) => aliceStates.push(isAuthenticated),
  );
  let aliceIs;
  alice.onUpdate("identity:whoami", {}, (who) => {
    aliceIs = who;
  });
  await waitFor("alice signed in", () => (aliceIs === "alice" ? true : undefined));
  await waitFor("alice confirmed", () => (aliceStates.includes(true) ? true : undefined));
  emit("auth", { whoami: aliceIs, states: aliceStates });

  const mallory = new ConvexClient(url);
  let malloryState;
  let fetches = 0;
  mallory.setAuth(
    async () => {
      fetches += 1;
      return "forged";
    },
    (isAuthenticated) => {
      malloryState = isAuthenticated;
    },
  );
  const malloryIs = [];
  mallory.onUpdate("identity:whoami", {}, (who) => malloryIs.push(who));
  await waitFor("mallory refused", () => (malloryState === false ? true : undefined), 20_000);
  await waitFor("mallory's query as anonymous", () => (malloryIs.length > 0 ? true : undefined));
  emit("rejected", { state: malloryState, fetches, whoami: malloryIs });
  await alice.close();
  await mallory.close();

  // Reconnect after a server-side close: the test closes every socket and then writes.
  emit("ready");
  for (let command = await nextCommand(); command !== null; command = await nextCommand()) {
    if (command.cmd === "expect") {
      await waitFor(`a message "${command.body}"`, () =>
        latest.some((m) => m.body === command.body) ? true : undefined,
      );
      emit("reconnected", { bodies: latest.map((m) => m.body) });
    }
  }
  await reader.close();
  await writer.close();
});
