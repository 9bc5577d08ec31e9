// The chat page with the connect hook in headless Chromium (playwright-core from
// ../interop/node_modules), against the example backend (deploy/examples/hooks-backend/app.py).
//
//   node hooks.test.mjs GATEWAY_URL BACKEND_URL
//
// 1. A page from another origin (127.0.0.1 on another port, served by this script) opens a
//    WebSocket to the gateway with the user's session cookie: it must not open. The script then
//    prints `checkpoint` and waits for `checked` on stdin while the parent looks at the metrics
//    (the backend must not have been asked).
// 2. Without a session the chat page cannot connect.
// 3. ann and bob log in at the backend (a `session` cookie), open the chat page, join a room:
//    the gateway asks the backend, which names the user; each sees the other; a message arrives.
// Prints `ok` last; every wait is bounded.

import { createRequire } from 'node:module';
import http from 'node:http';
import readline from 'node:readline';

const require = createRequire(new URL('../interop/package.json', import.meta.url));
const { chromium } = require('playwright-core');

const [gateway, backend] = process.argv.slice(2);
const WAIT_MS = 10_000;
const ROOM = 'hooked-lobby';
let browser = null;
const overall = setTimeout(() => fail(new Error('the run took longer than 60 s')), 60_000);

async function fail(err) {
  console.error(`FAILED: ${err && err.stack ? err.stack : err}`);
  clearTimeout(overall);
  try {
    if (browser) await Promise.race([browser.close(), new Promise((r) => setTimeout(r, 5000))]);
  } finally {
    process.exit(1);
  }
}

function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
}

const stdin = readline.createInterface({ input: process.stdin });
const lines = [];
let waiter = null;
stdin.on('line', (l) => (waiter ? (waiter(l), (waiter = null)) : lines.push(l)));
function nextLine() {
  if (lines.length) return Promise.resolve(lines.shift());
  return new Promise((resolve, reject) => {
    waiter = resolve;
    setTimeout(() => reject(new Error('no answer from the parent')), 30_000);
  });
}

async function loggedIn(user) {
  const context = await browser.newContext();
  if (user) {
    const r = await context.request.post(`${backend}/login`, { data: { user } });
    check(r.ok(), `login of ${user}: ${r.status()}`);
    const cookies = await context.cookies(gateway);
    check(cookies.some((c) => c.name === 'session'), `${user} has a session cookie for the gateway's host`);
  }
  return context;
}

async function chat(context, nick) {
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT_MS);
  await page.goto(`${gateway}/`);
  await page.fill('#nick', nick);
  await page.fill('#room', ROOM);
  await page.click('#join');
  return page;
}

async function members(page, want) {
  await page.waitForFunction(
    (w) => JSON.stringify([...document.querySelectorAll('#members li[data-conn]')]
      .map((li) => li.dataset.user ?? '').sort()) === JSON.stringify(w),
    [...want].sort(),
    { timeout: WAIT_MS },
  );
}

async function main() {
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run'],
    timeout: WAIT_MS * 3,
  });

  // 1. Cross-site WebSocket hijacking attempt, with a valid session cookie.
  const victim = await loggedIn('mallory');
  const evil = await victim.newPage();
  // Another origin on the same host (a server of this script on another port), so the
  // browser's own local-network rules let the request through and the gateway must refuse it.
  const site = http.createServer((req, res) => {
    res.setHeader('Content-Type', 'text/html');
    res.end('<!doctype html><title>elsewhere</title>');
  });
  await new Promise((resolve) => site.listen(0, '127.0.0.1', resolve));
  await evil.goto(`http://127.0.0.1:${site.address().port}/`);
  const outcome = await evil.evaluate((url) => new Promise((resolve) => {
    const ws = new WebSocket(url);
    ws.onopen = () => resolve('open');
    ws.onerror = () => resolve('refused');
    setTimeout(() => resolve('timeout'), 5000);
  }), `${gateway.replace('http', 'ws')}/ws`);
  check(outcome === 'refused', `a page from another origin could not connect (got ${outcome})`);
  site.close();
  console.log('checkpoint');
  check((await nextLine()) === 'checked', 'the parent checked the backend was not asked');

  // 2. No session: the page never connects.
  const stranger = await chat(await loggedIn(null), 'stranger');
  await new Promise((r) => setTimeout(r, 1500));
  const state = await stranger.getAttribute('#state', 'data-state');
  check(state !== 'open', `without a session the chat page stays unconnected (state ${state})`);

  // 3. Logged in: the backend names the user; the room works.
  const ann = await chat(await loggedIn('ann'), 'nick-a');
  const bob = await chat(await loggedIn('bob'), 'nick-b');
  for (const p of [ann, bob]) {
    await p.waitForSelector('#state[data-state="open"]', { timeout: WAIT_MS });
    await members(p, ['ann', 'bob']);
  }
  await ann.fill('#text', 'hello from ann');
  await ann.click('#send');
  await bob.waitForFunction(() => [...document.querySelectorAll('#log li[data-kind="room"]')]
    .some((li) => li.querySelector('.text')?.textContent === 'hello from ann'
      && li.querySelector('.who')?.textContent === 'ann'), null, { timeout: WAIT_MS });

  await browser.close();
  clearTimeout(overall);
  console.log('ok');
  process.exit(0);
}

main().catch(fail);
