// The classic Socket.IO chat page (chat.html, a fixture) in two tabs of headless Chromium,
// driven by playwright-core (from ../interop/node_modules). The page is served by this script
// at the gateway's own origin (so `io.connect()` finds the gateway and the page loads the
// gateway's /socket.io/socket.io.js); everything else goes to the real gateway.
//
//   node browser.mjs http://127.0.0.1:PORT
//
// Prints `ok` and exits 0 when every check passed; every wait is bounded.
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";

const require = createRequire(new URL("../interop/package.json", import.meta.url));
const { chromium } = require("playwright-core");

const base = process.argv[2];
const WAIT_MS = 10_000;
const page_html = readFileSync(new URL("chat.html", import.meta.url), "utf8");
const overall = setTimeout(() => {
  console.error("the run took longer than 60 s");
  process.exit(1);
}, 60_000);

function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
}

async function items(page) {
  return page.$$eval("#messages li", (lis) => lis.map((li) => li.textContent));
}

async function waitForItem(page, text) {
  await page.waitForFunction(
    (t) => [...document.querySelectorAll("#messages li")].some((li) => li.textContent === t),
    text,
    { timeout: WAIT_MS },
  );
}

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  // A page fulfilled by the script has no network origin of its own: Chromium would then count
  // it as public and refuse its requests to loopback (Local Network Access).
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
    "--disable-features=LocalNetworkAccessChecks",
  ],
  timeout: WAIT_MS * 3,
});
try {
  const context = await browser.newContext();
  await context.route(`${base}/chat.html`, (route) =>
    route.fulfill({ status: 200, contentType: "text/html", body: page_html }),
  );
  const errors = [];
  async function open() {
    const page = await context.newPage();
    page.on("pageerror", (e) => errors.push(String(e)));
    page.on("console", (m) => console.error(`console: ${m.text()}`));
    page.on("requestfailed", (r) => console.error(`request failed: ${r.url()} ${r.failure()?.errorText}`));
    await page.goto(`${base}/chat.html`);
    await page.waitForFunction(() => document.getElementById("me").textContent !== "", null, {
      timeout: WAIT_MS,
    });
    // The session started over long-polling (the default) and moved to the WebSocket.
    await page.waitForFunction(() => window.socket.io.engine.transport.name === "websocket", null, {
      timeout: WAIT_MS,
    });
    return page;
  }
  const a = await open();
  const b = await open();
  const aId = await a.textContent("#me");
  const bId = await b.textContent("#me");
  check(aId !== bId, "two sockets");

  // Chat: both tabs see a message typed in one.
  await a.fill("#input", "hello from a");
  await a.click("form#form button");
  await waitForItem(a, "hello from a");
  await waitForItem(b, "hello from a");

  // Rooms: a joins (acked), b sends to the room; only a gets it.
  await a.fill("#room", "lobby");
  await a.click("#join");
  await waitForItem(a, "joined lobby");
  await b.evaluate(() => window.sendToRoom("lobby", "for the lobby"));
  await waitForItem(a, "room: for the lobby");

  // Privately: b to a, with b's id attached.
  await b.fill("#to", aId);
  await b.fill("#private", "psst");
  await b.click("#send-private");
  await waitForItem(a, `private from ${bId}: psst`);

  // A last broadcast: once b has it, b would have had the earlier ones.
  await a.fill("#input", "last");
  await a.click("form#form button");
  await waitForItem(b, "last");
  const bGot = await items(b);
  check(!bGot.some((t) => t.startsWith("room:")), `b is not in the room: ${bGot}`);
  check(!bGot.some((t) => t.startsWith("private")), `b got no private message: ${bGot}`);
  check(errors.length === 0, `page errors: ${errors}`);
  console.log("ok");
} catch (e) {
  console.error(`FAILED: ${e.stack || e}`);
  process.exitCode = 1;
} finally {
  clearTimeout(overall);
  await browser.close();
}
