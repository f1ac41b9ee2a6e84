// One npm client of the history checker (crates/checker): a ConvexClient subscribed to
// `lists:read` for every key, reporting every update it applies and running the appends the
// checker sends it, one at a time.
//
//   node tests/npm/checker-client.mjs <deploymentUrl> <timeoutMs> <key>...
//
// Events:
//   {"event":"ready"}
//   {"event":"observe","ts":"<decimal server ts>","lists":{"<key>":[...]}}  after a
//       transition that changed what the client shows (every key with a result, one snapshot)
//   {"event":"result","id":n,"ok":true,"value":<Convex JSON>}
//   {"event":"result","id":n,"ok":false,"message":"..."}
// Commands (stdin, one JSON object per line):
//   {"op":"append","id":n,"key":"k0","value":2000001}
//   {"op":"appendAndRead","id":n,"key":"k0","value":2000002,"read":["k1","k2"]}
// The client reconnects by itself when its connection drops; closing stdin ends the script.

import { ConvexClient } from "convex/browser";
import {
  deploymentUrl,
  emit,
  main,
  nextCommand,
  scenarioArgs,
  sleep,
  toJson,
} from "./lib/harness.mjs";

const [timeoutMs, ...keys] = scenarioArgs();

main(
  async () => {
    const client = new ConvexClient(deploymentUrl());
    const base = client.client;
    const snapshot = () => {
      const lists = {};
      for (const key of keys) {
        let value;
        try {
          value = base.localQueryResult("lists:read", { key });
        } catch {
          value = undefined; // a failed query: nothing to show
        }
        if (value !== undefined) {
          lists[key] = toJson(value);
        }
      }
      return lists;
    };
    // The client's vendored `Long.toString()` reads the low word as signed and is off by
    // 2^32 whenever its top bit is set; compute the decimal from the two words instead.
    const decimal = (ts) => ((BigInt(ts.high >>> 0) << 32n) + BigInt(ts.low >>> 0)).toString();
    let last = "{}";
    base.addOnTransitionHandler((transition) => {
      const lists = snapshot();
      const text = JSON.stringify(lists);
      if (text === last) {
        return;
      }
      last = text;
      emit("observe", { ts: decimal(transition.timestamp), lists });
    });
    for (const key of keys) {
      client.onUpdate("lists:read", { key }, () => {});
    }
    emit("ready");
    for (;;) {
      const command = await nextCommand();
      if (command === null) {
        break;
      }
      const args = { key: command.key, value: command.value };
      if (command.op === "appendAndRead") {
        args.read = command.read;
      }
      try {
        const value = await client.mutation(`lists:${command.op}`, args);
        emit("result", { id: command.id, ok: true, value: toJson(value) });
      } catch (error) {
        emit("result", {
          id: command.id,
          ok: false,
          message: error instanceof Error ? error.message : String(error),
        });
      }
    }
    // Closing waits for the socket to close; a relay that was just cut may never answer.
    await Promise.race([client.close(), sleep(2_000)]);
  },
  { timeoutMs: Number(timeoutMs) || 600_000 },
);
