//! Records the build time, so that a device whose clock is obviously unset
//! (before the firmware was built: no battery-backed clock, booted in 1970)
//! can be recognised; and turns the translations (`i18n/<lang>.json`) into
//! what the binary embeds: one JavaScript module of UI texts per language,
//! the HTML pages rendered in each language, and the table of API error
//! texts.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The languages, in the order of `portcullis::i18n::Lang`; English first
/// (the fallback for a text a language lacks).
const LANGS: [&str; 8] = ["en", "de", "es", "fr", "it", "ja", "ru", "zh"];

/// The HTML pages rendered per language: `{{lang}}` and `{{key}}` (a UI text,
/// HTML-escaped) are replaced.
const PAGES: [&str; 2] = ["app.html", "login.html"];

type Texts = serde_json::Map<String, serde_json::Value>;

fn main() {
    let now =
        std::env::var("SOURCE_DATE_EPOCH").ok().and_then(|s| s.parse::<u64>().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        });
    println!("cargo:rustc-env=PORTCULLIS_BUILD_UNIX={now}");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    if let Err(e) = translations() {
        // A broken translation file must stop the build, saying which.
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn translations() -> Result<(), String> {
    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").map_err(|e| e.to_string())?);
    let out = PathBuf::from(std::env::var("OUT_DIR").map_err(|e| e.to_string())?);
    let mut ui: Vec<Texts> = Vec::new();
    let mut errors: Vec<Texts> = Vec::new();
    for lang in LANGS {
        let path = dir.join("i18n").join(format!("{lang}.json"));
        println!("cargo:rerun-if-changed={}", path.display());
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut file: Texts = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut section = |name: &str| -> Result<Texts, String> {
            match file.remove(name) {
                Some(serde_json::Value::Object(m)) => {
                    for (k, v) in &m {
                        if !v.is_string() {
                            return Err(format!("{}: {name}.{k} is not a string", path.display()));
                        }
                    }
                    Ok(m)
                }
                _ => Err(format!("{}: no object \"{name}\"", path.display())),
            }
        };
        ui.push(section("ui")?);
        errors.push(section("errors")?);
    }
    // A text missing in a language (added in English, not yet translated)
    // falls back to English; the tests list what is missing.
    let (en_ui, en_errors) = (ui[0].clone(), errors[0].clone());
    for texts in ui.iter_mut().skip(1) {
        fill(texts, &en_ui);
    }
    for texts in errors.iter_mut().skip(1) {
        fill(texts, &en_errors);
    }

    for (lang, texts) in LANGS.iter().zip(&ui) {
        let json = serde_json::to_string(texts).map_err(|e| e.to_string())?;
        write(&out.join(format!("i18n-{lang}.js")), &format!("export default {json};\n"))?;
        for page in PAGES {
            let path = dir.join("assets").join(page);
            println!("cargo:rerun-if-changed={}", path.display());
            let template = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let html = render(&template, lang, texts).map_err(|e| format!("{}: {e}", path.display()))?;
            write(&out.join(format!("{lang}-{page}")), &html)?;
        }
    }

    let mut codes: Vec<&String> = en_errors.keys().collect();
    codes.sort();
    let mut rs =
        String::from("/// API error code → its text in each language of [`Lang::ALL`], sorted by code.\n");
    rs.push_str("pub(crate) static ERROR_TEXTS: &[(&str, [&str; 8])] = &[\n");
    for code in codes {
        let texts: Vec<String> =
            errors.iter().map(|m| format!("{:?}", m[code].as_str().unwrap_or(""))).collect();
        let _ = writeln!(rs, "    ({code:?}, [{}]),", texts.join(", "));
    }
    rs.push_str("];\n");
    write(&out.join("error_texts.rs"), &rs)
}

fn fill(texts: &mut Texts, english: &Texts) {
    for (k, v) in english {
        texts.entry(k.clone()).or_insert_with(|| v.clone());
    }
}

fn render(template: &str, lang: &str, texts: &Texts) -> Result<String, String> {
    let mut out = String::with_capacity(template.len() + 512);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find("}}").ok_or("an unclosed {{")? + start;
        let key = &rest[start + 2..end];
        let text = if key == "lang" {
            lang
        } else {
            texts.get(key).and_then(|v| v.as_str()).ok_or_else(|| format!("no UI text \"{key}\""))?
        };
        for c in text.chars() {
            match c {
                '&' => out.push_str("&amp;"),
                '<' => out.push_str("&lt;"),
                '>' => out.push_str("&gt;"),
                '"' => out.push_str("&quot;"),
                c => out.push(c),
            }
        }
        rest = &rest[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

fn write(path: &Path, content: &str) -> Result<(), String> {
    // Unchanged output keeps its timestamp, so nothing downstream rebuilds.
    if std::fs::read_to_string(path).is_ok_and(|old| old == content) {
        return Ok(());
    }
    std::fs::write(path, content).map_err(|e| format!("{}: {e}", path.display()))
}
