// Test helpers: run the real marketcast binary (built by `make build`, or
// MARKETCAST_BIN) on a free loopback port, mint tokens with its own `token`
// command, publish through its HTTP API.
import { spawn, execFileSync } from 'node:child_process';
import { createServer } from 'node:net';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const BIN = process.env.MARKETCAST_BIN || join(root, 'bin', 'marketcast');
export const SECRET = 'js-client-test-secret-0123456789';

export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
    srv.on('error', reject);
  });
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * How long a test waits for anything: a guard against a hang, generous for
 * a busy machine, never a measurement (as internal/testwait in Go).
 */
export const DEADLINE = 60000;

/** Polls cond until it is true; rejects naming what after timeout ms. */
export async function until(cond, what, timeout = DEADLINE) {
  const deadline = Date.now() + timeout;
  for (let pause = 1; !(await cond()); pause = Math.min(2 * pause, 50)) {
    if (Date.now() > deadline) throw new Error(`still waiting for ${what} after ${timeout} ms`);
    await sleep(pause);
  }
}

/**
 * Starts the server; resolves when /readyz answers 200. A development-mode
 * server (dev: true) runs with the public development secret, as it must;
 * use the returned token() and publish(), which sign with the right one.
 */
export async function startServer({ port, config = '', dev = false, backfill = '0s', symbolCount = 0 } = {}) {
  port = port || (await freePort());
  const dir = mkdtempSync(join(tmpdir(), 'mc-js-'));
  const cfg = join(dir, 'config.yaml');
  // No simulated past by default: a test starts with a quiet server. The
  // simulator is named: a production server (dev: false) runs no feed.kind auto.
  // symbolCount > 0: the simulator makes that many symbols (20 ticks a
  // second each) instead of the seed's.
  const sim = symbolCount > 0 ? `    symbol_count: ${symbolCount}\n` : '';
  writeFileSync(cfg, `dev_mode: ${dev}\nfeed:\n  kind: sim\n  sim:\n    rate: 20\n    backfill: ${backfill}\n${sim}log:\n  level: warn\n` + config);
  const env = { ...process.env, MARKETCAST_LISTEN: `127.0.0.1:${port}` };
  if (!dev) env.MARKETCAST_JWT_SECRET = SECRET;
  const proc = spawn(BIN, ['-config', cfg], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  proc.once('exit', () => rmSync(dir, { recursive: true, force: true })); // tests leave nothing behind
  let log = '';
  proc.stderr.on('data', (d) => { log += d; });
  const base = `http://127.0.0.1:${port}`;
  try {
    await until(async () => {
      if (proc.exitCode !== null) throw new Error(`server exited: ${log}`);
      try {
        return (await fetch(base + '/readyz')).status === 200;
      } catch {
        return false; // not listening yet
      }
    }, `the server on ${base} to be ready`);
  } catch (err) {
    proc.kill('SIGKILL');
    throw new Error(`${err.message}: ${log}`);
  }
  const stop = () => new Promise((resolve) => {
    if (proc.exitCode !== null) return resolve(proc.exitCode);
    proc.once('exit', (code) => resolve(code));
    proc.kill('SIGTERM');
  });
  // dump asks the Go runtime for every goroutine's stack (SIGQUIT makes it
  // print them and exit) and resolves with the server's whole log: what a
  // test that found the server stuck reports.
  const dump = () => new Promise((resolve) => {
    if (proc.exitCode !== null) return resolve(log);
    proc.once('exit', () => resolve(log));
    proc.kill('SIGQUIT');
  });
  return {
    port, base, url: `ws://127.0.0.1:${port}/ws`, proc, stop, dump, log: () => log,
    token: (user, opts = {}) => token(user, { ...opts, dev }),
    publish: (body) => publish(base, body, { dev }),
  };
}

/** A token from the binary's own `token` command (dev: the development secret). */
export function token(user, { permissions = 'read:market_data,read:signals', ttl = '1h', dev = false } = {}) {
  const env = { ...process.env };
  delete env.MARKETCAST_JWT_SECRET;
  if (!dev) env.MARKETCAST_JWT_SECRET = SECRET;
  return execFileSync(BIN, ['token', '-user', user, '-permissions', permissions, '-ttl', ttl], { env }).toString().trim();
}

export async function publish(base, body, { dev = false } = {}) {
  const res = await fetch(base + '/api/v1/publish', {
    method: 'POST',
    headers: { Authorization: 'Bearer ' + token('backend', { permissions: 'publish', dev }), 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  });
  const json = await res.json();
  if (res.status !== 200) throw new Error(`publish ${res.status}: ${JSON.stringify(json)}`);
  return json;
}

/** Resolves with the first event payload for which match is true. */
export function waitFor(client, event, match = () => true, timeout = DEADLINE) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { off(); reject(new Error(`no ${event} within ${timeout} ms`)); }, timeout);
    const off = client.on(event, (...args) => {
      if (match(...args)) {
        clearTimeout(timer);
        off();
        resolve(args);
      }
    });
  });
}
