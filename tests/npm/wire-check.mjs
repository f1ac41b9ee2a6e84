// The npm client's own protocol code, run outside a socket, so Rust tests can check the
// server's encodings against it without a server.
//
//   node tests/npm/wire-check.mjs <unused-url> client
//     emits `clientMessage` events: the exact text npm 1.48 sends for each kind of message,
//     built by its own LocalSyncState and encoder; and `canonical` events: npm's spelling of
//     function paths.
//   node tests/npm/wire-check.mjs <unused-url> server
//     reads `{"text": "<server message>"}` lines from stdin and feeds each through npm's
//     parseServerMessage and RemoteQuerySet, emitting what the client made of it.

import { emit, main, nextCommand, scenarioArgs, toJson } from "./lib/harness.mjs";
import { jsonToConvex, convexToJson } from "convex/values";
import {
  encodeClientMessage,
  parseServerMessage,
} from "./node_modules/convex/dist/esm/browser/sync/protocol.js";
import { LocalSyncState } from "./node_modules/convex/dist/esm/browser/sync/local_state.js";
import { RemoteQuerySet } from "./node_modules/convex/dist/esm/browser/sync/remote_query_set.js";
import { canonicalizeUdfPath } from "./node_modules/convex/dist/esm/browser/sync/udf_path_utils.js";
import { newSessionId } from "./node_modules/convex/dist/esm/browser/sync/session.js";
import { instantiateNoopLogger } from "./node_modules/convex/dist/esm/browser/logging.js";
import { Long } from "./node_modules/convex/dist/esm/vendor/long.js";

function sent(name, message) {
  emit("clientMessage", { name, text: JSON.stringify(encodeClientMessage(message)) });
}

function clientMessages() {
  const sessionId = newSessionId();
  // client.ts `onOpen`: {...reconnectMetadata, type, sessionId, maxObservedTimestamp}.
  sent("firstConnect", {
    connectionCount: 0,
    lastCloseReason: "InitialConnect",
    clientTs: Date.now(),
    type: "Connect",
    sessionId,
    maxObservedTimestamp: undefined,
  });
  sent("reconnect", {
    connectionCount: 1,
    lastCloseReason: null,
    clientTs: Date.now(),
    type: "Connect",
    sessionId,
    maxObservedTimestamp: Long.fromNumber(1000),
  });
  sent("reconnectAtMaxTs", {
    connectionCount: 2,
    lastCloseReason: "InactiveServer",
    clientTs: Date.now(),
    type: "Connect",
    sessionId,
    maxObservedTimestamp: Long.fromBytesLE([255, 255, 255, 255, 255, 255, 255, 127]),
  });

  const state = new LocalSyncState();
  const first = state.subscribe("messages", { channel: "general", limit: 10n });
  sent("subscribeDefaultExport", first.modification);
  const second = state.subscribe("dir/file.js:list", {});
  sent("subscribeJsPath", second.modification);
  sent("unsubscribe", second.unsubscribe());
  sent("authenticate", state.setAuth("header.payload.signature"));
  // A transition that carries a `null` journal makes npm resend `journal: null` later.
  state.transition({
    modifications: [
      { type: "QueryUpdated", queryId: 0, value: null, logLines: [], journal: null },
    ],
  });
  const [querySet, authenticate] = state.restart();
  sent("reconnectAuthenticate", authenticate);
  sent("reconnectQuerySet", querySet);
  state.pause();
  state.subscribe("messages:count", {});
  const [pausedQuerySet, pausedAuthenticate] = state.resume();
  sent("resumedQuerySet", pausedQuerySet);
  sent("resumedAuthenticate", pausedAuthenticate);
  sent("adminAuthenticate", state.setAdminAuth("admin-key", { tokenIdentifier: "https://idp|u1", name: "Ada" }));
  sent("signOut", state.clearAuth());

  // client.ts `enqueueMutation` and `actionInternal`.
  sent("mutation", {
    type: "Mutation",
    requestId: 0,
    udfPath: "messages:send",
    componentPath: undefined,
    args: [convexToJson({ body: "hi", n: 5n, data: new Uint8Array([1, 2, 3]).buffer, x: NaN })],
  });
  sent("action", {
    type: "Action",
    requestId: 1,
    udfPath: "messages",
    componentPath: undefined,
    args: [convexToJson({})],
  });
  sent("networkRecoveryEvent", {
    type: "Event",
    eventType: "NetworkRecoveryReconnect",
    event: { timeSavedMs: 1200 },
  });

  for (const input of [
    "messages",
    "messages:list",
    "messages.js",
    "messages.js:list",
    "dir/file:name",
    "dir/sub/file.js:name",
    "a.b/c",
    "_system/frontend:list",
  ]) {
    emit("canonical", { input, output: canonicalizeUdfPath(input) });
  }
}

function describeResult(result) {
  return result.success
    ? { success: true, value: toJson(result.value), logLines: result.logLines }
    : {
        success: false,
        errorMessage: result.errorMessage,
        errorData: result.errorData === undefined ? undefined : toJson(result.errorData),
        logLines: result.logLines,
      };
}

async function serverMessages() {
  const remote = new RemoteQuerySet(() => null, instantiateNoopLogger({ verbose: false }));
  for (let command = await nextCommand(); command !== null; command = await nextCommand()) {
    let message;
    try {
      message = parseServerMessage(JSON.parse(command.text));
    } catch (error) {
      emit("rejected", { message: String(error?.message ?? error) });
      continue;
    }
    if (message === undefined) {
      emit("rejected", { message: "parseServerMessage does not know this type" });
      continue;
    }
    switch (message.type) {
      case "Transition": {
        try {
          remote.transition(message);
        } catch (error) {
          emit("rejected", { message: error.message });
          continue;
        }
        const results = {};
        for (const [queryId, result] of remote.remoteQueryResults()) {
          results[queryId] = describeResult(result);
        }
        emit("Transition", {
          ts: remote.timestamp().toString(),
          endVersion: { ...message.endVersion, ts: message.endVersion.ts.toString() },
          results,
          serverTs: message.serverTs,
          clientClockSkew: message.clientClockSkew,
        });
        break;
      }
      case "MutationResponse":
      case "ActionResponse": {
        emit(message.type, {
          requestId: message.requestId,
          success: message.success,
          result: message.success ? toJson(jsonToConvex(message.result)) : message.result,
          errorData: message.errorData === undefined ? undefined : toJson(jsonToConvex(message.errorData)),
          ts: message.type === "MutationResponse" && message.success ? message.ts.toString() : undefined,
          logLines: message.logLines,
        });
        break;
      }
      default:
        emit(message.type, { message });
    }
  }
}

main(async () => {
  const [mode] = scenarioArgs();
  if (mode === "client") {
    clientMessages();
  } else if (mode === "server") {
    await serverMessages();
  } else {
    throw new Error(`unknown mode ${mode}; expected client or server`);
  }
});
