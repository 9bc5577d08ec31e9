// The chat page end to end in headless Chromium, driven by playwright-core (installed with the
// interop clients in ../interop/node_modules).
//
//   node chat.test.mjs http://127.0.0.1:PORT OUT_DIR
//   node chat.test.mjs http://127.0.0.1:PORT OUT_DIR http://127.0.0.1:OTHER_PORT
//
// With a second address (another node of the same deployment), two pages on the two nodes join
// one room instead: members, room and private messages and a departure must cross nodes.
//
// Three pages (a, b, c) join one room; messages, a private message and a departure are checked
// on every page. The gateway is restarted in the middle by the parent process: this script
// prints `stop-gateway` / `start-gateway` on stdout and waits for `stopped` / `started` on stdin.
// Screenshots go to OUT_DIR. Prints `ok` last and exits 0 only if every check passed; every wait
// is bounded, so a broken server fails the run instead of hanging it.

import { createRequire } from 'node:module';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';

const require = createRequire(new URL('../interop/package.json', import.meta.url));
const { chromium } = require('playwright-core');

const [base, outDir, otherBase] = process.argv.slice(2);
if (!base || !outDir) {
  console.error('usage: node chat.test.mjs BASE_URL OUT_DIR');
  process.exit(2);
}

/** Bound for any single wait on the page or the parent. */
const WAIT_MS = 10_000;
/** Bound for the whole run. */
const TOTAL_MS = 100_000;
const ROOM = 'e2e-lobby';

let browser = null;
const overall = setTimeout(() => fail(new Error(`the run took longer than ${TOTAL_MS} ms`)), TOTAL_MS);

async function fail(err) {
  console.error(`FAILED: ${err && err.stack ? err.stack : err}`);
  if (problems.length > 0) console.error(`problems on the pages:\n  ${problems.join('\n  ')}`);
  clearTimeout(overall);
  try {
    if (browser) await Promise.race([browser.close(), sleep(5000)]);
  } finally {
    process.exit(1);
  }
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
}

// ---- talking to the parent (which owns the gateway process) ---------------------------------

const stdinLines = readline.createInterface({ input: process.stdin });
const received = [];
let lineWaiter = null;
stdinLines.on('line', (line) => {
  if (lineWaiter) {
    const w = lineWaiter;
    lineWaiter = null;
    w(line);
  } else {
    received.push(line);
  }
});

async function control(command, answer) {
  console.log(command);
  let timer = 0;
  const line = received.length > 0
    ? received.shift()
    : await new Promise((resolve, reject) => {
      lineWaiter = resolve;
      timer = setTimeout(() => reject(new Error(`no answer to ${command} within 30 s`)), 30_000);
    }).finally(() => clearTimeout(timer));
  check(line === answer, `parent answered ${JSON.stringify(line)} to ${command}, expected ${answer}`);
}

// ---- pages ----------------------------------------------------------------------------------

/** Problems seen on any page: console errors, uncaught exceptions, failed loads, dialogs. */
const problems = [];
/** While the gateway is down, the browser's own "WebSocket connection failed" lines are expected. */
let gatewayDown = false;

/** Per page: the Sec-WebSocket-Extensions of each WebSocket handshake (request and response). */
const handshakes = {};

async function openPage(ctxOptions, name, url = base) {
  const context = await browser.newContext(ctxOptions);
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT_MS);
  // The DevTools protocol shows the handshake headers (the page's own socket is not reachable).
  const cdp = await context.newCDPSession(page);
  await cdp.send('Network.enable');
  handshakes[name] = [];
  const extensions = (headers) => Object.entries(headers ?? {})
    .filter(([k]) => k.toLowerCase() === 'sec-websocket-extensions')
    .map(([, v]) => v)
    .join(', ');
  cdp.on('Network.webSocketHandshakeResponseReceived', (e) => {
    handshakes[name].push({
      status: e.response.status,
      offered: extensions(e.response.requestHeaders),
      accepted: extensions(e.response.headers),
    });
  });
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    const text = m.text();
    if (gatewayDown && /^WebSocket connection to '.*' failed/.test(text)) return;
    problems.push(`${name}: console error: ${text}`);
  });
  page.on('pageerror', (e) => problems.push(`${name}: uncaught exception: ${e.message}`));
  page.on('dialog', (d) => {
    problems.push(`${name}: a dialog opened (${d.message()}): injected script ran`);
    d.dismiss().catch(() => {});
  });
  page.on('response', (r) => {
    if (r.status() >= 400) problems.push(`${name}: ${r.status()} for ${r.url()}`);
  });
  page.on('requestfailed', (r) => {
    if (r.resourceType() !== 'websocket') {
      problems.push(`${name}: request failed: ${r.url()} ${r.failure()?.errorText}`);
    }
  });
  const response = await page.goto(`${url}/`, { timeout: WAIT_MS });
  check(response && response.status() === 200, `${name}: GET / answered 200`);
  check(
    (response.headers()['content-security-policy'] ?? '').includes("default-src 'none'"),
    `${name}: the page carries its Content-Security-Policy`,
  );
  return { name, page };
}

async function join(p, nick) {
  await p.page.fill('#nick', nick);
  await p.page.fill('#room', ROOM);
  await p.page.click('#join');
  await waitState(p, 'open');
}

async function waitState(p, state) {
  await p.page.waitForSelector(`#state[data-state="${state}"]`, { timeout: WAIT_MS })
    .catch(async (e) => {
      const now = await p.page.textContent('#state').catch(() => '?');
      throw new Error(`${p.name}: connection state never became ${state} (shows "${now}"): ${e.message}`);
    });
}

/** Wait until the member list holds exactly `users` (self included). */
async function waitMembers(p, users) {
  const want = [...users].sort();
  try {
    await p.page.waitForFunction(
      (w) => {
        const got = [...document.querySelectorAll('#members li[data-conn]')]
          .map((li) => li.dataset.user ?? '')
          .sort();
        return JSON.stringify(got) === JSON.stringify(w);
      },
      want,
      { timeout: WAIT_MS },
    );
  } catch {
    const got = await memberUsers(p);
    throw new Error(`${p.name}: member list is ${JSON.stringify(got)}, expected ${JSON.stringify(want)}`);
  }
}

async function memberUsers(p) {
  return p.page.$$eval('#members li[data-conn]', (lis) => lis.map((li) => li.dataset.user ?? ''));
}

/** The log entries of `kind` as {who, text, status}. */
async function entries(p, kind) {
  return p.page.$$eval(`#log li[data-kind="${kind}"]`, (lis) => lis.map((li) => ({
    who: li.querySelector('.who')?.textContent ?? '',
    text: li.querySelector('.text')?.textContent ?? '',
    status: li.dataset.status ?? '',
  })));
}

/** Wait for a log entry of `kind` with exactly `text` (and `who`, if given); returns it. */
async function waitEntry(p, kind, text, who) {
  try {
    await p.page.waitForFunction(
      ([k, t, w]) => [...document.querySelectorAll(`#log li[data-kind="${k}"]`)].some((li) =>
        li.querySelector('.text')?.textContent === t
        && (w === null || li.querySelector('.who')?.textContent === w)
        && li.dataset.status === undefined),
      [kind, text, who ?? null],
      { timeout: WAIT_MS },
    );
  } catch {
    const log = await entries(p, kind);
    throw new Error(`${p.name}: no settled ${kind} entry ${JSON.stringify({ who, text })} in ${JSON.stringify(log)}`);
  }
}

async function say(p, text, { enter = false } = {}) {
  await p.page.fill('#text', text);
  if (enter) {
    await p.page.press('#text', 'Enter');
  } else {
    await p.page.click('#send');
  }
}

/** Every visible input has a label and every visible button a name (what a screen reader says). */
async function checkLabels(p) {
  const unnamed = await p.page.evaluate(() => {
    const bad = [];
    for (const el of document.querySelectorAll('input, button')) {
      if (el.offsetParent === null) continue;
      const name = el.tagName === 'INPUT'
        ? [...el.labels].map((l) => l.textContent.trim()).join(' ')
        : (el.getAttribute('aria-label') ?? el.textContent).trim();
      if (!name) bad.push(el.outerHTML.slice(0, 80));
    }
    return bad;
  });
  check(unnamed.length === 0, `${p.name}: controls without an accessible name: ${unnamed.join(', ')}`);
}

// ---- the scenario ---------------------------------------------------------------------------

async function launch() {
  mkdirSync(outDir, { recursive: true });
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run'],
    timeout: WAIT_MS * 3,
  });
}

async function finish() {
  check(problems.length === 0, `problems on the pages:\n  ${problems.join('\n  ')}`);
  await browser.close();
  browser = null;
  clearTimeout(overall);
  stdinLines.close();
  console.log('ok');
}

/** Two pages on two nodes of one deployment: everything the room does crosses nodes. */
async function twoNodes() {
  await launch();
  const desktop = { viewport: { width: 1200, height: 900 } };
  const a = await openPage(desktop, 'a', base);
  const b = await openPage(desktop, 'b', otherBase);
  await join(a, 'a');
  await join(b, 'b');
  for (const p of [a, b]) await waitMembers(p, ['a', 'b']);

  await say(a, 'hello from the first node');
  await waitEntry(b, 'room', 'hello from the first node', 'a');
  await waitEntry(a, 'room', 'hello from the first node', 'a');
  await say(b, 'hello from the second node', { enter: true });
  await waitEntry(a, 'room', 'hello from the second node', 'b');
  const mine = (await entries(a, 'room')).filter((e) => e.text === 'hello from the first node');
  check(mine.length === 1, `a: its own message shows ${mine.length} times: ${JSON.stringify(await entries(a, 'room'))}`);

  // A private message to a connection on the other node.
  await a.page.click('#members li[data-user="b"] button');
  const secret = 'psst b, across nodes';
  await say(a, secret, { enter: true });
  await waitEntry(a, 'private', secret, 'you \u2192 b');
  await waitEntry(b, 'private', secret, 'a \u2192 you');
  await a.page.click('#target-clear');

  // B leaves: gone from A's list, and A says so.
  await b.page.click('#leave');
  await waitState(b, 'closed');
  await waitMembers(a, ['a']);
  await waitEntry(a, 'system', 'b left', null);
  await finish();
}

async function main() {
  await launch();
  const desktop = { viewport: { width: 1200, height: 900 } };
  const phone = { viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true };
  const a = await openPage(desktop, 'a');
  const b = await openPage(phone, 'b');
  const c = await openPage(desktop, 'c');
  await checkLabels(a);

  // Join, and see each other.
  await join(a, 'a');
  await join(b, 'b');
  await join(c, 'c');
  for (const p of [a, b, c]) await waitMembers(p, ['a', 'b', 'c']);
  await checkLabels(a);
  for (const p of [a, b, c]) {
    const self = await p.page.$eval('#members li[data-self]', (li) => li.dataset.user ?? '')
      .catch(() => null);
    check(self === p.name, `${p.name}: marks itself in the member list (found ${self})`);
  }

  // A room message (markup in it must stay text) reaches the others, and shows once on A.
  const hello = 'hello from a <img src=x onerror=alert(1)><script>alert(2)</script>';
  await say(a, hello);
  await waitEntry(a, 'room', hello, 'a');
  await waitEntry(b, 'room', hello, 'a');
  await waitEntry(c, 'room', hello, 'a');
  for (const p of [a, b, c]) {
    const injected = await p.page.$$eval('#log img, #log script', (els) => els.length);
    check(injected === 0, `${p.name}: message text was parsed as markup`);
  }

  // A private message from A to B: on A and B, never on C.
  await a.page.click('#members li[data-user="b"] button');
  check(await a.page.isVisible('#target'), 'a: the private target is shown');
  check((await a.page.textContent('#target-name')) === 'b', 'a: the private target is b');
  const secret = 'psst b, only you can read this';
  await say(a, secret, { enter: true });
  await waitEntry(a, 'private', secret, 'you \u2192 b');
  await waitEntry(b, 'private', secret, 'a \u2192 you');
  // Back to the room; once C has A's next room message, the private one would have been there.
  await a.page.click('#target-clear');
  check(!(await a.page.isVisible('#target')), 'a: back to the room');
  await say(a, 'after the private one');
  await waitEntry(c, 'room', 'after the private one', 'a');
  await waitEntry(b, 'room', 'after the private one', 'a');
  const leaked = (await c.page.$$eval('#log li', (lis) => lis.map((li) => li.textContent)))
    .filter((t) => t.includes('psst'));
  check(leaked.length === 0, `c: the private message leaked to c: ${JSON.stringify(leaked)}`);
  check((await entries(c, 'private')).length === 0, 'c: no private entry on c');
  // skip_self: A shows each of its room messages exactly once.
  const mine = (await entries(a, 'room')).filter((e) => e.text === hello);
  check(mine.length === 1, `a: its own message shows ${mine.length} times`);

  // C leaves: gone from A's and B's lists.
  await c.page.click('#leave');
  await waitState(c, 'closed');
  await waitMembers(a, ['a', 'b']);
  await waitMembers(b, ['a', 'b']);
  await waitEntry(a, 'system', 'c left', null);
  check(await c.page.isVisible('#join-form'), 'c: the join form is back after leaving');

  // The room keeps history (--history room:=...): C comes back and sees the recent room messages,
  // in order, marked as history, without the private one; live messages follow as before.
  await say(a, 'while c was away');
  await waitEntry(b, 'room', 'while c was away', 'a');
  await join(c, 'c');
  const recent = [hello, 'after the private one', 'while c was away'];
  try {
    await c.page.waitForFunction(
      (want) => JSON.stringify([...document.querySelectorAll('#log li[data-status="history"]')]
        .map((li) => li.querySelector('.text')?.textContent)) === JSON.stringify(want),
      recent,
      { timeout: WAIT_MS },
    );
  } catch {
    throw new Error(`c: history on join is ${JSON.stringify(await entries(c, 'room'))}`);
  }
  const past = (await entries(c, 'room')).filter((e) => e.status === 'history');
  check(past.every((e) => e.who === 'a'), `c: history entries name their sender: ${JSON.stringify(past)}`);
  check((await entries(c, 'private')).length === 0, 'c: history holds no private message');
  for (const p of [a, b, c]) await waitMembers(p, ['a', 'b', 'c']);
  await say(b, 'welcome back c');
  await waitEntry(c, 'room', 'welcome back c', 'b');
  await c.page.click('#leave');
  await waitState(c, 'closed');
  await waitMembers(a, ['a', 'b']);

  // The gateway restarts: both pages say so, reconnect with backoff and join the room again.
  gatewayDown = true;
  await control('stop-gateway', 'stopped');
  for (const p of [a, b]) {
    await waitState(p, 'reconnecting');
    const text = await p.page.textContent('#state');
    check(/^reconnecting in \d+s \(last close \d{4}/.test(text), `${p.name}: state reads "${text}"`);
  }
  await control('start-gateway', 'started');
  for (const p of [a, b]) await waitState(p, 'open');
  gatewayDown = false;
  await waitMembers(a, ['a', 'b']);
  await waitMembers(b, ['a', 'b']);
  await say(b, 'b is back');
  await waitEntry(a, 'room', 'b is back', 'b');
  await say(a, 'so is a');
  await waitEntry(b, 'room', 'so is a', 'a');
  await waitEntry(a, 'room', 'so is a', 'a');

  // Screenshots to look at: the desktop layout (a) and the phone layout (b).
  await a.page.click('#members li[data-user="b"] button');
  const shotA = path.join(outDir, 'chat-a-1200x900.png');
  const shotB = path.join(outDir, 'chat-b-phone.png');
  await a.page.screenshot({ path: shotA });
  await b.page.screenshot({ path: shotB });
  console.log(`screenshot ${shotA}`);
  console.log(`screenshot ${shotB}`);

  // Nothing on the phone width may overflow sideways.
  const overflow = await b.page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check(overflow <= 0, `b: the phone layout is ${overflow}px wider than the screen`);

  // Chromium offers permessage-deflate on every connection; the gateway accepts it (both sides
  // without context takeover), on the first connection and after a reconnect alike.
  for (const [name, list] of Object.entries(handshakes)) {
    const upgraded = list.filter((h) => h.status === 101);
    check(upgraded.length >= 1, `${name}: saw no WebSocket handshake`);
    for (const h of upgraded) {
      check(/permessage-deflate/.test(h.offered), `${name}: the browser offered ${JSON.stringify(h.offered)}`);
      check(
        h.accepted === 'permessage-deflate; server_no_context_takeover; client_no_context_takeover',
        `${name}: the gateway answered ${JSON.stringify(h.accepted)}`,
      );
    }
  }

  await finish();
}

(otherBase ? twoNodes() : main()).catch(fail);
