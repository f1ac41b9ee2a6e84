// Checks of the Node test harness itself: which client versions are installed, and how the
// runner sees output, instructions, failures and scripts that hang.
//
//   node tests/npm/selftest.mjs <unused-url> versions|echo|fail|hang

import { readFile } from "node:fs/promises";
import { emit, main, nextCommand, scenarioArgs, sleep, toJson } from "./lib/harness.mjs";

async function installedVersion(name) {
  const url = new URL(`./node_modules/${name}/package.json`, import.meta.url);
  return JSON.parse(await readFile(url, "utf8")).version;
}

const [mode] = scenarioArgs();

main(async () => {
  switch (mode) {
    case "versions":
      for (const name of ["convex", "@convex-dev/auth", "@auth/core", "playwright-core", "ws"]) {
        emit("installed", { name, version: await installedVersion(name) });
      }
      emit("value", { value: toJson({ n: 5n, bytes: new Uint8Array([1, 2]).buffer }) });
      break;
    case "echo":
      for (let command = await nextCommand(); command !== null; command = await nextCommand()) {
        emit("echo", { command });
      }
      break;
    case "fail":
      console.error("about to fail");
      throw new Error("the scenario failed on purpose");
    case "hang":
      emit("hanging");
      await sleep(3_600_000);
      break;
    default:
      throw new Error(`unknown mode ${mode}`);
  }
});
