// Test harness: the real portcullis binary on free loopback ports with a
// temporary data folder, and headless Debian chromium driven by playwright-core.
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, mkdirSync, writeFileSync, rmSync, existsSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import assert from "node:assert/strict";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
export const ROOT = resolve(here, "../..");
export const SHOTS = join(ROOT, "artifacts", "ui-screenshots");
const TARGET = process.env.CARGO_TARGET_DIR ? resolve(ROOT, process.env.CARGO_TARGET_DIR) : join(ROOT, "target");
export const BINARY = process.env.PORTCULLIS_BIN || join(TARGET, "debug", "portcullis");
export const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
export const PASSWORD = "ui-test-password-1";

export function freePort() {
  return new Promise((res, rej) => {
    const s = createServer();
    s.unref();
    s.on("error", rej);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
  });
}

// Starts the server; the ports are written into the stored configuration
// (not given on the command line, which would override them at every reboot).
export async function startServer() {
  if (!existsSync(BINARY)) throw new Error(`no binary at ${BINARY}: build it with cargo build -p portcullis-cli`);
  const dir = mkdtempSync(join(tmpdir(), "portcullis-ui-"));
  const data = join(dir, "data");
  mkdirSync(data, { mode: 0o700 });
  const http = await freePort();
  const https = await freePort();
  writeFileSync(join(data, "config.json"), JSON.stringify({ version: 1, webserver: { http_ports: [http], https_port: https } }));
  const pwFile = join(dir, "admin-password");
  writeFileSync(pwFile, PASSWORD + "\n", { mode: 0o600 });
  const proc = spawn(BINARY, ["serve", "--data-dir", data, "--admin-password-file", pwFile, "--listen", "127.0.0.1", "--log", "warn"], { stdio: ["ignore", "pipe", "pipe"] });
  let log = "";
  proc.stdout.on("data", (d) => (log += d));
  proc.stderr.on("data", (d) => (log += d));
  const base = `http://127.0.0.1:${http}`;
  const deadline = Date.now() + 30000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error("server exited: " + log);
    try {
      const r = await fetch(base + "/healthz");
      if (r.ok) break;
    } catch {}
    if (Date.now() > deadline) throw new Error("server not ready: " + log);
    await new Promise((r) => setTimeout(r, 100));
  }
  const server = {
    dir, data, http, https, base, proc, log: () => log,
    // An API call with HTTP Basic, from the test itself.
    async api(method, path, body) {
      const headers = { authorization: "Basic " + Buffer.from("admin:" + PASSWORD).toString("base64") };
      if (body !== undefined) headers["content-type"] = "application/json";
      const r = await fetch(base + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
      const text = await r.text();
      let json = null;
      try { json = JSON.parse(text); } catch {}
      return { status: r.status, json, text };
    },
    async stop() {
      if (proc.exitCode === null) {
        proc.kill("SIGTERM");
        await new Promise((r) => { const t = setTimeout(() => { proc.kill("SIGKILL"); r(); }, 12000); proc.on("exit", () => { clearTimeout(t); r(); }); });
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return server;
}

// A fresh browser profile (its own --user-data-dir) for each test.
export async function openBrowser(locale = "en-US") {
  const profile = mkdtempSync(join(tmpdir(), "portcullis-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    locale,
    viewport: { width: 1280, height: 900 },
    acceptDownloads: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  const page = context.pages()[0] || (await context.newPage());
  const problems = [];
  page.on("console", (m) => { if (m.type() === "warning" || m.type() === "error") problems.push(m.type() + ": " + m.text()); });
  page.on("pageerror", (e) => problems.push("pageerror: " + e.message));
  return {
    context, page, problems,
    async close() {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

export async function shot(page, name) {
  mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: join(SHOTS, name + ".png"), fullPage: true });
}

// Runs `fn(server, browser)` with a fresh server and browser profile; fails
// on console warnings or errors in the page; saves a screenshot named `name`
// at the end (also when the test fails).
export async function withUi(name, fn, locale) {
  const server = await startServer();
  const browser = await openBrowser(locale);
  try {
    await fn(server, browser);
    assert.deepEqual(browser.problems.filter((p) => !p.includes("Failed to load resource")), [], "console warnings or errors in the page");
  } finally {
    await shot(browser.page, name).catch(() => {});
    await browser.close();
    await server.stop();
  }
}

export async function login(page, server, next = "") {
  await page.goto(server.base + "/admin/login" + (next ? "?next=" + encodeURIComponent(next) : ""));
  // By id: the labels are in the page's language.
  await page.locator("#user").fill("admin");
  await page.locator("#password").fill(PASSWORD);
  await page.locator("#login-submit").click();
  await page.waitForURL((u) => !u.pathname.startsWith("/admin/login"));
  await page.waitForSelector("body[data-ready='1']");
}

export async function ready(page) {
  await page.waitForSelector("body[data-ready='1']");
}

// Chooses a language with the page's selector: the page loads again in it.
export async function chooseLanguage(page, code) {
  await Promise.all([page.waitForEvent("load"), page.locator("#lang-select").selectOption(code)]);
  await page.waitForFunction((c) => document.documentElement.lang === c, code);
}

export function openssl(args, opts = {}) {
  return execFileSync("openssl", args, { encoding: "utf8", ...opts });
}
