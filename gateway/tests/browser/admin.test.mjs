// The admin page end to end in headless Chromium, driven by playwright-core (installed with the
// interop clients in ../interop/node_modules); WebSocket clients of the JSON protocol (the `ws`
// package from the same place) make the load and play the connections the page acts on.
//
//   node admin.test.mjs WS_BASE API_BASE ADMIN_SECRET OUT_DIR
//
// Checks: without the password the page is refused (401) and shows nothing; with it the page
// loads with no console error, no uncaught exception, no failed request and no CSP violation;
// the live numbers move while clients connect, publish and leave; the busiest channels and a
// channel's presence are listed; a disconnect from the page closes exactly the chosen
// connection with the chosen code; a publish from the page reaches a subscriber. Screenshots go
// to OUT_DIR. Prints `ok` last and exits 0 only if every check passed; every wait is bounded.

import { createRequire } from 'node:module';
import { mkdirSync } from 'node:fs';
import path from 'node:path';

const require = createRequire(new URL('../interop/package.json', import.meta.url));
const { chromium } = require('playwright-core');
const WebSocket = require('ws');

const [wsBase, apiBase, secret, outDir] = process.argv.slice(2);
if (!wsBase || !apiBase || !secret || !outDir) {
  console.error('usage: node admin.test.mjs WS_BASE API_BASE ADMIN_SECRET OUT_DIR');
  process.exit(2);
}

/** Bound for any single wait. */
const WAIT_MS = 10_000;
/** Bound for the whole run. */
const TOTAL_MS = 90_000;

let browser = null;
const sockets = [];
const overall = setTimeout(() => fail(new Error(`the run took longer than ${TOTAL_MS} ms`)), TOTAL_MS);

async function fail(err) {
  console.error(`FAILED: ${err && err.stack ? err.stack : err}`);
  if (problems.length > 0) console.error(`problems on the page:\n  ${problems.join('\n  ')}`);
  clearTimeout(overall);
  for (const s of sockets) s.terminate();
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

/** Resolve with `make()`'s value once it is truthy, polling; reject after WAIT_MS. */
async function until(what, make) {
  const end = Date.now() + WAIT_MS;
  for (;;) {
    const v = await make();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

// ---- clients of the JSON protocol -----------------------------------------------------------

/** A /ws client: resolves once welcomed, with its connection id, messages and close. */
function client(query = '') {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${wsBase}/ws${query}`);
    sockets.push(ws);
    const c = { ws, id: null, messages: [], closed: null, nextId: 1 };
    const timer = setTimeout(() => reject(new Error('no welcome in time')), WAIT_MS);
    ws.on('message', (raw) => {
      const m = JSON.parse(raw.toString());
      if (m.type === 'welcome') {
        c.id = m.conn;
        clearTimeout(timer);
        resolve(c);
      } else {
        c.messages.push(m);
      }
    });
    ws.on('close', (code, reason) => { c.closed = { code, reason: reason.toString() }; });
    ws.on('error', (e) => { clearTimeout(timer); reject(e); });
  });
}

function send(c, msg) {
  const id = c.nextId++;
  c.ws.send(JSON.stringify({ ...msg, id }));
  return id;
}

async function subscribe(c, channel) {
  const id = send(c, { op: 'subscribe', channel });
  await until(`${c.id} subscribed to ${channel}`,
    () => c.messages.find((m) => m.type === 'reply' && m.id === id && m.ok === true));
}

// ---- the page -------------------------------------------------------------------------------

/** Problems seen on the page: console errors, uncaught exceptions, failed loads, CSP reports. */
const problems = [];

async function openAdmin(credentials) {
  const context = await browser.newContext({
    viewport: { width: 1280, height: 1000 },
    ...(credentials ? { httpCredentials: credentials } : {}),
  });
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT_MS);
  // Playwright evaluates this before the page's own script, outside its CSP.
  await page.addInitScript(() => {
    window.cspViolations = [];
    document.addEventListener('securitypolicyviolation', (e) => {
      window.cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`);
    });
  });
  return { context, page };
}

function watch(page) {
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') problems.push(`console ${m.type()}: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`uncaught exception: ${e.message}`));
  page.on('response', (r) => {
    if (r.status() >= 400) problems.push(`${r.status()} for ${r.url()}`);
  });
  page.on('requestfailed', (r) => problems.push(`request failed: ${r.url()} ${r.failure()?.errorText}`));
}

async function tileValue(page, key) {
  return Number(await page.getAttribute(`#tiles .tile[data-key="${key}"]`, 'data-value'));
}

async function main() {
  mkdirSync(outDir, { recursive: true });
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run'],
    timeout: WAIT_MS * 3,
  });

  // Without the password, or with a wrong one: refused, nothing of the page shown. Headless
  // Chromium has no password prompt: it gives up on the navigation after the 401 challenge.
  for (const credentials of [null, { username: 'ops', password: `${secret}-wrong` }]) {
    const who = credentials ? 'a wrong password' : 'no password';
    const { context, page } = await openAdmin(credentials);
    const outcome = await page.goto(`${apiBase}/admin`).then(
      (r) => `status ${r && r.status()}`,
      (e) => (/ERR_INVALID_AUTH_CREDENTIALS/.test(e.message) ? 'refused' : e.message),
    );
    check(outcome === 'status 401' || outcome === 'refused', `with ${who}: ${outcome}`);
    // The error page may still be settling: read what shows once it has.
    const shown = await until(`the refused page (${who}) to settle`,
      () => page.content().catch(() => null));
    check(!shown.includes('Gateway admin'), `with ${who} nothing of the page shows`);
    const direct = await context.request.get(`${apiBase}/admin`, { maxRedirects: 0 });
    check(direct.status() === 401, `with ${who} GET /admin answers ${direct.status()}`);
    check((direct.headers()['www-authenticate'] ?? '').startsWith('Basic '), `with ${who}: a Basic challenge`);
    check(!(await direct.text()).includes('Gateway admin'), `with ${who} the body holds nothing of the page`);
    await context.close();
  }

  const { page } = await openAdmin({ username: 'ops', password: secret });
  watch(page);
  const r = await page.goto(`${apiBase}/admin`);
  check(r && r.status() === 200, `GET /admin answered ${r && r.status()}`);
  const csp = r.headers()['content-security-policy'] ?? '';
  check(csp.includes("default-src 'none'") && csp.includes("script-src 'self'") && !csp.includes('unsafe'),
    `the page carries a strict Content-Security-Policy: ${csp}`);
  await page.waitForSelector('#live-state[data-state="live"]');
  const nodeText = await page.textContent('#nodes tbody');
  check(nodeText.includes('(this node)'), `the node list shows this node: ${nodeText}`);
  check((await page.textContent('#broker')) === 'memory: up', 'the broker state is shown');

  // Load: subscribers on `load`, a publisher at ~50/s, connections coming and going.
  const subs = [];
  for (let i = 0; i < 4; i++) {
    const c = await client();
    await subscribe(c, 'load');
    subs.push(c);
  }
  const publisher = await client();
  let running = true;
  const load = (async () => {
    let n = 0;
    while (running) {
      send(publisher, { op: 'publish', channel: 'load', data: { n: n++ } });
      if (n % 10 === 0) {
        const churn = await client();
        churn.ws.close(1000);
      }
      await sleep(20);
    }
  })();
  // The numbers move: connections go up, and each rate becomes positive.
  await until('connections to reach 6 on the page', async () => (await tileValue(page, 'connections')) >= 6);
  for (const key of ['publishes', 'deliveries', 'messages_in', 'messages_out', 'connects', 'disconnects']) {
    await until(`the ${key} rate to move`, async () => (await tileValue(page, key)) > 0);
  }
  await until('1000 closes in the close table', () => page.$('#closes tr[data-code="1000"]'));
  // The chart grows by a point a second and rises off its baseline (y 58) while publishing.
  await until('the publishes chart to draw a rising line', async () => {
    const points = await page.getAttribute('#tiles .tile[data-key="publishes"] polyline', 'points');
    const ys = (points ?? '').split(' ').map((p) => Number(p.split(',')[1]));
    return ys.length >= 3 && ys.some((y) => y < 50);
  });
  const shotLive = path.join(outDir, 'admin-live.png');
  await page.screenshot({ path: shotLive, fullPage: true });
  console.log(`screenshot ${shotLive}`);
  running = false;
  await load;

  // Channels: `load` is the busiest, with its 4 subscribers.
  await page.click('#channels-refresh');
  await page.waitForSelector('#channels tr[data-channel="load"]');
  const loadRow = await page.textContent('#channels tr[data-channel="load"]');
  check(loadRow.includes('4'), `the load channel shows 4 subscribers: ${loadRow}`);
  const first = await page.getAttribute('#channels tbody tr:first-child', 'data-channel');
  check(first === 'load', `the busiest channel is listed first (got ${first})`);

  // Disconnect from the page: the victim, found through its channel's presence, gets the code;
  // the bystander in the same channel stays connected.
  const victim = await client('?user=victim');
  const bystander = await client('?user=bystander');
  await subscribe(victim, 'ops:room');
  await subscribe(bystander, 'ops:room');
  await page.fill('#channel-name', 'ops:room');
  await page.click('#channel-show');
  await page.waitForSelector(`#presence tr[data-conn="${victim.id}"]`);
  await page.waitForSelector(`#presence tr[data-conn="${bystander.id}"]`);
  check((await page.textContent('#history-state')) === 'this channel keeps no history',
    'a channel without history says so');
  // Look the victim up by user: its connection and channels are listed.
  await subscribe(victim, 'ops:other');
  await page.fill('#lookup-target', 'victim');
  await page.selectOption('#lookup-kind', 'user');
  await page.click('#lookup');
  await page.waitForSelector(`#lookup-conns tr[data-conn="${victim.id}"]`);
  const victimRow = await page.textContent(`#lookup-conns tr[data-conn="${victim.id}"]`);
  check(victimRow.includes('ops:room') && victimRow.includes('ops:other'),
    `the lookup lists the victim's channels: ${victimRow}`);
  check((await page.$$('#lookup-conns tbody tr')).length === 1, 'the lookup lists only the victim');
  await page.click(`#presence tr[data-conn="${victim.id}"] button`);
  check((await page.inputValue('#disconnect-target')) === victim.id, 'the picked connection fills the form');
  await page.fill('#disconnect-code', '4123');
  await page.fill('#disconnect-reason', 'operator test');
  await page.click('#disconnect');
  await page.waitForSelector('#disconnect-result[data-ok="true"]');
  await until('the victim to be closed', () => victim.closed);
  check(victim.closed.code === 4123, `the victim saw close ${victim.closed.code}`);
  check(victim.closed.reason === 'operator test', `the victim saw reason ${victim.closed.reason}`);
  await sleep(200);
  check(bystander.closed === null, 'the bystander is still connected');

  // History: a channel with history (`--history hist:=...`) lists what was published.
  await page.fill('#publish-channel', 'hist:demo');
  await page.fill('#publish-data', '{"build":"1.2.3"}');
  await page.click('#publish');
  await page.waitForSelector('#publish-result[data-ok="true"]');

  // Publish from the page reaches a subscriber.
  const listener = await client();
  await subscribe(listener, 'deploy:check');
  await page.fill('#publish-channel', 'deploy:check');
  await page.fill('#publish-data', '{"hello":"ops"}');
  await page.click('#publish');
  await page.waitForSelector('#publish-result[data-ok="true"]');
  const got = await until('the publish to reach the subscriber',
    () => listener.messages.find((m) => m.type === 'message' && m.channel === 'deploy:check'));
  check(JSON.stringify(got.data) === '{"hello":"ops"}', `the subscriber got ${JSON.stringify(got.data)}`);

  await page.fill('#channel-name', 'hist:demo');
  await page.click('#channel-show');
  await until('the history to list the publication', async () =>
    (await page.textContent('#history')).includes('"build":"1.2.3"'));

  // A bad publish is explained on the page, not thrown.
  await page.fill('#publish-channel', 'bad channel!');
  await page.click('#publish');
  await page.waitForSelector('#publish-result[data-ok="false"]');
  check((await page.textContent('#publish-result')).includes('bad_channel'), 'a bad channel is explained');
  // Two answers above are errors on purpose: the history of a channel without history (404)
  // and the bad channel (400). The browser reports each once as a response and once on the
  // console; nothing else may be there.
  const meant = [
    /^404 for .*\/admin\/api\/history\?channel=ops%3Aroom&limit=50$/,
    /^400 for .*\/admin\/api\/publish$/,
  ];
  const meantConsole = /^console error: Failed to load resource: the server responded with a status of (400|404)/;
  const unexpected = problems.filter((p) => !meant.some((re) => re.test(p)) && !meantConsole.test(p));
  check(problems.filter((p) => meantConsole.test(p)).length <= meant.length,
    `more failed loads on the console than the test caused:\n  ${problems.join('\n  ')}`);
  problems.splice(0, problems.length, ...unexpected);

  const shotForms = path.join(outDir, 'admin-channels.png');
  await page.screenshot({ path: shotForms, fullPage: true });
  console.log(`screenshot ${shotForms}`);

  const violations = await page.evaluate(() => window.cspViolations);
  check(violations.length === 0, `CSP violations: ${violations.join(', ')}`);
  check(problems.length === 0, `problems on the page:\n  ${problems.join('\n  ')}`);
  for (const s of sockets) s.terminate();
  await browser.close();
  browser = null;
  clearTimeout(overall);
  console.log('ok');
}

main().catch(fail);
