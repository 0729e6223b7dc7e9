// The UI's texts in the page's language. The server chose the language (the
// operator's kept choice, else the browser's Accept-Language, else English),
// rendered the page in it and named it in <html lang>; this module loads that
// language's texts only (i18n/<lang>.js, generated from crates/server/i18n/).
export const LANGUAGES = [
  ["en", "English"],
  ["de", "Deutsch"],
  ["es", "Español"],
  ["fr", "Français"],
  ["it", "Italiano"],
  ["ja", "日本語"],
  ["ru", "Русский"],
  ["zh", "中文"],
];

// Locales for dates and numbers.
const LOCALES = { en: "en-GB", de: "de-DE", es: "es-ES", fr: "fr-FR", it: "it-IT", ja: "ja-JP", ru: "ru-RU", zh: "zh-CN" };

// Cookie that keeps the operator's choice (read by the server).
const COOKIE = "portcullis_lang";

const page = document.documentElement.lang;
const L = LANGUAGES.some(([c]) => c === page) ? page : "en";
const STRINGS = (await import(`./i18n/${L}.js`)).default;

export const lang = () => L;
export const locale = () => LOCALES[L];

// Keeps the operator's choice in the browser (a year); the page must be
// loaded again to show it.
export function setLang(l) {
  const secure = location.protocol === "https:" ? "; Secure" : "";
  document.cookie = `${COOKIE}=${l}; Path=/admin; Max-Age=31536000; SameSite=Strict${secure}`;
}

export const has = (key) => Object.hasOwn(STRINGS, key);

export function t(key, vars) {
  let s = STRINGS[key];
  if (s === undefined) {
    console.warn("i18n: missing text " + key);
    s = key;
  }
  return vars ? s.replace(/\{(\w+)\}/g, (m, k) => (k in vars ? String(vars[k]) : m)) : s;
}

// The text of an API error: the server words `message` in the language the
// UI asked for (Accept-Language); the English technical detail, if any, is
// for the log and the tooltip.
export function errorText(error) {
  return error.message || error.code;
}
