#!/usr/bin/env node
// An agentbus collector in Node.js, written from docs/bus-protocol.md alone.
//
// Every line read on stdin becomes one event. Events go in batches through the
// acknowledged path (ingest socket, DEALER): a batch counts as delivered only once the
// agent answered that it committed it to disk. "full" means "send again later"; no answer
// within the timeout means "open a new socket and send again" (at-least-once).
// With --fast, batches go through the fast path (events socket, PUSH) without an answer.
//
//   node collector.js [--run-dir DIR | --endpoint URL] [--module M] [--collector C]
//                     [--batch N] [--timeout SECONDS] [--fast]
//
// Prints a JSON summary on stdout: {"sent": n, "accepted": n, "rejected": n}.
// Exit code 0 when every event was accepted, 1 otherwise.

"use strict";

const readline = require("node:readline");
const path = require("node:path");
const zmq = require("zeromq");
const { encode, decode } = require("@msgpack/msgpack");

function parseArgs(argv) {
  const opts = {
    runDir: process.env.AGENTBUS_AGENT_RUN_DIR || "/run/agentbus",
    endpoint: "",
    module: "nodeapp",
    collector: "stdin",
    batch: 500,
    timeout: 10,
    fast: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) usage(`${arg} needs a value`);
      return argv[++i];
    };
    if (arg === "--run-dir") opts.runDir = value();
    else if (arg === "--endpoint") opts.endpoint = value();
    else if (arg === "--module") opts.module = value();
    else if (arg === "--collector") opts.collector = value();
    else if (arg === "--batch") opts.batch = Math.max(1, parseInt(value(), 10) || 1);
    else if (arg === "--timeout") opts.timeout = Math.max(0.1, parseFloat(value()) || 10);
    else if (arg === "--fast") opts.fast = true;
    else usage(`unknown argument ${arg}`);
  }
  if (!opts.endpoint) {
    // Default endpoints are ipc sockets in the agent's run directory.
    const name = opts.fast ? "events.sock" : "ingest.sock";
    opts.endpoint = `ipc://${path.join(opts.runDir, name)}`;
  }
  return opts;
}

function usage(message) {
  process.stderr.write(`node-collector: ${message}\n`);
  process.exit(2);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// The acknowledged path: DEALER, one frame out, one frame (a msgpack map) back.
class Ingest {
  constructor(endpoint, timeoutSeconds) {
    this.endpoint = endpoint;
    this.timeoutMs = Math.round(timeoutSeconds * 1000);
    this.socket = null;
    this.open();
  }

  open() {
    // immediate: do not queue for an agent that is not there; sendTimeout: never block
    // forever; linger: closing does not hang.
    this.socket = new zmq.Dealer({
      immediate: true,
      sendTimeout: this.timeoutMs,
      receiveTimeout: this.timeoutMs,
      linger: 1000,
    });
    this.socket.connect(this.endpoint);
  }

  reopen() {
    // A late answer would be taken for the answer to the next request: start afresh.
    this.socket.close();
    this.open();
  }

  // Resolves with the agent's reply map, or null when there was no answer in time.
  async request(frame) {
    try {
      await this.socket.send(frame);
      const [reply] = await this.socket.receive();
      return decode(reply);
    } catch (err) {
      if (err && err.code === "EAGAIN") {
        this.reopen();
        return null;
      }
      throw err;
    }
  }

  close() {
    this.socket.close();
  }
}

// Send one batch until the agent committed it; returns {accepted, rejected}.
async function deliver(ingest, events) {
  const frame = encode(events);
  let delay = 100;
  for (;;) {
    const reply = await ingest.request(frame);
    if (reply && reply.ok) return { accepted: reply.accepted, rejected: 0 };
    if (reply && reply.error !== "full") {
      // Rejected events will not get better by sending them again; the valid ones of the
      // batch are committed.
      for (const r of reply.rejected || []) {
        process.stderr.write(`node-collector: event ${r.index} rejected: ${r.reason}: ${r.message}\n`);
      }
      return { accepted: reply.accepted || 0, rejected: events.length - (reply.accepted || 0) };
    }
    // "full" or no answer: wait a little longer each time, then send again.
    await sleep(delay / 2 + Math.random() * (delay / 2));
    delay = Math.min(delay * 2, 5000);
  }
}

function makeEvent(opts, line) {
  return {
    module: opts.module,
    collector: opts.collector,
    type: "stateless",
    ts: Date.now() / 1000,
    data: {
      event: { original: line, created: new Date().toISOString() },
      process: { name: "node", pid: process.pid },
    },
  };
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const summary = { sent: 0, accepted: 0, rejected: 0 };
  let push = null;
  let ingest = null;
  if (opts.fast) {
    push = new zmq.Push({ immediate: true, sendTimeout: opts.timeout * 1000, linger: 5000 });
    push.connect(opts.endpoint);
  } else {
    ingest = new Ingest(opts.endpoint, opts.timeout);
  }

  let batch = [];
  const flush = async () => {
    if (batch.length === 0) return;
    const events = batch;
    batch = [];
    summary.sent += events.length;
    if (push) {
      await push.send(encode(events)); // no answer on the fast path
      summary.accepted += events.length;
    } else {
      const r = await deliver(ingest, events);
      summary.accepted += r.accepted;
      summary.rejected += r.rejected;
    }
  };

  const lines = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
  for await (const line of lines) {
    if (line.length === 0) continue;
    batch.push(makeEvent(opts, line));
    if (batch.length >= opts.batch) await flush();
  }
  await flush();
  if (push) push.close();
  if (ingest) ingest.close();
  process.stdout.write(JSON.stringify(summary) + "\n");
  return summary.rejected === 0 && summary.accepted === summary.sent ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`node-collector: ${err && err.message ? err.message : err}\n`);
    process.exit(1);
  },
);
