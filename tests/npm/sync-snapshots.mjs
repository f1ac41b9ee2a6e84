// onUpdate callbacks of two queries always see one consistent snapshot: the list of
// messages and their count agree after every Transition, while another client writes.
//
//   node tests/npm/sync-snapshots.mjs <deploymentUrl> <writes>

import { ConvexClient } from "convex/browser";
import { deploymentUrl, emit, main, scenarioArgs, waitFor } from "./lib/harness.mjs";

main(async () => {
  const url = deploymentUrl();
  const writes = Number(scenarioArgs()[0] ?? "20");
  const watcher = new ConvexClient(url);
  const writer = new ConvexClient(url);

  let list;
  let count;
  let checks = 0;
  const mismatches = [];
  let checkScheduled = false;
  // Both callbacks of one Transition run synchronously one after the other; a microtask
  // queued by the first runs after the last of them, before the next WebSocket message.
  const scheduleCheck = () => {
    if (checkScheduled) return;
    checkScheduled = true;
    queueMicrotask(() => {
      checkScheduled = false;
      if (list === undefined || count === undefined) return;
      checks += 1;
      if (list.length !== count) {
        mismatches.push({ listLength: list.length, count });
      }
    });
  };
  watcher.onUpdate("messages:list", {}, (value) => {
    list = value;
    scheduleCheck();
  });
  watcher.onUpdate("messages:count", {}, (value) => {
    count = value;
    scheduleCheck();
  });
  await waitFor("both first results", () =>
    list !== undefined && count !== undefined ? true : undefined,
  );

  const sends = [];
  for (let n = 0; n < writes; n++) {
    sends.push(writer.mutation("messages:send", { body: `m${n}` }));
  }
  await Promise.all(sends);
  await waitFor("every write", () => (count === writes && list.length === writes ? true : undefined));
  emit("snapshots", { checks, mismatches, count, listLength: list.length });
  await watcher.close();
  await writer.close();
});
