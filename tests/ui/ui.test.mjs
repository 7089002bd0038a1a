// The admin web page in headless Chromium (Debian's, never a downloaded one), driven by Playwright.
// tests/it/web_ui.rs starts the gateways and the app, sets the scene and runs this file with:
//   HG_ADMIN, HG_TOKEN        a gateway whose API needs the token, sources billing (4 dead letters:
//                             dead-1..dead-4) and orders (order-1..3, xss-1, binary-1, delivered)
//   HG_OPEN_ADMIN             a gateway without a token (source open)
//   HG_WEBHOOK, HG_GITHUB_SECRET  the first gateway's webhook listener and its sources' secret
//   HG_XSS_HEADER             the x-note header value of xss-1
//   HG_SCREENSHOTS            where each test saves its screenshot
// The tests run in order (the dead-letter tests change the scene) and each waits with a bound.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { chromium } from "playwright-core";

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set: run these tests through cargo test (tests/it/web_ui.rs)`);
  return v;
};
const ADMIN = env("HG_ADMIN");
const OPEN_ADMIN = env("HG_OPEN_ADMIN");
const WEBHOOK = env("HG_WEBHOOK");
const TOKEN = env("HG_TOKEN");
const SECRET = env("HG_GITHUB_SECRET");
const XSS_HEADER = env("HG_XSS_HEADER");
const SHOTS = env("HG_SCREENSHOTS");

const CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
  "frame-ancestors 'none'; base-uri 'none'; form-action 'self'";
const WAIT_MS = 15000;
const LAPTOP = { width: 1280, height: 860 };
const PHONE = { width: 390, height: 844 };

const profiles = [];
const contexts = [];
// A failed test leaves its browser open: close every one, or node would not exit.
after(async () => {
  for (const context of contexts) await context.close().catch(() => {});
  for (const dir of profiles) await rm(dir, { recursive: true, force: true });
});

/// A fresh browser with a fresh profile, one page, and a record of its console errors.
async function open(viewport = LAPTOP) {
  const profile = await mkdtemp(path.join(tmpdir(), "hookgate-ui-"));
  profiles.push(profile);
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: "/usr/bin/chromium",
    headless: true,
    viewport,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  contexts.push(context);
  const page = context.pages()[0] || (await context.newPage());
  const errors = [];
  const dialogs = [];
  page.on("console", (m) => {
    if (m.type() === "error") errors.push(m.text());
  });
  page.on("pageerror", (e) => errors.push("uncaught: " + e.message));
  page.on("dialog", async (d) => {
    dialogs.push(d.message());
    await d.dismiss();
  });
  return { context, page, errors, dialogs };
}

/// Saves the screenshot, checks the console stayed clean (but for `allowed` messages), closes.
async function finish(t, { context, page, errors }, name, allowed = []) {
  try {
    await page.screenshot({ path: path.join(SHOTS, name + ".png"), fullPage: true });
    const unexpected = errors.filter((e) => !allowed.some((re) => re.test(e)));
    assert.deepEqual(unexpected, [], `console errors on ${name}`);
  } finally {
    await context.close();
  }
}

/// Polls `check` until it returns a truthy value; fails with `what` after WAIT_MS.
async function until(what, check) {
  const deadline = Date.now() + WAIT_MS;
  let last;
  for (;;) {
    try {
      last = await check();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what} (last: ${last})`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function signIn(page) {
  await page.goto(ADMIN + "/ui");
  await page.getByLabel("Admin token").fill(TOKEN);
  await page.keyboard.press("Enter");
  await page.locator("#page-overview").waitFor({ state: "visible", timeout: WAIT_MS });
}

async function apiGet(p) {
  const r = await fetch(ADMIN + p, { headers: { authorization: "Bearer " + TOKEN } });
  assert.equal(r.status, 200, `GET ${p}`);
  return r.json();
}

async function idOf(eventId) {
  const { events } = await apiGet("/events?limit=1000");
  const e = events.find((x) => x.event_id === eventId);
  assert.ok(e, `${eventId} is stored`);
  return e.id;
}

async function sendWebhook(source, id, body, { badSignature = false } = {}) {
  const sig = "sha256=" + createHmac("sha256", badSignature ? "not-the-secret" : SECRET).update(body).digest("hex");
  const r = await fetch(`${WEBHOOK}/hooks/${source}`, {
    method: "POST",
    headers: {
      "x-hub-signature-256": sig,
      "x-github-delivery": id,
      "x-github-event": "push",
      "content-type": "application/json",
    },
    body,
  });
  return r.status;
}

const rowTexts = (page, table) =>
  page.locator(`#${table} tbody tr`).evaluateAll((rows) => rows.map((r) => r.textContent));
const cellOf = (page, table, column) =>
  page.locator(`#${table} tbody tr td:nth-child(${column})`).allTextContents();

test("sign-in: a wrong token is refused, the right one opens an overview that refreshes and charts", async (t) => {
  const b = await open();
  const { page } = b;
  const resp = await page.goto(ADMIN + "/ui");
  assert.equal(resp.headers()["content-security-policy"], CSP);
  assert.equal(resp.headers()["x-content-type-options"], "nosniff");
  assert.equal(resp.headers()["referrer-policy"], "no-referrer");
  await page.getByLabel("Admin token").waitFor({ state: "visible" });
  assert.equal(await page.locator("#nav").isVisible(), false, "no navigation before signing in");

  await page.getByLabel("Admin token").fill("not-the-token");
  await page.keyboard.press("Enter");
  await until("the wrong token is refused", async () =>
    (await page.locator("#signin-error").textContent()) === "That token was refused.",
  );
  assert.equal(await page.locator("#page-overview").isVisible(), false);
  assert.equal(await page.evaluate(() => sessionStorage.getItem("hookgate.admin-token")), null);

  await page.getByLabel("Admin token").fill(TOKEN);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.locator("#page-overview").waitFor({ state: "visible", timeout: WAIT_MS });
  assert.equal(await page.evaluate(() => sessionStorage.getItem("hookgate.admin-token")), TOKEN);
  const orders = page.locator('#overview-table tr[data-source="orders"]');
  await orders.waitFor({ timeout: WAIT_MS });
  const billing = page.locator('#overview-table tr[data-source="billing"]');
  // billing: 4 accepted, 4 dead; the dead count links to its dead letters.
  assert.equal(await billing.locator("td").nth(0).textContent(), "4");
  assert.equal(await billing.locator("td").nth(4).textContent(), "4");
  assert.equal(await billing.locator("td").nth(4).locator("a").getAttribute("href"), "#/dead?source=billing");
  const accepted0 = Number(await orders.locator("td").nth(0).textContent());

  // New traffic shows without a reload, and in the chart (drawn from what the page polled).
  for (let n = 1; n <= 3; n++) assert.equal(await sendWebhook("orders", `live-${n}`, `{"live":${n}}`), 200);
  assert.equal(await sendWebhook("orders", "forged-1", `{"forged":1}`, { badSignature: true }), 401);
  await until("the overview shows the new events", async () =>
    Number(await orders.locator("td").nth(0).textContent()) === accepted0 + 3,
  );
  await until("the rejection shows with its reason", async () =>
    /signature_mismatch 1/.test(await orders.locator("td").nth(2).textContent()),
  );
  await until("the chart counts them", async () =>
    /: 3 accepted, 1 rejected\.$/.test(await page.locator("#chart-summary").textContent()),
  );
  assert.ok((await page.locator("#chart polyline.accepted").count()) === 1, "an accepted line");
  assert.ok((await page.locator("#chart polyline.rejected").count()) === 1, "a rejected line");
  await finish(t, b, "overview", [/status of 401/]);
});

test("sign out forgets the token; an open API (loopback, no token) needs no sign-in, also on a phone", async (t) => {
  const b = await open(PHONE);
  const { page } = b;
  await signIn(page);
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByLabel("Admin token").waitFor({ state: "visible" });
  assert.equal(await page.evaluate(() => sessionStorage.getItem("hookgate.admin-token")), null);

  await page.goto(OPEN_ADMIN + "/ui");
  await page.locator('#overview-table tr[data-source="open"]').waitFor({ timeout: WAIT_MS });
  assert.equal(await page.locator("#page-signin").isVisible(), false);
  assert.equal(await page.locator("#signout").isVisible(), false, "nothing to sign out of");
  // Phone width: the page does not scroll sideways (wide tables scroll inside their frame).
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `the page is ${overflow}px wider than the phone`);
  await page.getByRole("link", { name: "Events" }).click();
  await until("the open gateway's event is listed", async () =>
    (await cellOf(page, "events-table", 3)).includes("open-1"),
  );
  await finish(t, b, "open-phone");
});

test("the filters narrow the list, and the pages go older", async (t) => {
  const b = await open();
  const { page } = b;
  await signIn(page);
  const { events: all } = await apiGet("/events?limit=1000");
  assert.equal(all.length, 12, "4 billing; 8 orders, 3 of them live");

  await page.getByRole("link", { name: "Events" }).click();
  await until("every event is listed", async () => (await rowTexts(page, "events-table")).length === 12);
  const ids = (await cellOf(page, "events-table", 1)).map(Number);
  assert.deepEqual(ids, [...ids].sort((x, y) => y - x), "newest first");

  await page.locator("#events-source").selectOption("billing");
  await page.getByRole("button", { name: "Apply" }).click();
  await until("only billing's", async () => {
    const sources = await cellOf(page, "events-table", 2);
    return sources.length === 4 && sources.every((s) => s === "billing");
  });
  assert.match(page.url(), /#\/events\?source=billing$/);

  await page.locator("#events-state").selectOption("delivered");
  await page.getByRole("button", { name: "Apply" }).click();
  await until("billing has nothing delivered", async () =>
    (await page.locator("#events-table tbody").textContent()) === "No events match.",
  );

  await page.locator("#events-source").selectOption("");
  await page.locator("#events-state").selectOption("dead");
  await page.getByRole("button", { name: "Apply" }).click();
  await until("the four dead letters", async () => {
    const states = await cellOf(page, "events-table", 4);
    return states.length === 4 && states.every((s) => s === "dead");
  });

  // Time: before the first event there is nothing; from an hour ago, everything.
  const local = (ms) => {
    const d = new Date(ms);
    const p = (n) => String(n).padStart(2, "0");
    return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
  };
  await page.getByRole("button", { name: "Clear" }).click();
  await until("cleared", async () => (await rowTexts(page, "events-table")).length === 12);
  await page.locator("#events-until").fill(local(Date.now() - 3600_000));
  await page.getByRole("button", { name: "Apply" }).click();
  await until("nothing before an hour ago", async () =>
    (await page.locator("#events-table tbody").textContent()) === "No events match.",
  );
  await page.locator("#events-until").fill("");
  await page.locator("#events-since").fill(local(Date.now() - 3600_000));
  await page.getByRole("button", { name: "Apply" }).click();
  await until("everything since an hour ago", async () => (await rowTexts(page, "events-table")).length === 12);

  // Paging, 5 to a page: 5, 5, 2, newest first throughout, then no older page.
  await page.goto(ADMIN + "/ui#/events?limit=5");
  const pages = [];
  const sizes = [5, 5, 2];
  for (let i = 0; i < 3; i++) {
    const prev = pages.flat();
    const shown = await until(`page ${i + 1}`, async () => {
      const got = (await cellOf(page, "events-table", 1)).map(Number);
      return got.length === sizes[i] && !got.some((id) => prev.includes(id)) ? got : null;
    });
    pages.push(shown);
    if (i < 2) await page.getByRole("link", { name: "Older" }).click();
  }
  assert.deepEqual(pages.map((p) => p.length), [5, 5, 2]);
  assert.deepEqual(pages.flat(), all.map((e) => e.id), "the pages, in order, are the whole list");
  assert.equal(await page.getByRole("link", { name: "Older" }).getAttribute("aria-disabled"), "true");
  await page.getByRole("link", { name: "Newest" }).click();
  await until("back on the first page", async () =>
    JSON.stringify((await cellOf(page, "events-table", 1)).map(Number)) === JSON.stringify(pages[0]),
  );
  await finish(t, b, "events");
});

test("a dead letter shows with its reason; Replay delivers it and the page shows it delivered", async (t) => {
  const b = await open();
  const { page } = b;
  await signIn(page);
  await page.getByRole("link", { name: "Dead letters" }).click();
  await until("four dead letters", async () => (await cellOf(page, "dead-table", 4)).length === 4);
  const reasons = await cellOf(page, "dead-table", 7);
  assert.ok(reasons.every((r) => /status 500/.test(r)), `reasons: ${reasons}`);
  await finish(t, { ...b, context: { close: async () => {} } }, "dead-letters");

  const id = await idOf("dead-1");
  await page.getByRole("link", { name: `Event ${id}`, exact: true }).click();
  await until("the event page", async () => (await page.locator("#event-title").textContent()) === `Event ${id}`);
  await until("the event's facts", async () =>
    /Dead because\s*status 500/.test(await page.locator("#event-facts").textContent()),
  );
  assert.deepEqual(await cellOf(page, "event-attempts", 3), ["500"]);
  // Signatures are redacted, as the API does; the body is pretty-printed JSON.
  const headers = await page.locator("#event-headers tbody tr").evaluateAll((rows) =>
    Object.fromEntries(rows.map((r) => [r.cells[0].textContent, r.cells[1].textContent])),
  );
  assert.equal(headers["x-hub-signature-256"], "[redacted]");
  assert.equal(headers["x-github-delivery"], "dead-1");
  assert.equal(await page.locator("#event-body").textContent(), '{\n  "invoice": 1,\n  "amount": 12.5\n}');
  assert.equal(await page.locator("#event-body-note").textContent(), "JSON, pretty-printed.");

  // By keyboard: focus the button, press Enter.
  await page.getByRole("button", { name: "Replay" }).focus();
  await page.keyboard.press("Enter");
  await until("the page shows it delivered", async () =>
    (await page.locator("#event-facts .badge").textContent()) === "delivered",
  );
  assert.deepEqual(await cellOf(page, "event-attempts", 3), ["500", "200"]);
  await until("the page says so", async () =>
    (await page.locator("#event-status").textContent()) === "Replayed: now delivered.",
  );
  assert.match(await page.locator("#event-facts").textContent(), /Delivered/);
  await finish(t, b, "event");
});

test("dead letters: several deleted after a confirmation, and a source's time window replayed", async (t) => {
  const b = await open();
  const { page } = b;
  await signIn(page);
  await page.getByRole("link", { name: "Dead letters" }).click();
  await until("three dead letters", async () => (await cellOf(page, "dead-table", 4)).length === 3);
  const [two, three] = [await idOf("dead-2"), await idOf("dead-3")];
  await page.getByLabel(`Select event ${two} (billing)`).check();
  await page.getByLabel(`Select event ${three} (billing)`).check();
  const del = page.getByRole("button", { name: "Delete 2 selected…" });

  // Escape cancels: nothing is deleted.
  await del.click();
  await page.locator("#confirm").waitFor({ state: "visible" });
  const asked = await page.locator("#confirm-text").textContent();
  assert.match(asked, /^Delete 2 dead letters \(/);
  assert.ok(asked.includes(String(two)) && asked.includes(String(three)), asked);
  await page.keyboard.press("Escape");
  await page.locator("#confirm").waitFor({ state: "hidden" });
  assert.equal((await cellOf(page, "dead-table", 4)).length, 3, "cancelled: all three still there");

  await del.click();
  await page.getByRole("button", { name: "Delete", exact: true }).click();
  await until("deleted", async () => (await page.locator("#dead-status").textContent()) === "Deleted 2.");
  await until("one dead letter left", async () => {
    const left = await cellOf(page, "dead-table", 4);
    return left.length === 1 && left[0] === "dead-4";
  });
  for (const gone of ["dead-2", "dead-3"]) {
    const { events } = await apiGet("/events?limit=1000");
    assert.ok(!events.some((e) => e.event_id === gone), `${gone} is deleted`);
  }

  // Everything of billing received in the last hour, after the count is confirmed.
  const since = new Date(Date.now() - 3600_000);
  const p = (n) => String(n).padStart(2, "0");
  await page.locator("#window-source").selectOption("billing");
  await page.locator("#window-since").fill(
    `${since.getFullYear()}-${p(since.getMonth() + 1)}-${p(since.getDate())}T${p(since.getHours())}:${p(since.getMinutes())}:${p(since.getSeconds())}`,
  );
  await page.getByRole("button", { name: "Replay…" }).click();
  await page.locator("#confirm").waitFor({ state: "visible" });
  assert.match(await page.locator("#confirm-text").textContent(), /^Replay 1 dead letter of billing received from /);
  await page.getByRole("button", { name: "Replay", exact: true }).click();
  await until("replayed", async () => (await page.locator("#dead-status").textContent()) === "Replayed 1 of billing.");
  await until("no dead letters left", async () => {
    await page.getByRole("button", { name: "Show" }).click();
    return (await page.locator("#dead-table tbody").textContent()) === "No dead letters.";
  });
  await until("dead-4 delivered", async () => {
    const { events } = await apiGet("/events?limit=1000");
    return events.find((e) => e.event_id === "dead-4").state === "delivered";
  });
  await finish(t, b, "dead-letters-done");
});

test("what senders sent renders as text, and no script of theirs runs", async (t) => {
  const b = await open();
  const { page, dialogs } = b;
  await signIn(page);
  const xss = await idOf("xss-1");
  await page.getByRole("link", { name: "Events" }).click();
  await until("listed", async () => (await cellOf(page, "events-table", 3)).includes("xss-1"));
  await page.getByRole("link", { name: `Event ${xss}`, exact: true }).click();
  await until("the event page", async () => (await page.locator("#event-title").textContent()) === `Event ${xss}`);
  const body = await until("the body", async () => page.locator("#event-body").textContent());
  assert.ok(body.includes('"note": "<img src=x onerror=\\"window.__xss=1\\">"'), body);
  assert.ok(body.includes('"html": "<script>window.__xss=2</script>"'), body);
  const note = await page.locator("#event-headers tbody tr", { hasText: "x-note" }).locator("td").textContent();
  assert.equal(note, XSS_HEADER);
  const injected = await page.evaluate(() => ({
    xss: window.__xss,
    elements: document.querySelectorAll("main img, main script, main b, main iframe").length,
  }));
  assert.deepEqual(injected, { xss: undefined, elements: 0 });
  assert.deepEqual(dialogs, []);
  await finish(t, b, "event-xss");

  const c = await open();
  await signIn(c.page);
  const bin = await idOf("binary-1");
  await c.page.goto(`${ADMIN}/ui#/event/${bin}`);
  await until("the binary body", async () => (await c.page.locator("#event-body").textContent()) === "//4AAYA=");
  assert.equal(await c.page.locator("#event-body-note").textContent(), "Not UTF-8: shown in base64.");
  await finish(t, c, "event-binary");
});
