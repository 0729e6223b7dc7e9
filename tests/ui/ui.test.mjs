// Browser tests of the admin UI: the real binary, headless Debian chromium.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, writeFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { withUi, shot, login, ready, chooseLanguage, freePort, openssl, PASSWORD } from "./harness.mjs";

test("log in (user name first, then password), wrong password shown at its field, log out", () =>
  withUi("01-login", async (server, { page }) => {
    await page.goto(server.base + "/admin/webserver");
    await page.waitForURL(/\/admin\/login/);
    const order = await page.$$eval("form#login input", (els) => els.map((e) => e.id));
    // The second factor's code field follows, hidden until the server asks for a code.
    assert.deepEqual(order, ["user", "password", "code"]);
    assert.equal(await page.locator("#code").isVisible(), false);
    await page.getByLabel("User name").fill("admin");
    await page.keyboard.press("Tab");
    assert.equal(await page.evaluate(() => document.activeElement.id), "password");
    await page.keyboard.type("wrong-password");
    await page.keyboard.press("Enter");
    await page.waitForSelector("#password[aria-invalid=true]");
    assert.match(await page.locator("#password-err[role=alert]").innerText(), /Wrong user name or password/);
    await shot(page, "01-login-refused");
    await page.getByLabel("Password").fill(PASSWORD);
    await page.keyboard.press("Enter");
    await page.waitForURL(/\/admin\/webserver$/);
    await ready(page);
    assert.match(await page.locator("#who").innerText(), /admin/);
    assert.equal(await page.locator("h1").innerText(), "Web Server");
    await page.locator("#logout").click();
    await page.waitForURL(/\/admin\/login/);
    const r = await page.evaluate(() => fetch("/api/v1/session", { headers: { "x-portcullis-ui": "1" } }).then((r) => r.status));
    assert.equal(r, 401);
  }));

test("add an HTTP port and Set: the new port answers", () =>
  withUi("02-add-port", async (server, { page }) => {
    await login(page, server, "/admin/webserver");
    const port = await freePort();
    await page.locator("#add-port").click();
    const inputs = page.locator(".ports input.port");
    assert.equal(await inputs.count(), 2);
    await inputs.nth(1).fill(String(port));
    assert.equal(await inputs.nth(1).getAttribute("aria-label"), "HTTP port 2");
    await page.locator("#set").click();
    await page.waitForFunction(() => /running now/.test(document.getElementById("page-status").textContent));
    const r = await fetch(`http://127.0.0.1:${port}/healthz`);
    assert.equal(r.status, 200);
    assert.match(await page.locator("#new-addresses").innerText(), new RegExp(`http://127\\.0\\.0\\.1:${port}/admin/webserver`));
    const ws = await server.api("GET", "/api/v1/webserver");
    assert.deepEqual(ws.json.http_ports, [server.http, port]);
  }));

test("a port of its own for the LAN (addresses) and one for the Internet (no admin UI): Set, the API shows both", () =>
  withUi("02b-port-policy", async (server, { page }) => {
    await login(page, server, "/admin/webserver");
    const [lan, internet] = [await freePort(), await freePort()];
    await page.locator("#add-port").click();
    await page.locator("#add-port").click();
    const rows = page.locator(".port-row");
    await rows.nth(1).locator("input.port").fill(String(lan));
    await rows.nth(1).locator("input.port-addresses").fill("127.0.0.2");
    await rows.nth(2).locator("input.port").fill(String(internet));
    await rows.nth(2).locator("input.port-admin").uncheck();
    // Taking the admin UI off the port in use is warned about as it is changed.
    await rows.nth(0).locator("input.port-admin").uncheck();
    assert.match(await page.locator("#proto-warning").innerText(), new RegExp(`\\(${server.http}\\) would no longer allow the admin UI`));
    await rows.nth(0).locator("input.port-admin").check();
    assert.equal(await page.locator("#proto-warning").innerText(), "");
    await shot(page, "02b-port-policy");
    await page.locator("#set").click();
    await page.waitForFunction(() => /running now/.test(document.getElementById("page-status").textContent));
    const ws = await server.api("GET", "/api/v1/webserver");
    assert.deepEqual(ws.json.http_ports, [
      server.http,
      { port: lan, addresses: ["127.0.0.2"], redirect_to_https: null, admin: true },
      { port: internet, addresses: [], redirect_to_https: null, admin: false },
    ]);
    // The Internet port is not offered as a place to go on to.
    const links = await page.locator("#new-addresses").innerText();
    assert.match(links, new RegExp(`:${lan}/admin/webserver`));
    assert.doesNotMatch(links, new RegExp(`:${internet}/`));
    // A bad address: the message sits under the row's address field.
    await rows.nth(1).locator("input.port-addresses").fill("127.0.0.x");
    await page.locator("#set").click();
    await page.waitForSelector("input.port-addresses[aria-invalid=true]");
    const err = await rows.nth(1).locator(".port-options .field:first-child .err").innerText();
    assert.match(err, /IP address|not valid/);
    const r = await fetch(`http://127.0.0.1:${internet}/api/v1/webserver`);
    assert.equal(r.status, 403);
    assert.equal((await r.json()).error.code, "admin_not_allowed");
  }));

test("Close offers to store; store it, reboot, the port is still there", () =>
  withUi("03-close-store-reboot", async (server, { page }) => {
    await login(page, server, "/admin/webserver");
    const port = await freePort();
    await page.locator("#add-port").click();
    await page.locator(".ports input.port").nth(1).fill(String(port));
    await page.locator("#set").click();
    await page.waitForFunction(() => /running now/.test(document.getElementById("page-status").textContent));
    await page.locator("#close").click();
    const dialog = page.locator("dialog[open]");
    await dialog.waitFor();
    assert.match(await dialog.innerText(), /not stored permanently \(sections: Web Server\)/);
    await shot(page, "03-close-offers-store");
    await dialog.getByRole("button", { name: "Store" }).click();
    await page.waitForURL(/\/admin\/$/);
    await ready(page);
    await page.waitForFunction(() => /stored permanently/.test(document.getElementById("page-status").textContent));
    const stored = JSON.parse(readFileSync(join(server.data, "config.json"), "utf8"));
    assert.deepEqual(stored.webserver.http_ports, [server.http, port]);
    assert.match(await page.locator("#unsaved").innerText(), /is stored/);
    await page.goto(server.base + "/admin/webserver");
    await ready(page);
    await page.locator("#reboot").click();
    await page.locator("dialog[open]").getByRole("button", { name: "Reboot" }).click();
    await page.waitForFunction(() => /Rebooted/.test(document.getElementById("page-status").textContent));
    const events = await server.api("GET", "/api/v1/events");
    assert.ok(events.json.events.some((e) => e.kind === "reboot"), "a reboot event");
    await page.reload();
    await ready(page);
    const values = await page.locator(".ports input.port").evaluateAll((els) => els.map((e) => e.value));
    assert.deepEqual(values, [String(server.http), String(port)]);
    assert.equal((await fetch(`http://127.0.0.1:${port}/healthz`)).status, 200);
  }));

test("generate a certificate: working state, then the new fingerprint; downloads become active", () =>
  withUi("04-generate", async (server, { page }) => {
    await login(page, server, "/admin/webserver");
    const before = await page.locator("#cert-fingerprint").innerText();
    assert.match(before, /^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
    assert.equal(await page.locator("#download-cert").isDisabled(), true, "no individual certificate yet");
    assert.equal(await page.locator("#download-request").isDisabled(), true, "no request yet");
    await page.getByLabel("Common name (CN)").fill("camera.example.net");
    await page.getByLabel("Country (C)").fill("DE");
    await page.getByLabel("Organization (O)").fill("Example AG");
    await page.getByLabel("Key type").selectOption("rsa2048");
    await page.locator("#generate-submit").click();
    // The long step shows that it is working.
    await page.waitForFunction(() => document.getElementById("gen-status").textContent.includes("Working") || !document.getElementById("generate-form").hasAttribute("aria-busy"));
    await page.waitForFunction((b) => document.getElementById("cert-fingerprint").textContent !== b, before, { timeout: 60000 });
    const after = await page.locator("#cert-fingerprint").innerText();
    const api = await server.api("GET", "/api/v1/certificate");
    assert.equal(after, api.json.certificate.fingerprint_sha256);
    assert.match(await page.locator("#cert-subject").innerText(), /CN=camera\.example\.net/);
    assert.match(await page.locator("#cert-key").innerText(), /RSA 2048/);
    // The status message is set 30 ms after the change (so that screen readers announce it): await it.
    await page.waitForFunction((fp) => document.getElementById("page-status").textContent.includes(fp), after, { timeout: 10000 });
    assert.equal(await page.locator("#download-cert").isDisabled(), false);
    assert.equal(await page.locator("#download-request").isDisabled(), false);
    const [download] = await Promise.all([page.waitForEvent("download"), page.locator("#download-request").click()]);
    const csr = readFileSync(await download.path(), "utf8");
    assert.match(csr, /BEGIN CERTIFICATE REQUEST/);
  }));

test("the working state is visible during RSA generation", () =>
  withUi("05-generate-working", async (server, { page }) => {
    await login(page, server, "/admin/webserver");
    // Hold the answer back so that the working state can be seen and photographed.
    let release;
    const held = new Promise((r) => (release = r));
    await page.route("**/api/v1/certificate/generate", async (route) => { await held; await route.continue(); });
    await page.getByLabel("Common name (CN)").fill("slow.example.net");
    await page.locator("#generate-submit").click();
    await page.waitForSelector("#generate-form[aria-busy=true]");
    assert.match(await page.locator("#gen-status[role=status]").innerText(), /Working: generating a 2048-bit RSA key/);
    assert.equal(await page.locator("#generate-submit").isDisabled(), true);
    await shot(page, "05-generate-working");
    release();
    await page.waitForFunction(() => !document.getElementById("generate-form").hasAttribute("aria-busy"), null, { timeout: 60000 });
    assert.match(await page.locator("#cert-subject").innerText(), /slow\.example\.net/);
  }));

test("upload a certificate and key with a passphrase: a wrong one is refused at its field, the right one is in use", () =>
  withUi("06-upload", async (server, { page }) => {
    const dir = mkdtempSync(join(tmpdir(), "portcullis-ui-cert-"));
    try {
      const key = join(dir, "key.pem");
      const cert = join(dir, "cert.pem");
      openssl(["req", "-x509", "-newkey", "rsa:2048", "-keyout", key, "-out", cert, "-days", "30", "-subj", "/CN=upload.example.net",
        "-addext", "subjectAltName=DNS:upload.example.net", "-passout", "pass:right-passphrase"], { stdio: "pipe" });
      assert.match(readFileSync(key, "utf8"), /ENCRYPTED PRIVATE KEY/);
      const fp = openssl(["x509", "-in", cert, "-noout", "-fingerprint", "-sha256"]).trim().split("=")[1];
      await login(page, server, "/admin/webserver");
      const before = await page.locator("#cert-fingerprint").innerText();
      await page.getByLabel("Upload X.509 certificate from file").first().setInputFiles(cert);
      await page.getByLabel("Upload X.509 private key from file").setInputFiles(key);
      await page.getByLabel("Passphrase").fill("wrong-passphrase");
      await page.locator("#upload-submit").click();
      await page.waitForSelector("#up-pass[aria-invalid=true]");
      const msg = await page.locator("#up-pass-err[role=alert]").innerText();
      assert.match(msg, /passphrase/i);
      assert.equal(await page.locator("#up-pass").getAttribute("aria-describedby"), "up-pass-hint up-pass-err");
      assert.equal(await page.locator("#cert-fingerprint").innerText(), before, "nothing changed");
      await page.locator("#up-pass").scrollIntoViewIfNeeded();
      await shot(page, "06-upload-wrong-passphrase");
      await page.getByLabel("Passphrase").fill("right-passphrase");
      await page.locator("#upload-submit").click();
      await page.waitForFunction((f) => document.getElementById("cert-fingerprint").textContent === f, fp);
      assert.equal(await page.locator("#up-pass").getAttribute("aria-invalid"), null);
      assert.match(await page.locator("#cert-source").innerText(), /individual/);
      assert.equal(await page.locator("#download-cert").isDisabled(), false);
      assert.equal(await page.locator("#download-request").isDisabled(), true, "no request after an upload");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }));

test("intrusion detection: a threshold below 5 is refused, with the message next to the field", () =>
  withUi("07-intrusion-threshold", async (server, { page }) => {
    await login(page, server, "/admin/webserver");
    const field = page.getByLabel("Notification threshold");
    assert.equal(await field.inputValue(), "10");
    await field.fill("4");
    await page.getByLabel("Deadtime (minutes)").fill("0");
    await page.locator("#set").click();
    await page.waitForSelector("#id-threshold[aria-invalid=true]");
    const alert = page.locator("#id-threshold-err");
    assert.equal(await alert.getAttribute("role"), "alert");
    assert.match(await alert.innerText(), /5/);
    assert.equal(await page.evaluate(() => document.activeElement.id), "id-threshold", "focus moves to the field");
    // The message is next to the field: inside the same field container.
    assert.equal(await page.evaluate(() => document.getElementById("id-threshold").parentElement.contains(document.getElementById("id-threshold-err"))), true);
    const ws = await server.api("GET", "/api/v1/webserver");
    assert.equal(ws.json.intrusion_detection.notification_threshold, 10, "nothing changed");
    assert.equal(ws.json.intrusion_detection.deadtime_minutes, 60, "nothing changed");
    await page.locator("#id-threshold").scrollIntoViewIfNeeded();
    await shot(page, "07-intrusion-threshold-refused");
    await field.fill("5");
    await page.locator("#set").click();
    await page.waitForFunction(() => /running now/.test(document.getElementById("page-status").textContent));
    assert.equal(await page.locator("#id-threshold").getAttribute("aria-invalid"), null);
    const ws2 = await server.api("GET", "/api/v1/webserver");
    assert.equal(ws2.json.intrusion_detection.notification_threshold, 5);
    assert.equal(ws2.json.intrusion_detection.deadtime_minutes, 0);
  }));

test("the language selector on the login page and on every page; the choice is kept; German errors are German", () =>
  withUi("08-german", async (server, { page }) => {
    await page.goto(server.base + "/admin/login");
    assert.equal(await page.evaluate(() => document.documentElement.lang), "en");
    assert.equal(await page.locator("#user-label").innerText(), "User name");
    await chooseLanguage(page, "de");
    assert.equal(await page.locator("#user-label").innerText(), "Benutzername");
    assert.equal(await page.locator("#lang-select").getAttribute("aria-label"), "Sprache");
    await login(page, server, "/admin/webserver");
    assert.equal(await page.locator("h1").innerText(), "Webserver");
    assert.equal(await page.locator("#set").innerText(), "Setzen");
    assert.ok(await page.getByLabel("Benachrichtigungsschwelle").isVisible());
    for (const p of ["", "access-control", "profiles", "logfile", "events", "blocked", "users"]) {
      await page.goto(server.base + "/admin/" + p);
      await ready(page);
      assert.equal(await page.locator("#lang-select").inputValue(), "de", p + " has the selector, on German");
      assert.equal(await page.evaluate(() => document.documentElement.lang), "de");
    }
    await page.goto(server.base + "/admin/webserver");
    await ready(page);
    await page.getByLabel("Benachrichtigungsschwelle").fill("3");
    await page.getByRole("button", { name: "Setzen" }).click();
    await page.waitForSelector("#id-threshold[aria-invalid=true]");
    // The sentence for people, in German, with no English in it; the
    // technical detail (the server's English message) is the tooltip.
    assert.equal(await page.locator("#id-threshold-err").innerText(), "Der Wert liegt außerhalb des erlaubten Bereichs.");
    assert.match(await page.locator("#id-threshold-err").getAttribute("title"), /at least 5/);
    await page.locator("#id-threshold").scrollIntoViewIfNeeded();
    await shot(page, "08-german-webserver");
    await chooseLanguage(page, "en");
    await ready(page);
    assert.equal(await page.locator("#set").innerText(), "Set");
    assert.equal(await page.evaluate(() => document.documentElement.lang), "en");
  }));

test("a Set that closes the port in use is provisional: banner with deadline and links, confirmed from the new address", () =>
  withUi("09-confirm", async (server, { page }) => {
    await login(page, server, "/admin/webserver");
    const port = await freePort();
    await page.locator(".ports input.port").first().fill(String(port));
    assert.match(await page.locator("#proto-warning").innerText(), new RegExp(`\\(${server.http}\\) is no longer in the list`));
    await page.locator("#set").click();
    await page.waitForSelector("#pending:not([hidden]) #pending-confirm");
    const banner = await page.locator("#pending").innerText();
    assert.match(banner, /waiting for confirmation/);
    assert.match(banner, /s left/);
    const link = `http://127.0.0.1:${port}/admin/webserver`;
    assert.equal(await page.locator(`#pending a[href="${link}"]`).count(), 1);
    await shot(page, "09-pending-banner");
    // Confirming through the old port is refused with the server's reason.
    await page.locator("#pending-confirm").click();
    await page.waitForFunction(() => /confirm through the new configuration/.test(document.querySelector("#pending [role=alert]").textContent));
    await page.locator(`#pending a[href="${link}"]`).click();
    await page.waitForURL(link);
    await ready(page);
    await page.waitForSelector("#pending-confirm");
    await page.locator("#pending-confirm").click();
    await page.waitForSelector("#pending[hidden]", { state: "attached" });
    const st = await fetch(`http://127.0.0.1:${port}/api/v1/config/status`, { headers: { authorization: "Basic " + Buffer.from("admin:" + PASSWORD).toString("base64") } }).then((r) => r.json());
    assert.equal(st.pending, null);
    await page.waitForFunction(() => /confirmed/.test(document.getElementById("page-status").textContent), null, { timeout: 10000 });
  }));

test("notification profiles: create an IP Notify profile, send a test to a local receiver, select it for intrusion detection", () =>
  withUi("10-profiles", async (server, { page }) => {
    const { createServer } = await import("node:net");
    let received = "";
    const receiver = createServer((sock) => { sock.on("data", (d) => (received += d)); sock.on("end", () => sock.end()); });
    await new Promise((r) => receiver.listen(0, "127.0.0.1", r));
    try {
      await login(page, server, "/admin/profiles");
      await page.locator("#new-ip-notify").click();
      await page.getByLabel("Name", { exact: true }).fill("local");
      await page.getByLabel("Destinations").fill(`127.0.0.1:${receiver.address().port}`);
      await page.getByLabel("Protocol").selectOption("tcp");
      await page.locator("#profile-save").click();
      await page.waitForSelector("text=local");
      await page.getByRole("button", { name: "Send a test through local" }).click();
      await page.waitForFunction(() => /Delivered|Not delivered/.test(document.getElementById("test-ip-notify-local").textContent), null, { timeout: 30000 });
      assert.match(await page.locator("#test-ip-notify-local").innerText(), /Delivered/);
      assert.match(received, /test/);
      await shot(page, "10-profiles-test");
      // An invalid profile is refused at its field.
      await page.locator("#new-email").click();
      await page.getByLabel("Name", { exact: true }).fill("mail");
      await page.getByLabel("SMTP server").fill("smtp.example.net");
      await page.locator("#profile-save").click();
      await page.waitForSelector("#profile-form [aria-invalid=true]");
      assert.notEqual(await page.locator("#profile-form .err:not(:empty)").first().innerText(), "");
      await page.goto(server.base + "/admin/webserver");
      await ready(page);
      await page.getByLabel("Network message (IP Notify)").selectOption("local");
      await page.locator("#set").click();
      await page.waitForFunction(() => /running now/.test(document.getElementById("page-status").textContent));
      const ws = await server.api("GET", "/api/v1/webserver");
      assert.equal(ws.json.intrusion_detection.ip_notify_profile, "local");
    } finally {
      receiver.close();
    }
  }));

test("access control, blocked addresses (unblock), logfile, event log and users pages", () =>
  withUi("11-pages", async (server, { page }) => {
    // The test's own address stays usable: it is a trusted proxy, and the
    // failures come from a client named in X-Forwarded-For.
    await server.api("PUT", "/api/v1/access-control", { enabled: true, no_match: "allow", rules: [{ kind: "deny", source: "192.0.2.0/24" }], trusted_proxies: ["127.0.0.1"] });
    const ws = await server.api("GET", "/api/v1/webserver");
    await server.api("PUT", "/api/v1/webserver", { ...ws.json, intrusion_detection: { ...ws.json.intrusion_detection, notification_threshold: 5, block_ip: true } });
    for (let i = 0; i < 6; i++) {
      await fetch(`${server.base}/api/v1/webserver`, { headers: { "x-forwarded-for": "198.51.100.7", authorization: "Basic " + Buffer.from("admin:wrong").toString("base64") } });
    }
    await login(page, server, "/admin/access-control");
    assert.equal(await page.getByLabel("Enable IP-level access control").isChecked(), true);
    assert.equal(await page.locator("[data-field='rules[0].source']").inputValue(), "192.0.2.0/24");
    await page.locator("#add-rule").click();
    await page.locator("[data-field='rules[1].source']").fill("not-an-address");
    await page.locator("#set").click();
    await page.waitForSelector("[data-field='rules[1].source'][aria-invalid=true]");
    assert.notEqual(await page.locator("#main .err:not(:empty)").first().innerText(), "");
    await shot(page, "11-access-control-refused");
    await page.goto(server.base + "/admin/blocked");
    await ready(page);
    // The factory block has no end: until the next reboot, and the page says so.
    assert.equal(await page.locator("tbody td.until").first().innerText(), "next reboot");
    await page.getByRole("button", { name: "Unblock 198.51.100.7" }).click();
    await page.waitForFunction(() => /no longer blocked/.test(document.getElementById("page-status").textContent));
    assert.deepEqual((await server.api("GET", "/api/v1/blocked")).json, []);
    // A block with a length shows until when it lasts.
    const ws2 = await server.api("GET", "/api/v1/webserver");
    await server.api("PUT", "/api/v1/webserver", { ...ws2.json, intrusion_detection: { ...ws2.json.intrusion_detection, block_duration_seconds: 3600 } });
    for (let i = 0; i < 6; i++) {
      await fetch(`${server.base}/api/v1/webserver`, { headers: { "x-forwarded-for": "198.51.100.8", authorization: "Basic " + Buffer.from("admin:wrong").toString("base64") } });
    }
    const timed = (await server.api("GET", "/api/v1/blocked")).json;
    assert.equal(timed.length, 1);
    assert.equal(Date.parse(timed[0].until) - Date.parse(timed[0].since), 3600 * 1000);
    await page.reload();
    await ready(page);
    const until = await page.locator("tbody td.until").first().innerText();
    assert.ok(until !== "" && until !== "next reboot", until);
    await page.getByRole("button", { name: "Unblock 198.51.100.8" }).click();
    await page.waitForFunction(() => /198\.51\.100\.8 is no longer blocked/.test(document.getElementById("page-status").textContent));
    await page.goto(server.base + "/admin/logfile");
    await ready(page);
    assert.match(await page.locator("table").innerText(), /198\.51\.100\.7/);
    await shot(page, "11-logfile");
    await page.goto(server.base + "/admin/events");
    await ready(page);
    const events = await page.locator("table").innerText();
    assert.match(events, /client blocked/);
    // The attempt's user name is no actor: said in the message; a change says what it touched.
    const blocked = await page.locator("tr.client_blocked").first().innerText();
    assert.match(blocked, /user name tried: admin/);
    assert.doesNotMatch(blocked.split("\t")[2] || "", /admin/, "the user column of a block");
    assert.match(events, /changed: webserver\.intrusion_detection\.block_ip, webserver\.intrusion_detection\.notification_threshold/);
    await shot(page, "11-events");
    await page.goto(server.base + "/admin/users");
    await ready(page);
    await page.getByLabel("User name").fill("viewer");
    await page.getByLabel("Password", { exact: true }).fill("viewer-password-1");
    await page.getByRole("button", { name: "Add account" }).click();
    await page.waitForSelector("text=viewer");
    const users = await server.api("GET", "/api/v1/users");
    assert.ok(users.json.some((u) => u.name === "viewer" && u.group === "users"));
    await shot(page, "11-users");
  }));

test("your own password is changed only with the current one; rules that deny your own address are refused, then applied provisionally", () =>
  withUi("13-own-password-and-lockout", async (server, { page }) => {
    await login(page, server, "/admin/users");
    await page.getByRole("button", { name: "Change admin" }).click();
    const dialog = page.locator("dialog[open]");
    assert.equal(await dialog.locator("input").first().getAttribute("id"), "cp-current", "the current password comes first");
    await dialog.getByLabel("New password").fill("ui-test-password-2");
    await dialog.getByRole("button", { name: "Save" }).click();
    await page.waitForSelector("#cp-current[aria-invalid=true]");
    assert.match(await page.locator("#cp-current-err").innerText(), /current password/);
    await dialog.getByLabel("Current password").fill("not-the-password");
    await dialog.getByRole("button", { name: "Save" }).click();
    await page.waitForFunction(() => /wrong/.test(document.getElementById("cp-current-err").textContent));
    await shot(page, "13-current-password-wrong");
    await dialog.getByRole("button", { name: "Cancel" }).click();
    assert.equal((await server.api("GET", "/api/v1/session")).status, 200, "the password did not change");

    await page.goto(server.base + "/admin/access-control");
    await ready(page);
    await page.getByLabel("Enable IP-level access control").check();
    await page.getByLabel("When no rule matches").selectOption("deny");
    await page.locator("#set").click();
    await page.waitForSelector("#force");
    assert.match(await page.locator("#rules-err").innerText(), /127\.0\.0\.1/);
    assert.match(await page.locator("#force-box").innerText(), /rolled back by themselves unless you confirm/);
    assert.equal((await server.api("GET", "/api/v1/access-control")).json.enabled, false, "refused: nothing changed");
    await shot(page, "13-lockout-refused");
    await page.locator("#force").click();
    await page.waitForFunction(() => /running provisionally/.test(document.getElementById("page-status").textContent));
    assert.match(await page.locator("#page-status").innerText(), /rolled back at/);
  }));

test("fleet: a bad syslog address is refused at its field and changes nothing; CrowdSec is set and its key never shown", () =>
  withUi("13-fleet", async (server, { page }) => {
    await login(page, server, "/admin/fleet");
    await page.locator("#add-destination").click();
    const address = page.locator('[data-field="destinations[0].address"]');
    await address.fill("not a host name:1");
    await page.locator("#set-syslog").click();
    await page.waitForSelector('[data-field="destinations[0].address"][aria-invalid=true]');
    const s = await server.api("GET", "/api/v1/syslog");
    assert.equal(s.json.destinations.length, 0, "nothing changed");
    await page.getByLabel("Use CrowdSec").check();
    await page.getByLabel("Local API URL").fill("http://127.0.0.1:9");
    await page.getByLabel("Bouncer key").fill("bouncer-key-123");
    await page.locator("#set-crowdsec").click();
    await page.waitForFunction(() => /Settings set/.test(document.getElementById("page-status").textContent));
    const c = await server.api("GET", "/api/v1/crowdsec");
    assert.equal(c.json.enabled, true);
    assert.equal(c.json.lapi_url, "http://127.0.0.1:9");
    assert.equal(c.json.bouncer_key ?? null, null, "the key is never read back");
    assert.equal(await page.getByLabel("Bouncer key").inputValue(), "", "nor shown");
    await shot(page, "13-fleet");
  }));

test("API tokens: made on the users page, the secret shown once, refused at its field, used by a client, revoked", () =>
  withUi("15-tokens", async (server, { page }) => {
    await server.api("PUT", "/api/v1/users/viewer", { group: "users", password: "viewer-password-1" });
    await login(page, server, "/admin/users");
    const form = page.locator("#token-add");
    // A scope wider than the account's rights is refused at its field; nothing made.
    await form.getByLabel("Name").fill("too-wide");
    await form.getByLabel("Scope").selectOption("operator");
    await form.getByLabel("Account").selectOption("viewer");
    await form.getByRole("button", { name: "Create token" }).click();
    await page.waitForSelector("#tk-scope[aria-invalid=true]");
    assert.match(await page.locator("#tk-scope-err").innerText(), /"read-only" at most/);
    assert.deepEqual((await server.api("GET", "/api/v1/tokens")).json, []);
    await form.getByLabel("Name").fill("scraper");
    await form.getByLabel("Scope").selectOption("read-only");
    await form.getByLabel("Account").selectOption("admin");
    await form.getByLabel("Allowed sources").fill("127.0.0.1, 10.0.0.0/8");
    await form.getByRole("button", { name: "Create token" }).click();
    const dialog = page.locator("dialog[open]");
    await dialog.waitFor();
    const secret = await dialog.locator("#tk-secret").inputValue();
    assert.match(secret, /^pcl_[A-Za-z0-9_-]{43}$/);
    assert.match(await dialog.innerText(), /shown only once/);
    await shot(page, "15-token-secret");
    await dialog.getByRole("button", { name: "Close" }).click();
    // The dialog is removed on its "close" event: gone from the page, not just hidden.
    await page.locator("#tk-secret").waitFor({ state: "detached" });
    assert.doesNotMatch(await page.content(), new RegExp(secret.slice(4)));
    const row = page.locator("#tokens tbody tr", { hasText: "scraper" });
    assert.match(await row.innerText(), /read-only[\s\S]*127\.0\.0\.1, 10\.0\.0\.0\/8/);
    const used = await fetch(server.base + "/api/v1/webserver", { headers: { authorization: "Bearer " + secret } });
    assert.equal(used.status, 200);
    await shot(page, "15-tokens");
    await row.getByRole("button", { name: "Revoke the token scraper" }).click();
    await page.locator("dialog[open]").getByRole("button", { name: "Revoke" }).click();
    await page.waitForFunction(() => /revoked/.test(document.getElementById("page-status").textContent));
    assert.deepEqual((await server.api("GET", "/api/v1/tokens")).json, []);
    const refused = await fetch(server.base + "/api/v1/webserver", { headers: { authorization: "Bearer " + secret } });
    assert.equal(refused.status, 401);
  }));

test("account lockout: off by default, a threshold below 5 refused at its field, a valid one set", () =>
  withUi("16-account-lockout", async (server, { page }) => {
    await login(page, server, "/admin/webserver");
    const threshold = page.getByLabel("Account lockout after failed logins");
    assert.equal(await threshold.inputValue(), "0", "off by factory default");
    assert.equal(await page.getByLabel("Account lockout (minutes)").inputValue(), "15");
    await threshold.fill("3");
    await page.locator("#set").click();
    await page.waitForSelector("[data-field='intrusion_detection.account_lockout_threshold'][aria-invalid=true]");
    assert.equal((await server.api("GET", "/api/v1/webserver")).json.intrusion_detection.account_lockout_threshold, 0, "nothing changed");
    await threshold.fill("20");
    await page.getByLabel("Account lockout (minutes)").fill("30");
    await page.locator("#set").click();
    await page.waitForFunction(() => /running now/.test(document.getElementById("page-status").textContent));
    const id = (await server.api("GET", "/api/v1/webserver")).json.intrusion_detection;
    assert.deepEqual([id.account_lockout_threshold, id.account_lockout_minutes], [20, 30]);
  }));
