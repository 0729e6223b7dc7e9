// Browser tests of the UI's layout faults: tables whose header cells do
// not line up with their data cells, stray "null" texts, the Web Server
// dialog's action bar out of sight, its sections out of the seed's order,
// a common name filled in from the browser's host.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { withUi, startServer, openBrowser, shot, login, ready, ROOT } from "./harness.mjs";

const texts = (lang) => JSON.parse(readFileSync(join(ROOT, "crates/server/i18n", lang + ".json"), "utf8")).ui;

// Something in every table: a rule, a profile, a blocked client (through a
// trusted proxy, so that the test's own address stays usable), logfile
// entries, events, a second account.
async function fillTables(server) {
  await server.api("PUT", "/api/v1/access-control", { enabled: true, no_match: "allow", rules: [{ kind: "deny", source: "192.0.2.0/24" }, { kind: "temporary_allow", source: "2001:db8::/32" }], trusted_proxies: ["127.0.0.1"] });
  const ws = await server.api("GET", "/api/v1/webserver");
  await server.api("PUT", "/api/v1/webserver", { ...ws.json, intrusion_detection: { ...ws.json.intrusion_detection, notification_threshold: 5, block_ip: true } });
  await server.api("PUT", "/api/v1/profiles/ip-notify/siem", { destinations: ["127.0.0.1:9"], protocol: "tcp" });
  await server.api("PUT", "/api/v1/users/operator", { group: "users", password: "operator-password-1" });
  await server.api("POST", "/api/v1/tokens", { name: "scraper", scope: "read-only", expires_in_days: 30, allowed_sources: ["10.0.0.0/8"] });
  for (let i = 0; i < 6; i++) {
    await fetch(`${server.base}/api/v1/webserver`, { headers: { "x-forwarded-for": "198.51.100.7", authorization: "Basic " + Buffer.from("admin:wrong").toString("base64") } });
  }
}

// For each table of the page: its header cells, column by column, and
// where each data cell of a row without spanning cells lies against them.
function misalignedCells() {
  const out = [];
  const tables = [...document.querySelectorAll("main table")];
  for (const [ti, table] of tables.entries()) {
    const ths = [...table.querySelectorAll(":scope > thead > tr > th")];
    const rows = [...table.querySelectorAll(":scope > tbody > tr")];
    if (rows.length === 0) out.push(`table ${ti}: no row directly in its tbody`);
    for (const [ri, tr] of rows.entries()) {
      const tds = [...tr.children];
      if (tds.some((td) => td.colSpan > 1)) continue;
      if (tds.length !== ths.length) { out.push(`table ${ti} row ${ri}: ${tds.length} cells under ${ths.length} headers`); continue; }
      for (const [ci, td] of tds.entries()) {
        const a = ths[ci].getBoundingClientRect();
        const b = td.getBoundingClientRect();
        if (Math.abs(a.left - b.left) > 1 || Math.abs(a.right - b.right) > 1) {
          out.push(`table ${ti} row ${ri} column ${ci}: header ${Math.round(a.left)}..${Math.round(a.right)}, cell ${Math.round(b.left)}..${Math.round(b.right)}`);
        }
      }
    }
  }
  return { count: tables.length, problems: out };
}

test("every table: each header cell lines up with the data cells of its column", () =>
  withUi("20-tables", async (server, { page }) => {
    await fillTables(server);
    await login(page, server, "/admin/");
    // Page, number of tables on it.
    const pages = [["logfile", 1], ["events", 1], ["blocked", 1], ["users", 2], ["access-control", 1], ["profiles", 3]];
    for (const [path, tables] of pages) {
      await page.goto(server.base + "/admin/" + path);
      await ready(page);
      // The tables fill after their own API call.
      await page.waitForFunction(() => [...document.querySelectorAll("main table")].every((t) => t.querySelector("tbody tr")));
      const { count, problems } = await page.evaluate(misalignedCells);
      assert.equal(count, tables, `${path}: tables`);
      assert.deepEqual(problems, [], path);
      await shot(page, "20-table-" + path);
    }
    // The data is there, in the columns it belongs to.
    await page.goto(server.base + "/admin/events");
    await ready(page);
    const blocked = page.locator("main table tbody tr.client_blocked").first();
    assert.equal(await blocked.locator("td").nth(3).innerText(), "198.51.100.7");
    assert.match(await blocked.locator("td").nth(4).innerText(), /198\.51\.100\.7/);
  }));

// The texts of the page that read "null" or "undefined": a value the page
// meant to leave out, shown instead.
function strayTexts() {
  const out = [];
  const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = walk.nextNode(); n; n = walk.nextNode()) {
    if (/\b(null|undefined)\b/.test(n.textContent)) out.push(`${n.parentElement.tagName.toLowerCase()}#${n.parentElement.id}: ${JSON.stringify(n.textContent.slice(0, 80))}`);
  }
  for (const el of document.querySelectorAll("input, textarea")) {
    if (/^(null|undefined)$/.test(el.value) || /^(null|undefined)$/.test(el.placeholder)) out.push(`${el.tagName.toLowerCase()}#${el.id}: value ${JSON.stringify(el.value)}`);
  }
  return out;
}

test("no stray \"null\" on the Web Server page (English and German) nor on any page, as administrator and as viewer", async () => {
  const server = await startServer();
  try {
    await fillTables(server);
    for (const [locale, lang] of [["en-US", "en"], ["de-DE", "de"]]) {
      const browser = await openBrowser(locale);
      try {
        const { page } = browser;
        await login(page, server, "/admin/webserver");
        assert.equal(await page.evaluate(() => document.documentElement.lang), lang);
        // The ACME status is drawn from its own API answer.
        await page.waitForSelector("#acme-managed");
        assert.deepEqual(await page.evaluate(strayTexts), [], `${lang} webserver`);
        assert.equal(await page.locator("#acme-status").evaluate((el) => [...el.childNodes].filter((n) => n.nodeType === Node.TEXT_NODE).length), 0, "no text node beside the status list");
        await shot(page, `21-no-null-${lang}`);
        for (const path of ["", "access-control", "profiles", "logfile", "events", "blocked", "users"]) {
          await page.goto(server.base + "/admin/" + path);
          await ready(page);
          assert.deepEqual(await page.evaluate(strayTexts), [], `${lang} /admin/${path}`);
        }
      } finally {
        await browser.close();
      }
    }
    // A viewer sees fewer sections: what is left out leaves nothing behind.
    const browser = await openBrowser("en-US");
    try {
      const { page } = browser;
      await page.goto(server.base + "/admin/login");
      await page.locator("#user").fill("operator");
      await page.locator("#password").fill("operator-password-1");
      await page.locator("#login-submit").click();
      await page.waitForURL((u) => !u.pathname.startsWith("/admin/login"));
      await ready(page);
      for (const path of ["", "webserver", "users", "events"]) {
        await page.goto(server.base + "/admin/" + path);
        await ready(page);
        assert.deepEqual(await page.evaluate(strayTexts), [], `viewer /admin/${path}`);
      }
    } finally {
      await browser.close();
    }
  } finally {
    await server.stop();
  }
});

// Whether the element is inside the window and not covered by another one
// (what is drawn at its centre is it or inside it).
function inView(sel) {
  const el = document.querySelector(sel);
  const r = el.getBoundingClientRect();
  const x = r.left + r.width / 2;
  const y = r.top + r.height / 2;
  const atPoint = document.elementFromPoint(x, y);
  return { top: Math.round(r.top), bottom: Math.round(r.bottom), window: innerHeight, inside: r.top >= 0 && r.bottom <= innerHeight, visible: !!atPoint && (atPoint === el || el.contains(atPoint)) };
}

test("Web Server: Set, Factory, Restore, Close and Reboot stay in view while the page scrolls; a focused field is never behind them", () =>
  withUi("22-action-bar", async (server, { page }) => {
    await login(page, server, "/admin/webserver");
    const height = await page.evaluate(() => document.documentElement.scrollHeight);
    assert.ok(height > 3 * 900, `a long page (${height} px)`);
    const buttons = ["#set", "#factory", "#restore", "#close", "#reboot"];
    const check = async (where) => {
      for (const b of buttons) {
        const v = await page.evaluate(inView, b);
        assert.ok(v.inside && v.visible, `${where}: ${b} in view and not covered: ${JSON.stringify(v)}`);
      }
    };
    await check("at the top");
    // The HTTPS section's heading at the top of the window.
    await page.evaluate(() => document.querySelector("#https_enabled, [data-field=https_enabled]").closest("section").scrollIntoView({ block: "start" }));
    assert.ok(await page.evaluate(() => scrollY) > 300, "scrolled");
    await check("at the HTTPS section");
    await shot(page, "22-action-bar-https");
    await page.evaluate(() => document.querySelector("[data-field='intrusion_detection.enabled']").closest("section").scrollIntoView({ block: "start" }));
    await check("at intrusion detection");
    await page.evaluate(() => scrollTo(0, document.documentElement.scrollHeight));
    await check("at the bottom");
    // Set works from there, with the keyboard.
    await page.evaluate(() => scrollTo(0, 0));
    await page.locator("#id-threshold").fill("7");
    await page.locator("#https_port, [data-field=https_port]").first().scrollIntoViewIfNeeded();
    await page.locator("#set").focus();
    await page.keyboard.press("Enter");
    await page.waitForFunction(() => /running now/.test(document.getElementById("page-status").textContent));
    assert.equal((await server.api("GET", "/api/v1/webserver")).json.intrusion_detection.notification_threshold, 7);
    // Tabbing from the top through every control: each focused one is
    // scrolled into view above the bar, not behind it.
    await page.evaluate(() => { scrollTo(0, 0); document.activeElement.blur(); document.querySelector("h1").setAttribute("tabindex", "-1"); document.querySelector("h1").focus(); });
    const hidden = [];
    for (let i = 0; i < 200; i++) {
      await page.keyboard.press("Tab");
      const f = await page.evaluate(() => {
        const el = document.activeElement;
        if (!el || el === document.body) return null;
        const bar = document.getElementById("ws-form");
        const r = el.getBoundingClientRect();
        const barTop = bar.getBoundingClientRect().top;
        return { id: el.id || el.getAttribute("data-field") || el.tagName, inBar: bar.contains(el), bottom: r.bottom, barTop, top: r.top, last: el.id === "reboot" };
      });
      if (!f) continue;
      if (!f.inBar && (f.bottom > f.barTop + 1 || f.top < 0)) hidden.push(`${f.id}: ${Math.round(f.top)}..${Math.round(f.bottom)}, bar at ${Math.round(f.barTop)}`);
      if (f.last) break;
    }
    assert.deepEqual(hidden, [], "focused controls behind the bar");
  }));

test("Web Server: the sections in the seed's order, ACME (not in the seed) after them; the common name is left empty", () =>
  withUi("23-order-cn", async (server, { page }) => {
    await login(page, server, "/admin/webserver");
    const t = texts("en");
    const headings = await page.locator("#content > section > h2").allInnerTexts();
    assert.deepEqual(headings, [t["ws.general"], t["ws.https"], t["cert.inuse"], t["cert.replace"], t["gen.title"], t["id.title"], t["acme.title"]]);
    // The bar comes after every section.
    assert.equal(await page.evaluate(() => document.querySelector("#content > section:last-of-type").compareDocumentPosition(document.getElementById("ws-form")) & Node.DOCUMENT_POSITION_FOLLOWING), 4);
    // The page was opened as 127.0.0.1: an address the seed advises against
    // as the common name, so nothing is filled in.
    const cn = page.locator("#gen-cn");
    assert.equal(await cn.inputValue(), "");
    assert.equal(await cn.getAttribute("placeholder"), "camera.example.com");
    assert.match(await page.locator("#gen-cn-hint").innerText(), /DNS name/);
    // Generate without a common name: refused at the field, nothing changed.
    const before = (await server.api("GET", "/api/v1/certificate")).json.certificate.fingerprint_sha256;
    await page.locator("#generate-submit").click();
    await page.waitForSelector("#gen-cn[aria-invalid=true]");
    assert.notEqual(await page.locator("#gen-cn-err").innerText(), "");
    assert.equal((await server.api("GET", "/api/v1/certificate")).json.certificate.fingerprint_sha256, before);
  }));
