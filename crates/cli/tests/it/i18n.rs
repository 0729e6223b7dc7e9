//! The eight languages: API error messages follow `Accept-Language` (the
//! English detail kept in `detail` and the log), the UI's pages follow the
//! kept choice, else `Accept-Language`, and say which in `<html lang>`.

use portcullis_testkit::{ADMIN_PASSWORD, TestServer, run, wait_until};
use serde_json::{Value, json};

use crate::bin;

/// `curl` with `args`; the answer's headers (lower-cased) and body.
fn curl(args: &[&str]) -> (String, String) {
    let (code, out, err) = run("curl", &[&["-sS", "-D", "-", "--max-time", "20"], args].concat());
    assert_eq!(code, 0, "curl {args:?}: {err}");
    let (head, body) = out.split_once("\r\n\r\n").expect("headers and body");
    (head.to_ascii_lowercase(), body.to_string())
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(':')).map(str::trim)
}

#[test]
fn api_errors_follow_accept_language_with_the_english_detail() {
    let server = TestServer::start(&bin()).expect("start");
    let url = server.url("/api/v1/webserver");
    let admin = format!("admin:{ADMIN_PASSWORD}");
    let put = |lang: Option<&str>| {
        let mut args = vec!["-u", admin.as_str(), "-X", "PUT", "-H", "Content-Type: application/json"];
        let accept = lang.map(|l| format!("Accept-Language: {l}"));
        if let Some(a) = &accept {
            args.extend(["-H", a.as_str()]);
        }
        args.extend(["--data", r#"{"http_ports": [70000]}"#, url.as_str()]);
        curl(&args)
    };

    let (head, body) = put(Some("ja-JP,ja;q=0.9,en;q=0.5"));
    assert!(head.starts_with("http/1.1 400"), "{head}");
    assert_eq!(header(&head, "content-language"), Some("ja"));
    assert!(header(&head, "vary").is_some_and(|v| v.contains("accept-language")), "{head}");
    let ja: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(ja["error"]["code"], "invalid_value");
    assert_eq!(ja["error"]["field"], "http_ports[0]");
    assert_eq!(ja["error"]["message"], "値が無効です。");
    let detail = ja["error"]["detail"].as_str().expect("detail");
    assert!(detail.contains("70000"), "{detail}");
    // Words for people, not the deserializer's (`expected u16`: the log keeps that).
    assert_eq!(detail, "70000 is out of range: give a whole number from 0 to 65535");

    // English: as it always was, the technical message and no detail.
    for lang in [None, Some("en-US,de;q=0.5"), Some("pt-BR")] {
        let (head, body) = put(lang);
        assert!(header(&head, "content-language").is_none(), "{lang:?}: {head}");
        let en: Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(
            en,
            json!({"error": {"code": "invalid_value", "message": detail, "field": "http_ports[0]"}}),
            "{lang:?}"
        );
    }

    // Errors made before a handler runs are worded too: the router's 404, a
    // missing login, a body larger than allowed.
    let (_, body) = curl(&["-H", "Accept-Language: de", &server.url("/api/v1/nothing-here")]);
    let de: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(
        (de["error"]["code"].as_str(), de["error"]["message"].as_str()),
        (Some("not_found"), Some("Nicht gefunden."))
    );
    let (_, body) = curl(&["-H", "Accept-Language: fr-CA", &url]);
    let fr: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(fr["error"]["code"], "unauthorized");
    assert_eq!(
        fr["error"]["message"],
        "Connectez-vous, ou vérifiez le nom d'utilisateur et le mot de passe."
    );
    {
        // Declared larger than allowed: refused before it is read.
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", server.http_ports[0])).expect("connect");
        s.set_read_timeout(Some(std::time::Duration::from_secs(10))).expect("timeout");
        write!(
            s,
            "PUT /api/v1/webserver HTTP/1.1\r\nHost: x\r\nAccept-Language: ru\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            2 * 1024 * 1024
        )
        .expect("write");
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        let ru: Value = serde_json::from_str(answer.split_once("\r\n\r\n").expect("body").1).expect("JSON");
        assert_eq!(ru["error"]["message"], "Запрос слишком велик.");
        assert!(ru["error"]["detail"].as_str().is_some_and(|d| d.contains("bytes allowed")), "{ru}");
    }

    // Nothing changed, and the detail of each refusal is in the log.
    let (_, ws) = server.admin("GET", "/api/v1/webserver", None);
    assert_eq!(ws["http_ports"], json!([server.http_ports[0]]));
    assert!(
        wait_until(std::time::Duration::from_secs(5), || server.log().contains("expected u16")),
        "the detail is logged: {}",
        server.log()
    );
}

#[test]
fn ui_pages_follow_the_kept_choice_then_accept_language() {
    let server = TestServer::start(&bin()).expect("start");
    let page = |path: &str, extra: &[&str]| curl(&[extra, &[server.url(path).as_str()]].concat());

    let (head, html) = page("/admin/login", &["-H", "Accept-Language: ja-JP,ja;q=0.9,en;q=0.8"]);
    assert!(html.contains("<html lang=\"ja\">"), "{html}");
    assert!(html.contains("<h1 id=\"login-title\">ログイン</h1>"), "{html}");
    // The texts in the assets' folder, named after their content.
    assert!(html.contains("/i18n/ja.js\"") && html.contains("href=\"/admin/assets/"), "{html}");
    assert_eq!(header(&head, "content-language"), Some("ja"));
    assert!(header(&head, "vary").is_some_and(|v| v.contains("accept-language") && v.contains("cookie")));

    // The operator's kept choice wins over the browser's language.
    let (_, html) = page("/admin/login", &["-H", "Accept-Language: ja", "-H", "Cookie: portcullis_lang=ru"]);
    assert!(html.contains("<html lang=\"ru\">") && html.contains(">Вход</h1>"), "{html}");
    // Every page of the shell too; an unknown choice or language falls back.
    for (path, extra, lang) in [
        ("/admin/webserver", vec!["-H", "Accept-Language: zh-CN,zh;q=0.9"], "zh"),
        ("/admin/", vec!["-H", "Accept-Language: es"], "es"),
        ("/admin/users", vec!["-H", "Cookie: portcullis_lang=xx", "-H", "Accept-Language: it"], "it"),
        ("/admin/events", vec!["-H", "Accept-Language: pt-BR"], "en"),
        ("/admin/logfile", vec![], "en"),
    ] {
        let (head, html) = page(path, &extra);
        assert!(html.contains(&format!("<html lang=\"{lang}\">")), "{path} {extra:?}: {html}");
        assert_eq!(header(&head, "content-language"), Some(lang), "{path}");
    }
    // The language's texts, and only those, as a module.
    let (head, js) = page("/admin/assets/i18n/de.js", &[]);
    assert!(header(&head, "content-type").is_some_and(|t| t.starts_with("text/javascript")), "{head}");
    assert!(js.starts_with("export default {") && js.contains("\"title.login\":\"Anmelden\""), "{js}");
    let (head, _) = page("/admin/assets/i18n/xx.js", &[]);
    assert!(head.starts_with("http/1.1 404"), "{head}");
}
