// The chat page over https:// (and its WebSocket over wss://) in headless Chromium, against a
// gateway with --tls-cert whose leaf was signed by a test CA. Chromium trusts exactly that leaf's
// public key (--ignore-certificate-errors-spki-list), not any certificate: a page served with
// another key would fail to load.
//
//   node tls.test.mjs https://localhost:PORT SPKI_SHA256_BASE64
//
// Two pages join one room; a message from one shows on both. Prints `ok` last and exits 0 only
// if every check passed; every wait is bounded.

import { createRequire } from 'node:module';

const require = createRequire(new URL('../interop/package.json', import.meta.url));
const { chromium } = require('playwright-core');

const [base, spki] = process.argv.slice(2);
if (!base || !spki) {
  console.error('usage: node tls.test.mjs BASE_URL SPKI_SHA256_BASE64');
  process.exit(2);
}

const WAIT_MS = 10_000;
const TOTAL_MS = 60_000;
const ROOM = 'tls-lobby';

let browser = null;
const problems = [];
const overall = setTimeout(() => fail(new Error(`the run took longer than ${TOTAL_MS} ms`)), TOTAL_MS);

async function fail(err) {
  console.error(`FAILED: ${err && err.stack ? err.stack : err}`);
  if (problems.length > 0) console.error(`problems on the pages:\n  ${problems.join('\n  ')}`);
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

async function openPage(name) {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT_MS);
  const sockets = [];
  page.on('websocket', (ws) => sockets.push(ws.url()));
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(`${name}: console error: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`${name}: uncaught exception: ${e.message}`));
  page.on('requestfailed', (r) => problems.push(`${name}: request failed: ${r.url()} ${r.failure()?.errorText}`));
  const response = await page.goto(`${base}/`, { timeout: WAIT_MS });
  check(response && response.status() === 200, `${name}: GET / over https answered 200`);
  const security = await response.securityDetails();
  check(security !== null, `${name}: the page came over TLS`);
  check(/^TLS 1\.[23]$/.test(security.protocol), `${name}: TLS 1.2 or 1.3 (got ${security.protocol})`);
  check(security.subjectName === 'leaf', `${name}: the test leaf (got ${security.subjectName})`);
  return { name, page, sockets };
}

async function join(p, nick) {
  await p.page.fill('#nick', nick);
  await p.page.fill('#room', ROOM);
  await p.page.click('#join');
  await p.page.waitForSelector('#state[data-state="open"]', { timeout: WAIT_MS });
  check(p.sockets.some((u) => u.startsWith('wss://')), `${p.name}: the page's WebSocket is wss:// (${p.sockets})`);
}

async function waitEntry(p, text, who) {
  await p.page.waitForFunction(
    ([t, w]) => [...document.querySelectorAll('#log li[data-kind="room"]')].some((li) =>
      li.querySelector('.text')?.textContent === t
      && li.querySelector('.who')?.textContent === w
      && li.dataset.status === undefined),
    [text, who],
    { timeout: WAIT_MS },
  );
}

async function main() {
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run',
      `--ignore-certificate-errors-spki-list=${spki}`],
    timeout: WAIT_MS * 3,
  });
  const a = await openPage('a');
  const b = await openPage('b');
  await join(a, 'a');
  await join(b, 'b');
  const hello = 'hello over wss';
  await a.page.fill('#text', hello);
  await a.page.click('#send');
  await waitEntry(a, hello, 'a');
  await waitEntry(b, hello, 'a');
  check(problems.length === 0, `no problems on the pages: ${problems.join('; ')}`);
  await browser.close();
  clearTimeout(overall);
  console.log('ok');
}

main().catch(fail);
