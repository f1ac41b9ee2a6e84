// SurrealDB embedded, measured in-process by the Conflux benchmark harness.
//
// Why a script: SurrealDB's embedded engine (@surrealdb/node) runs inside a Node process,
// so the workload has to run there too. This script runs the same workloads as the Rust
// harness does for the other systems, with the same rules: warm-up, then measured runs;
// open-loop writes whose latency counts from the *scheduled* time; LIVE SELECT
// subscribers; closed-loop counter clients; CPU time of this process per run.
// It prints one JSON line: {"runs": [...]} (the warm-up is left out).
//
// Usage: node surreal-peer.mjs <packages dir> <data dir> <workload spec JSON file>

import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const [, , packagesDir, dataDir, specPath] = process.argv;
const spec = JSON.parse(readFileSync(specPath, "utf8"));

/** The ES module entry point of an installed package. */
function entry(name) {
  const dir = join(packagesDir, "node_modules", name);
  const manifest = JSON.parse(readFileSync(join(dir, "package.json"), "utf8"));
  let target = manifest.exports?.["."] ?? manifest.module ?? manifest.main;
  while (target && typeof target === "object") {
    target = target.import ?? target.default ?? target.node;
  }
  return pathToFileURL(join(dir, target)).href;
}

const { Surreal, Table, RecordId, eq } = await import(entry("surrealdb"));
const { createNodeEngines } = await import(entry("@surrealdb/node"));

const nowUs = () => performance.now() * 1000;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const db = new Surreal({ engines: createNodeEngines() });
await db.connect(`surrealkv://${join(dataDir, "db")}`);
await db.use({ namespace: "bench", database: "bench" });

/** A message of `size` bytes of JSON, as the Rust harness builds it. */
function message(channel, seq, scheduledUs, size) {
  const fields = { author: "bench-writer", channel, seq, t: Math.round(scheduledUs), body: "" };
  const pad = Math.max(1, size - JSON.stringify(fields).length);
  fields.body = "m".repeat(pad);
  return fields;
}

function cpuUs(since) {
  const used = process.cpuUsage(since);
  return used.user + used.system;
}

async function notify() {
  await db.query("DEFINE TABLE messages SCHEMALESS; DEFINE INDEX by_channel ON messages FIELDS channel;");
  const runsWrites = spec.runs_writes;
  const bounds = [0];
  for (const writes of runsWrites) bounds.push(bounds[bounds.length - 1] + writes);
  const total = bounds[bounds.length - 1];
  const runOf = (seq) => {
    for (let r = 0; r < runsWrites.length; r++) if (seq < bounds[r + 1]) return r;
    return -1;
  };
  const runs = runsWrites.map(() => ({ latencies: [], acks: [], delivered: 0, failed: 0 }));
  const perSeqCount = new Uint32Array(total);
  const perSeqMax = new Float64Array(total);

  // Subscribers: one LIVE SELECT per entry of `channels`.
  const lives = [];
  for (const channel of spec.channels) {
    const live = await db.live(new Table("messages")).where(eq("channel", channel));
    const seen = new Set();
    live.subscribe((msg) => {
      if (msg.action !== "CREATE" || !msg.value) return;
      const seq = Number(msg.value.seq);
      if (seen.has(seq)) return;
      seen.add(seq);
      const r = runOf(seq);
      if (r < 0) return;
      const latency = Math.max(0, nowUs() - Number(msg.value.t));
      runs[r].latencies.push(Math.round(latency));
      runs[r].delivered++;
      perSeqCount[seq]++;
      if (latency > perSeqMax[seq]) perSeqMax[seq] = latency;
    });
    lives.push(live);
  }

  const interval = 1000 / spec.rate;
  const out = [];
  for (let r = 0; r < runsWrites.length; r++) {
    const cpuStart = process.cpuUsage();
    const start = performance.now() + 5;
    for (let seq = bounds[r]; seq < bounds[r + 1]; seq++) {
      const due = start + (seq - bounds[r]) * interval;
      // setTimeout may fire up to a millisecond early: never send before the schedule.
      while (performance.now() < due) await sleep(Math.max(1, Math.ceil(due - performance.now())));
      const scheduledUs = due * 1000;
      const doc = message(spec.write_channels[seq], seq, scheduledUs, spec.size);
      db.query("CREATE messages CONTENT $doc RETURN NONE", { doc }).then(
        () => runs[r].acks.push(Math.max(0, Math.round(nowUs() - scheduledUs))),
        () => runs[r].failed++,
      );
    }
    const scheduleEnd = performance.now();
    const expected = (bounds[r + 1] - bounds[r]) * spec.expected_per_write;
    const deadline = scheduleEnd + spec.drain_s * 1000;
    while (
      (runs[r].delivered < expected || runs[r].acks.length + runs[r].failed < bounds[r + 1] - bounds[r]) &&
      performance.now() < deadline
    ) {
      await sleep(5);
    }
    const last = [];
    for (let seq = bounds[r]; seq < bounds[r + 1]; seq++) {
      if (perSeqCount[seq] >= spec.expected_per_write) last.push(Math.round(perSeqMax[seq]));
    }
    if (r > 0) {
      out.push({
        latencies_us: runs[r].latencies,
        last_us: last,
        acks_us: runs[r].acks,
        delivered: runs[r].delivered,
        expected,
        writes: bounds[r + 1] - bounds[r],
        failed: runs[r].failed,
        seconds: (scheduleEnd - start) / 1000,
        cpu_us: cpuUs(cpuStart),
      });
    }
  }
  return out;
}

async function increment() {
  await db.query("DEFINE TABLE counters SCHEMALESS;");
  for (let start = 0; start < spec.keys; start += 1000) {
    const rows = [];
    for (let key = start; key < Math.min(spec.keys, start + 1000); key++) rows.push({ id: `k${key}`, n: 0 });
    await db.query("INSERT INTO counters $rows RETURN NONE", { rows });
  }
  const phases = [spec.warmup_s, ...Array(spec.runs).fill(spec.run_s)];
  const stats = phases.map(() => ({ latencies: [], commits: 0, conflicts: 0, failed: 0 }));
  let phase = 0;
  let stop = false;
  let seed = 42;
  const random = () => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed / 2147483648;
  };
  const client = async () => {
    while (!stop) {
      const key = Math.floor(random() * spec.keys);
      const started = nowUs();
      for (;;) {
        try {
          await db.query("UPDATE $id SET n += 1 RETURN NONE", { id: new RecordId("counters", `k${key}`) });
          const p = phase;
          if (p < stats.length) {
            stats[p].latencies.push(Math.round(nowUs() - started));
            stats[p].commits++;
          }
          break;
        } catch (err) {
          const p = Math.min(phase, stats.length - 1);
          if (/conflict|retry/i.test(String(err?.message ?? err))) {
            stats[p].conflicts++;
            if (stop) break;
            continue;
          }
          stats[p].failed++;
          break;
        }
      }
    }
  };
  const clients = Array.from({ length: spec.clients }, () => client());
  const out = [];
  for (let p = 0; p < phases.length; p++) {
    const cpuStart = process.cpuUsage();
    const started = performance.now();
    phase = p;
    await sleep(phases[p] * 1000);
    if (p > 0) {
      out.push({
        latencies_us: stats[p].latencies,
        delivered: stats[p].commits,
        expected: stats[p].commits,
        writes: stats[p].commits,
        failed: stats[p].failed,
        conflicts: stats[p].conflicts,
        commits: stats[p].commits,
        seconds: (performance.now() - started) / 1000,
        cpu_us: cpuUs(cpuStart),
      });
    }
  }
  phase = phases.length;
  stop = true;
  await Promise.all(clients);
  return out;
}

const runs = spec.mode === "increment" ? await increment() : await notify();
process.stdout.write(JSON.stringify({ runs }) + "\n");
// The engine keeps live queries and threads alive; leave without waiting for them.
process.exit(0);
