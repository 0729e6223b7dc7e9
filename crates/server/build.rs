//! Records the build time, so that a device whose clock is obviously unset
//! (before the firmware was built: no battery-backed clock, booted in 1970)
//! can be recognised; and turns the translations (`i18n/<lang>.json`) into
//! what the binary embeds: one JavaScript module of UI texts per language,
//! the HTML pages rendered in each language, and the table of API error
//! texts (each language's compressed with DEFLATE: `error_texts.rs`). With
//! the `ui` feature, it also prepares the UI's files for caching: a version
//! named after their content (the folder they are served under, so that
//! browsers may keep them for good), a strong ETag of each file, and each
//! file gzipped, which is the only form the binary keeps of it (`ui_assets.rs`,
//! included by `src/ui.rs`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use sha2::Digest as _;

/// The languages, in the order of `portcullis::i18n::Lang`; English first
/// (the fallback for a text a language lacks).
const LANGS: [&str; 8] = ["en", "de", "es", "fr", "it", "ja", "ru", "zh"];

/// The HTML pages rendered per language: `{{lang}}`, `{{assets}}` (the path
/// of the assets' versioned folder) and `{{key}}` (a UI text, HTML-escaped)
/// are replaced.
const PAGES: [&str; 2] = ["app.html", "login.html"];

/// The UI's own files (in `assets/`), served below `/admin/assets/`, with
/// their content types. The texts of each language (`i18n/<lang>.js`) come
/// beside them.
const ASSET_FILES: [(&str, &str); 10] = [
    ("style.css", "text/css; charset=utf-8"),
    ("i18n.js", JS),
    ("common.js", JS),
    ("app.js", JS),
    ("webserver.js", JS),
    ("pages.js", JS),
    ("profiles.js", JS),
    ("fleet.js", JS),
    ("login.js", JS),
    ("favicon.svg", "image/svg+xml"),
];

const JS: &str = "text/javascript; charset=utf-8";

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
    #[cfg(feature = "openapi")]
    if let Err(e) = openapi_document() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

/// Writes `openapi_document.rs`: the committed OpenAPI document
/// (`openapi.json`, pretty-printed) compressed, and its length.
#[cfg(feature = "openapi")]
fn openapi_document() -> Result<(), String> {
    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").map_err(|e| e.to_string())?);
    let out = PathBuf::from(std::env::var("OUT_DIR").map_err(|e| e.to_string())?);
    let path = dir.join("openapi.json");
    println!("cargo:rerun-if-changed={}", path.display());
    let text = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let deflated = out.join("openapi.json.deflate");
    write_bytes(&deflated, &deflate(&text)?)?;
    let rs = format!(
        "/// The OpenAPI document of the full build (`openapi.json`): raw DEFLATE, and its length in bytes.\n\
         pub(crate) static OPENAPI_FULL: (&[u8], usize) = (include_bytes!({:?}), {});\n",
        deflated.display().to_string(),
        text.len()
    );
    write(&out.join("openapi_document.rs"), &rs)
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

    // The files below /admin/assets/: name, content type, where the bytes
    // are, the bytes.
    let mut assets: Vec<(String, &str, PathBuf, Vec<u8>)> = Vec::new();
    for (name, content_type) in ASSET_FILES {
        let path = dir.join("assets").join(name);
        println!("cargo:rerun-if-changed={}", path.display());
        let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        assets.push((name.to_string(), content_type, path, bytes));
    }
    for (lang, texts) in LANGS.iter().zip(&ui) {
        let json = serde_json::to_string(texts).map_err(|e| e.to_string())?;
        let js = format!("export default {json};\n");
        let path = out.join(format!("i18n-{lang}.js"));
        write(&path, &js)?;
        assets.push((format!("i18n/{lang}.js"), JS, path, js.into_bytes()));
    }
    // Named after the content of every asset: a change to any of them makes
    // a new folder, so a browser that keeps the old ones for good never uses
    // them with a new page. The modules import each other by relative
    // paths, which stay in the folder.
    let mut version = sha2::Sha256::new();
    for (name, _, _, bytes) in &assets {
        version.update((name.len() as u64).to_le_bytes());
        version.update(name.as_bytes());
        version.update((bytes.len() as u64).to_le_bytes());
        version.update(bytes);
    }
    let version = hex(&version.finalize())[..12].to_string();
    let prefix = format!("/admin/assets/{version}");

    let mut pages: Vec<(String, PathBuf, Vec<u8>)> = Vec::new();
    for page in PAGES {
        let path = dir.join("assets").join(page);
        println!("cargo:rerun-if-changed={}", path.display());
        let template = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        for (lang, texts) in LANGS.iter().zip(&ui) {
            let html =
                render(&template, lang, &prefix, texts).map_err(|e| format!("{}: {e}", path.display()))?;
            let path = out.join(format!("{lang}-{page}"));
            write(&path, &html)?;
            pages.push((format!("{lang}-{page}"), path, html.into_bytes()));
        }
    }
    #[cfg(feature = "ui")]
    embedded(&out, &version, &assets, &pages)?;
    #[cfg(not(feature = "ui"))]
    let _ = (version, pages);

    // The codes plain (looked up by binary search), each language's texts
    // in the codes' order, each ended by a NUL, as one DEFLATE stream: the
    // server inflates a language's texts when it first answers in it.
    let mut codes: Vec<&String> = en_errors.keys().collect();
    codes.sort();
    let mut rs = String::from("/// The API error codes that have texts, sorted.\n");
    rs.push_str("pub(crate) static ERROR_CODES: &[&str] = &[\n");
    for code in &codes {
        let _ = writeln!(rs, "    {code:?},");
    }
    rs.push_str("];\n");
    rs.push_str(
        "/// The error texts of each language of [`Lang::ALL`]: raw DEFLATE of the texts in the\n\
         /// order of [`ERROR_CODES`], each ended by a NUL, and that text's length in bytes.\n",
    );
    rs.push_str("pub(crate) static ERROR_TEXTS: [(&[u8], usize); 8] = [\n");
    for (lang, texts) in LANGS.iter().zip(&errors) {
        let mut plain = String::new();
        for code in &codes {
            let text = texts[code.as_str()].as_str().unwrap_or("");
            if text.contains('\0') {
                return Err(format!("i18n/{lang}.json: errors.{code} holds a NUL"));
            }
            plain.push_str(text);
            plain.push('\0');
        }
        let path = out.join(format!("errors-{lang}.deflate"));
        write_bytes(&path, &deflate(plain.as_bytes())?)?;
        let _ = writeln!(rs, "    (include_bytes!({:?}), {}),", path.display().to_string(), plain.len());
    }
    rs.push_str("];\n");
    write(&out.join("error_texts.rs"), &rs)
}

/// `bytes` compressed with raw DEFLATE (RFC 1951) at the best level.
fn deflate(bytes: &[u8]) -> Result<Vec<u8>, String> {
    use std::io::Write as _;
    let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(bytes).and_then(|()| enc.finish()).map_err(|e| format!("deflate: {e}"))
}

fn fill(texts: &mut Texts, english: &Texts) {
    for (k, v) in english {
        texts.entry(k.clone()).or_insert_with(|| v.clone());
    }
}

/// Writes `ui_assets.rs`: the assets' version, and for every asset and page
/// its bytes as the binary keeps them (gzipped, unless that is not smaller),
/// its length and strong ETags, one per form.
#[cfg(feature = "ui")]
fn embedded(
    out: &Path,
    version: &str,
    assets: &[(String, &str, PathBuf, Vec<u8>)],
    pages: &[(String, PathBuf, Vec<u8>)],
) -> Result<(), String> {
    let gz_dir = out.join("gz");
    std::fs::create_dir_all(&gz_dir).map_err(|e| format!("{}: {e}", gz_dir.display()))?;
    let item = |name: &str, content_type: &str, path: &Path, bytes: &[u8]| -> Result<String, String> {
        let tag = &hex(&sha2::Sha256::digest(bytes))[..20];
        let gz = gzip(bytes)?;
        let (stored, gzipped) = if gz.len() < bytes.len() {
            let gz_path = gz_dir.join(format!("{}.gz", name.replace('/', "-")));
            write_bytes(&gz_path, &gz)?;
            (gz_path.display().to_string(), true)
        } else {
            (path.display().to_string(), false)
        };
        let (etag, etag_gzip) = (format!("\"{tag}\""), format!("\"{tag}-gz\""));
        Ok(format!(
            "    Embedded {{ name: {name:?}, content_type: {content_type:?}, stored: include_bytes!({stored:?}), \
             gzipped: {gzipped}, len: {}, etag: {etag:?}, etag_gzip: {etag_gzip:?} }},\n",
            bytes.len()
        ))
    };
    let mut rs = String::new();
    let _ = writeln!(rs, "/// The folder the assets are served under (below `/admin/assets/`), named");
    let _ = writeln!(rs, "/// after their content.");
    let _ = writeln!(rs, "pub(crate) const ASSET_VERSION: &str = {version:?};");
    rs.push_str("/// The assets, by name below their folder.\n");
    rs.push_str("pub(crate) static ASSETS: &[Embedded] = &[\n");
    for (name, content_type, path, bytes) in assets {
        rs.push_str(&item(name, content_type, path, bytes)?);
    }
    rs.push_str("];\n");
    for page in PAGES {
        let konst = page.trim_end_matches(".html").to_uppercase();
        let _ = writeln!(rs, "/// `{page}` rendered in each language, in the order of [`Lang::ALL`].");
        let _ = writeln!(rs, "pub(crate) static {konst}_HTML: [Embedded; 8] = [");
        for lang in LANGS {
            let name = format!("{lang}-{page}");
            let (_, path, bytes) = pages.iter().find(|(n, _, _)| *n == name).ok_or(format!("no {name}"))?;
            rs.push_str(&item(&name, "text/html; charset=utf-8", path, bytes)?);
        }
        rs.push_str("];\n");
    }
    write(&out.join("ui_assets.rs"), &rs)
}

/// `bytes` gzipped at the best level. The header holds no time, no name and
/// no flags: the same input makes the same bytes, build after build, and the
/// server's unpacker (`src/inflate.rs`) takes exactly this header.
#[cfg(feature = "ui")]
fn gzip(bytes: &[u8]) -> Result<Vec<u8>, String> {
    use std::io::Write as _;
    let mut enc = flate2::GzBuilder::new().mtime(0).write(Vec::new(), flate2::Compression::best());
    enc.write_all(bytes).and_then(|()| enc.finish()).map_err(|e| format!("gzip: {e}"))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn render(template: &str, lang: &str, assets: &str, texts: &Texts) -> Result<String, String> {
    let mut out = String::with_capacity(template.len() + 512);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find("}}").ok_or("an unclosed {{")? + start;
        let key = &rest[start + 2..end];
        let text = if key == "lang" {
            lang
        } else if key == "assets" {
            assets
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
    write_bytes(path, content.as_bytes())
}

fn write_bytes(path: &Path, content: &[u8]) -> Result<(), String> {
    // Unchanged output keeps its timestamp, so nothing downstream rebuilds.
    if std::fs::read(path).is_ok_and(|old| old == content) {
        return Ok(());
    }
    std::fs::write(path, content).map_err(|e| format!("{}: {e}", path.display()))
}
