// Browser test of the ACME section of the Web Server page: the real binary,
// headless Debian chromium.
import { test } from "node:test";
import assert from "node:assert/strict";
import { withUi, shot, login, ready } from "./harness.mjs";

test("ACME: a plain-HTTP directory is refused at its field, valid settings are kept, Enrol now shows the CA's error", () =>
  withUi("12-acme", async (server, { page }) => {
    await login(page, server, "/admin/webserver");
    assert.equal(await page.locator("#acme-managed").innerText(), "not managed by ACME");
    const dir = page.getByLabel("ACME directory URL");
    await dir.fill("http://example.invalid");
    await page.getByLabel("Identifiers (DNS names or IP addresses)").fill("cam.example.com");
    await page.getByLabel("Enable automatic certificates").check();
    await page.locator("#acme-save").click();
    await page.waitForSelector("#acme-directory[aria-invalid=true]");
    const alert = page.locator("#acme-directory-err");
    assert.equal(await alert.getAttribute("role"), "alert");
    assert.match(await alert.innerText(), /https/);
    assert.equal(await page.evaluate(() => document.getElementById("acme-directory").parentElement.contains(document.getElementById("acme-directory-err"))), true);
    assert.equal(await page.evaluate(() => document.activeElement.id), "acme-directory", "focus moves to the field");
    const before = await server.api("GET", "/api/v1/certificate/acme");
    assert.equal(before.json.settings.directory_url, "", "nothing changed");
    await page.locator("#acme-directory").scrollIntoViewIfNeeded();
    await shot(page, "12-acme-refused");

    await dir.fill("https://127.0.0.1:1/dir");
    await page.getByLabel("Contact e-mail addresses").fill("ops@example.com");
    await page.getByLabel("Challenge").selectOption("tls-alpn-01");
    await page.locator("#acme-save").click();
    await page.waitForFunction(() => /ACME settings are saved/.test(document.getElementById("page-status").textContent));
    assert.equal(await page.locator("#acme-directory").getAttribute("aria-invalid"), null);
    const saved = await server.api("GET", "/api/v1/certificate/acme");
    assert.equal(saved.json.settings.directory_url, "https://127.0.0.1:1/dir");
    assert.deepEqual(saved.json.settings.identifiers, ["cam.example.com"]);
    assert.deepEqual(saved.json.settings.contact, ["mailto:ops@example.com"]);

    await page.reload();
    await ready(page);
    assert.equal(await page.locator("#acme-directory").inputValue(), "https://127.0.0.1:1/dir");
    assert.equal(await page.locator("#acme-identifiers").inputValue(), "cam.example.com");
    assert.equal(await page.locator("#acme-contact").inputValue(), "ops@example.com");
    assert.equal(await page.locator("#acme-challenge").inputValue(), "tls-alpn-01");
    assert.equal(await page.locator("#acme-enabled").isChecked(), true);

    const fingerprint = await page.locator("#cert-fingerprint").innerText();
    await page.locator("#acme-enrol").click();
    // Working state while the request runs (it may already be over).
    await page.waitForFunction(() => document.getElementById("acme-working").textContent.includes("Working") || !document.getElementById("acme-form").hasAttribute("aria-busy"));
    await page.waitForFunction(() => document.querySelector("#acme-form .form-alert").textContent !== "", null, { timeout: 90000 });
    const msg = await page.locator("#acme-form .form-alert").innerText();
    assert.match(msg, /enrolment failed/);
    const enrol = await server.api("GET", "/api/v1/certificate/acme");
    assert.ok(enrol.json.status.last_error, "the server reports the error");
    assert.ok(msg.length > "The enrolment failed; the current certificate stays in use. ".length + 3, "the CA's message is shown: " + msg);
    assert.equal(await page.locator("#acme-form .form-alert").getAttribute("role"), "alert");
    assert.equal(await page.locator("#acme-last-error").innerText(), enrol.json.status.last_error);
    assert.equal(await page.locator("#acme-managed").innerText(), "not managed by ACME");
    assert.equal(await page.locator("#cert-fingerprint").innerText(), fingerprint, "the certificate in use is kept");
    assert.equal(await page.locator("#acme-enrol").isDisabled(), false);
    await page.locator("#acme-form").scrollIntoViewIfNeeded();
  }));
