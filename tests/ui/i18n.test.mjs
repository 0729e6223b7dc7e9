// Browser tests of the UI's eight languages: the browser's language picks
// the page's (and <html lang> says which), the selector changes and keeps it,
// API errors come in it, and every main page in every language is laid out
// without overflowing or cut texts (screenshots in artifacts/ui-screenshots/).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { startServer, openBrowser, shot, login, ready, chooseLanguage, ROOT, PASSWORD } from "./harness.mjs";

const LANGS = { en: "en-US", de: "de-DE", es: "es-ES", fr: "fr-FR", it: "it-IT", ja: "ja-JP", ru: "ru-RU", zh: "zh-CN" };
const texts = (lang) => JSON.parse(readFileSync(join(ROOT, "crates/server/i18n", lang + ".json"), "utf8"));

const PAGES = [
  ["webserver", "title.webserver"],
  ["access-control", "title.access"],
  ["profiles", "title.profiles"],
  ["logfile", "title.logfile"],
  ["events", "title.events"],
  ["blocked", "title.blocked"],
  ["users", "title.users"],
  ["", "title.menu"],
];

// What is wrong with the page's layout: a page wider than the window, a
// control or text sticking out of its box, a button whose label does not fit.
function layoutProblems() {
  const problems = [];
  const visible = (el) => el.getClientRects().length > 0 && getComputedStyle(el).visibility !== "hidden" && !el.closest(".visually-hidden, [hidden], dialog:not([open])");
  const name = (el) => el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") + " \"" + (el.innerText || el.value || "").trim().slice(0, 40) + "\"";
  const doc = document.documentElement;
  if (doc.scrollWidth > doc.clientWidth + 1) problems.push(`the page is ${doc.scrollWidth} px wide in a ${doc.clientWidth} px window`);
  for (const el of document.querySelectorAll("button, select, input, textarea, label, h1, h2, h3, p, th, td, dt, dd, a, li, caption")) {
    if (!visible(el)) continue;
    const r = el.getBoundingClientRect();
    // Inside a horizontally scrolling box (wide tables), the box is the limit.
    const box = el.closest(".scroll") || el.closest("main, header, dialog");
    if (box && box !== el) {
      const b = box.getBoundingClientRect();
      const limit = box.classList.contains("scroll") ? box.scrollWidth + b.left : b.right;
      if (r.right > limit + 1) problems.push(`${name(el)} sticks out of ${box.tagName.toLowerCase()} by ${Math.round(r.right - limit)} px`);
    }
    if ((el.tagName === "BUTTON" || el.tagName === "H1" || el.tagName === "H2" || el.tagName === "LABEL") && el.scrollWidth > el.clientWidth + 1 && el.clientWidth > 0) {
      problems.push(`${name(el)}: its text is ${el.scrollWidth} px wide in ${el.clientWidth} px`);
    }
  }
  // A button's label stays on one line and inside it (no cut words).
  for (const el of document.querySelectorAll("button")) {
    if (!visible(el)) continue;
    if (el.scrollHeight > el.clientHeight + 1) problems.push(`${name(el)}: its text is taller than the button`);
  }
  return problems;
}

test("the browser's language picks the page's language; <html lang> says which; API errors come in it", async () => {
  const server = await startServer();
  try {
    for (const [lang, locale] of Object.entries(LANGS)) {
      const t = texts(lang).ui;
      const browser = await openBrowser(locale);
      try {
        const { page } = browser;
        await page.goto(server.base + "/admin/login");
        assert.equal(await page.evaluate(() => document.documentElement.lang), lang, locale);
        assert.equal(await page.locator("h1").innerText(), t["title.login"], locale);
        assert.equal(await page.locator("#user-label").innerText(), t["login.user"], locale);
        assert.equal(await page.locator("#lang-select").inputValue(), lang);
        // A wrong password: the page's language, from the UI's own texts.
        await page.locator("#user").fill("admin");
        await page.locator("#password").fill("wrong-password");
        await page.locator("#login-submit").click();
        await page.waitForSelector("#password[aria-invalid=true]");
        assert.equal(await page.locator("#password-err").innerText(), t["login.wrong_credentials"], locale);
        await page.locator("#password").fill(PASSWORD);
        await page.locator("#login-submit").click();
        await page.waitForURL((u) => !u.pathname.startsWith("/admin/login"));
        await ready(page);
        assert.equal(await page.evaluate(() => document.documentElement.lang), lang);
        assert.equal(await page.locator("h1").innerText(), t["title.menu"], locale);
        assert.equal(await page.locator("#logout").innerText(), t["logout"], locale);
        // A refused value: the server words the message in the UI's language.
        await page.goto(server.base + "/admin/webserver");
        await ready(page);
        await page.locator("#id-threshold").fill("4");
        await page.locator("#set").click();
        await page.waitForSelector("#id-threshold[aria-invalid=true]");
        const expected = lang === "en" ? "the notification threshold must be at least 5" : texts(lang).errors.out_of_range;
        assert.equal(await page.locator("#id-threshold-err").innerText(), expected, locale);
        assert.deepEqual(browser.problems.filter((p) => !p.includes("Failed to load resource")), [], locale + ": console warnings or errors");
      } finally {
        await browser.close();
      }
    }
    // The API alone: Accept-Language picks the message's language.
    const auth = "Basic " + Buffer.from("admin:" + PASSWORD).toString("base64");
    const put = (lang) => fetch(server.base + "/api/v1/webserver", {
      method: "PUT",
      headers: { authorization: auth, "content-type": "application/json", ...(lang ? { "accept-language": lang } : {}) },
      body: JSON.stringify({ http_ports: [70000] }),
    });
    const ja = await put("ja-JP,ja;q=0.9");
    assert.equal(ja.status, 400);
    assert.equal(ja.headers.get("content-language"), "ja");
    const jaBody = await ja.json();
    assert.deepEqual(jaBody, { error: { code: "invalid_value", message: texts("ja").errors.invalid_value, field: "http_ports[0]", detail: jaBody.error.detail } });
    assert.match(jaBody.error.detail, /70000/);
    const en = await (await put(null)).json();
    assert.deepEqual(Object.keys(en.error), ["code", "message", "field"]);
    assert.equal(en.error.message, jaBody.error.detail, "the English answer's message is the detail");
  } finally {
    await server.stop();
  }
});

test("the selector switches the language on the login page and every page, and the choice is kept over the browser's", async () => {
  const server = await startServer();
  const browser = await openBrowser("ja-JP");
  try {
    const { page } = browser;
    const ja = texts("ja").ui;
    const ru = texts("ru").ui;
    await page.goto(server.base + "/admin/login");
    assert.equal(await page.evaluate(() => document.documentElement.lang), "ja");
    const options = await page.locator("#lang-select option").evaluateAll((os) => os.map((o) => [o.value, o.lang, o.textContent]));
    assert.deepEqual(options, [["en", "en", "English"], ["de", "de", "Deutsch"], ["es", "es", "Español"], ["fr", "fr", "Français"],
      ["it", "it", "Italiano"], ["ja", "ja", "日本語"], ["ru", "ru", "Русский"], ["zh", "zh", "中文"]]);
    assert.equal(await page.locator("#lang-select").getAttribute("aria-label"), ja["lang.label"]);
    await chooseLanguage(page, "ru");
    assert.equal(await page.locator("#login-submit").innerText(), ru["login.submit"]);
    await login(page, server, "/admin/webserver");
    for (const [path, title] of PAGES) {
      await page.goto(server.base + "/admin/" + path);
      await ready(page);
      assert.equal(await page.evaluate(() => document.documentElement.lang), "ru", path);
      assert.equal(await page.locator("h1").innerText(), ru[title], path);
      assert.equal(await page.locator("#lang-select").inputValue(), "ru", path);
    }
    await chooseLanguage(page, "zh");
    await ready(page);
    assert.equal(await page.locator("h1").innerText(), texts("zh").ui["title.menu"]);
    // The choice outlives the session: after logging out, still Chinese.
    await page.locator("#logout").click();
    await page.waitForURL(/\/admin\/login/);
    assert.equal(await page.evaluate(() => document.documentElement.lang), "zh");
    assert.deepEqual(browser.problems.filter((p) => !p.includes("Failed to load resource")), []);
  } finally {
    await browser.close();
    await server.stop();
  }
});

test("every main page in every language: no overflowing or cut texts (screenshots)", async () => {
  const server = await startServer();
  try {
    // Something on every page: a rule, a profile, a blocked client (through a
    // trusted proxy), logfile entries, events, a second account.
    await server.api("PUT", "/api/v1/access-control", { enabled: true, no_match: "allow", rules: [{ kind: "deny", source: "192.0.2.0/24" }, { kind: "temporary_allow", source: "2001:db8::/32" }], trusted_proxies: ["127.0.0.1"] });
    const ws = await server.api("GET", "/api/v1/webserver");
    await server.api("PUT", "/api/v1/webserver", { ...ws.json, intrusion_detection: { ...ws.json.intrusion_detection, notification_threshold: 5, block_ip: true } });
    await server.api("PUT", "/api/v1/profiles/ip-notify/siem", { destinations: ["127.0.0.1:9"], protocol: "tcp" });
    await server.api("PUT", "/api/v1/users/operator", { group: "users", password: "operator-password-1" });
    for (let i = 0; i < 6; i++) {
      await fetch(`${server.base}/api/v1/webserver`, { headers: { "x-forwarded-for": "198.51.100.7", authorization: "Basic " + Buffer.from("admin:wrong").toString("base64") } });
    }
    const all = [];
    for (const [lang, locale] of Object.entries(LANGS)) {
      const t = texts(lang).ui;
      const browser = await openBrowser(locale);
      try {
        const { page } = browser;
        await page.goto(server.base + "/admin/login");
        assert.equal(await page.evaluate(() => document.documentElement.lang), lang);
        await page.locator("#user").fill("admin");
        await page.locator("#password").fill("wrong-password");
        await page.locator("#login-submit").click();
        await page.waitForSelector("#password[aria-invalid=true]");
        all.push(...(await page.evaluate(layoutProblems)).map((p) => `${lang} login: ${p}`));
        await shot(page, `i18n-${lang}-login`);
        await login(page, server, "/admin/");
        for (const [path, title] of PAGES) {
          await page.goto(server.base + "/admin/" + path);
          await ready(page);
          assert.equal(await page.locator("h1").innerText(), t[title], `${lang} ${path}`);
          if (path === "webserver") {
            // A refused port: the message sits under its field, the row's
            // Remove button stays level with the field.
            await page.locator(".ports input.port").first().fill("70000");
            await page.locator("#set").click();
            await page.waitForSelector(".ports input.port[aria-invalid=true]");
            const [input, button] = await page.$$eval(".port-row:first-child input, .port-row:first-child button", (els) => els.map((e) => e.getBoundingClientRect().top));
            assert.ok(Math.abs(input - button) < 6, `${lang}: Remove button ${button} level with the port field ${input}`);
            assert.equal(await page.locator(".port-row:first-child > .field > .err").innerText(), lang === "en" ? "70000 is out of range: give a whole number from 0 to 65535" : texts(lang).errors.invalid_value);
          }
          all.push(...(await page.evaluate(layoutProblems)).map((p) => `${lang} /admin/${path}: ${p}`));
          await shot(page, `i18n-${lang}-${path || "menu"}`);
        }
        assert.deepEqual(browser.problems.filter((p) => !p.includes("Failed to load resource")), [], lang + ": console warnings or errors");
      } finally {
        await browser.close();
      }
    }
    assert.deepEqual(all, [], "layout problems");
  } finally {
    await server.stop();
  }
});
