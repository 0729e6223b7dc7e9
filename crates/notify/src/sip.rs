//! The SIP message layer of the phone call: parsing, a UDP/TCP link to the
//! next hop, and digest authentication (RFC 3261 §22, RFC 7616).
//!
//! Only what a calling UAC needs: responses to our requests, and the few
//! requests a callee sends us (BYE, OPTIONS).

use std::net::SocketAddr;

use md5::Md5;
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use portcullis_core::profiles::{HostPort, SipTransport};

use crate::error::one_line;
use crate::{NotifyError, connect_tcp, within};

/// Largest SIP message accepted; far above what a call needs.
const MAX_MESSAGE: usize = 64 * 1024;

/// A parsed SIP message.
#[derive(Debug, Clone)]
pub(crate) struct Message {
    /// `Some((method, uri))` for a request.
    pub request: Option<(String, String)>,
    /// Status code and reason for a response (0 for a request).
    pub code: u16,
    /// Reason phrase of a response.
    pub reason: String,
    /// Headers with full names, in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Message {
    /// The first header `name` (case-insensitive; compact forms are expanded at parse).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Every value of header `name`, comma-separated lists split.
    pub fn header_values(&self, name: &str) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| split_list(v))
            .collect()
    }

    /// CSeq number and method.
    pub fn cseq(&self) -> Option<(u32, String)> {
        let v = self.header("CSeq")?;
        let mut it = v.split_whitespace();
        let n = it.next()?.parse().ok()?;
        Some((n, it.next()?.to_ascii_uppercase()))
    }

    /// Parses one message from `data` (which holds exactly one datagram, or the
    /// start of a stream). Returns the message and the bytes it used, or
    /// `Ok(None)` when more stream data is needed.
    pub fn parse(data: &[u8]) -> Result<Option<(Message, usize)>, String> {
        let Some(head_end) = find(data, b"\r\n\r\n") else {
            if data.len() > MAX_MESSAGE {
                return Err("SIP message header too large".to_string());
            }
            return Ok(None);
        };
        let head =
            std::str::from_utf8(&data[..head_end]).map_err(|_| "SIP header is not UTF-8".to_string())?;
        let mut lines = Vec::<String>::new();
        for line in head.split("\r\n") {
            // Folded header lines continue the previous one.
            if line.starts_with([' ', '\t']) {
                if let Some(last) = lines.last_mut() {
                    last.push(' ');
                    last.push_str(line.trim());
                }
            } else {
                lines.push(line.to_string());
            }
        }
        let mut lines = lines.into_iter().skip_while(String::is_empty);
        let start = lines.next().ok_or("empty SIP message")?;
        let (request, code, reason) = if let Some(rest) = start.strip_prefix("SIP/2.0 ") {
            let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
            let code = code.parse::<u16>().map_err(|_| format!("bad status line: {}", one_line(&start)))?;
            (None, code, reason.to_string())
        } else {
            let mut parts = start.split(' ');
            match (parts.next(), parts.next(), parts.next()) {
                (Some(m), Some(uri), Some("SIP/2.0")) => {
                    (Some((m.to_string(), uri.to_string())), 0, String::new())
                }
                _ => return Err(format!("bad start line: {}", one_line(&start))),
            }
        };
        let mut headers = Vec::new();
        for line in lines {
            let Some((name, value)) = line.split_once(':') else { continue };
            headers.push((expand_compact(name.trim()).to_string(), value.trim().to_string()));
        }
        let mut msg = Message { request, code, reason, headers, body: Vec::new() };
        let body_start = head_end + 4;
        let length = match msg.header("Content-Length") {
            Some(v) => v.parse::<usize>().map_err(|_| "bad Content-Length".to_string())?,
            None => data.len() - body_start,
        };
        if length > MAX_MESSAGE {
            return Err("SIP body too large".to_string());
        }
        if data.len() < body_start + length {
            return Ok(None);
        }
        msg.body = data[body_start..body_start + length].to_vec();
        Ok(Some((msg, body_start + length)))
    }
}

fn expand_compact(name: &str) -> &str {
    match name {
        "i" | "I" => "Call-ID",
        "m" | "M" => "Contact",
        "l" | "L" => "Content-Length",
        "c" | "C" => "Content-Type",
        "f" | "F" => "From",
        "t" | "T" => "To",
        "v" | "V" => "Via",
        "k" | "K" => "Supported",
        "s" | "S" => "Subject",
        other => other,
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Splits a header value at commas outside quotes and angle brackets.
fn split_list(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let (mut quoted, mut angle, mut cur) = (false, false, String::new());
    for c in value.chars() {
        match c {
            '"' => quoted = !quoted,
            '<' if !quoted => angle = true,
            '>' if !quoted => angle = false,
            ',' if !quoted && !angle => {
                out.push(cur.trim().to_string());
                cur.clear();
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

/// The `tag` parameter of a From/To value.
pub(crate) fn tag_of(value: &str) -> Option<String> {
    let after = value.rsplit_once('>').map_or(value, |(_, a)| a);
    after.split(';').find_map(|p| p.trim().strip_prefix("tag=")).map(str::to_string)
}

/// The URI inside `<...>` (or the whole value up to parameters).
pub(crate) fn uri_of(value: &str) -> String {
    match (value.find('<'), value.find('>')) {
        (Some(a), Some(b)) if a < b => value[a + 1..b].to_string(),
        _ => value.split(';').next().unwrap_or(value).trim().to_string(),
    }
}

/// A connection to the SIP next hop: a connected UDP socket or a TCP stream.
pub(crate) enum Link {
    Udp(UdpSocket),
    Tcp { stream: TcpStream, buf: Vec<u8> },
}

impl Link {
    /// Connects to `next_hop`; the target string names it in errors.
    pub async fn connect(transport: SipTransport, next_hop: &HostPort) -> Result<Link, NotifyError> {
        let target = next_hop.to_string();
        match transport {
            SipTransport::Tcp => Ok(Link::Tcp { stream: connect_tcp(next_hop).await?, buf: Vec::new() }),
            SipTransport::Udp => {
                let addr = within(
                    &target,
                    "resolve",
                    tokio::net::lookup_host((next_hop.host.as_str(), next_hop.port)),
                )
                .await?
                .map_err(|e| NotifyError::Connect { target: target.clone(), reason: e.to_string() })?
                .next()
                .ok_or_else(|| NotifyError::Connect {
                    target: target.clone(),
                    reason: "no address".into(),
                })?;
                let bind: SocketAddr =
                    if addr.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
                let io = |e: std::io::Error| NotifyError::Connect {
                    target: target.clone(),
                    reason: e.to_string(),
                };
                let socket = UdpSocket::bind(bind).await.map_err(io)?;
                // Connected, so that an ICMP "port unreachable" fails the call at
                // once instead of after the whole timeout.
                socket.connect(addr).await.map_err(io)?;
                Ok(Link::Udp(socket))
            }
        }
    }

    /// Whether retransmissions are ours to do (RFC 3261 §17.1: unreliable transport).
    pub fn unreliable(&self) -> bool {
        matches!(self, Link::Udp(_))
    }

    /// `UDP` or `TCP`, for Via headers.
    pub fn name(&self) -> &'static str {
        match self {
            Link::Udp(_) => "UDP",
            Link::Tcp { .. } => "TCP",
        }
    }

    /// Our address as the peer sees it (for Via, Contact and SDP).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        match self {
            Link::Udp(s) => s.local_addr(),
            Link::Tcp { stream, .. } => stream.local_addr(),
        }
    }

    /// Sends one message.
    pub async fn send(&mut self, target: &str, data: &[u8]) -> Result<(), NotifyError> {
        let r = match self {
            Link::Udp(s) => within(target, "send", s.send(data)).await?.map(|_| ()),
            Link::Tcp { stream, .. } => within(target, "send", stream.write_all(data)).await?,
        };
        r.map_err(|e| link_error(target, e))
    }

    /// Receives the next message, skipping garbage datagrams. Cancel-safe: a
    /// partial TCP message stays in the buffer.
    pub async fn recv(&mut self, target: &str) -> Result<Message, NotifyError> {
        match self {
            Link::Udp(s) => {
                let mut buf = vec![0u8; MAX_MESSAGE];
                loop {
                    let n = s.recv(&mut buf).await.map_err(|e| link_error(target, e))?;
                    match Message::parse(&buf[..n]) {
                        Ok(Some((m, _))) => return Ok(m),
                        // Keep-alives and junk are not our business.
                        Ok(None) | Err(_) => continue,
                    }
                }
            }
            Link::Tcp { stream, buf } => loop {
                // Keep-alive CRLFs between messages are skipped.
                while buf.starts_with(b"\r\n") {
                    buf.drain(..2);
                }
                match Message::parse(buf) {
                    Ok(Some((m, used))) => {
                        buf.drain(..used);
                        return Ok(m);
                    }
                    Ok(None) => {}
                    Err(e) => return Err(NotifyError::SipProtocol(e)),
                }
                let mut chunk = [0u8; 4096];
                let n = stream.read(&mut chunk).await.map_err(|e| link_error(target, e))?;
                if n == 0 {
                    return Err(NotifyError::Io {
                        target: target.to_string(),
                        reason: "the peer closed the connection".into(),
                    });
                }
                buf.extend_from_slice(&chunk[..n]);
            },
        }
    }
}

fn link_error(target: &str, e: std::io::Error) -> NotifyError {
    if e.kind() == std::io::ErrorKind::ConnectionRefused {
        NotifyError::Connect {
            target: target.to_string(),
            reason: "no SIP service there (connection refused)".into(),
        }
    } else {
        NotifyError::Io { target: target.to_string(), reason: e.to_string() }
    }
}

/// A digest challenge (`WWW-Authenticate` / `Proxy-Authenticate`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Challenge {
    realm: String,
    nonce: String,
    opaque: Option<String>,
    algorithm: Algorithm,
    qop_auth: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Algorithm {
    Md5,
    Sha256,
}

impl Challenge {
    /// Parses a `Digest ...` challenge; `None` for other schemes or algorithms we lack.
    pub fn parse(value: &str) -> Option<Challenge> {
        let (scheme, rest) = value.trim().split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("digest") {
            return None;
        }
        let mut params = std::collections::HashMap::new();
        for item in split_list(rest) {
            if let Some((k, v)) = item.split_once('=') {
                params.insert(k.trim().to_ascii_lowercase(), v.trim().trim_matches('"').to_string());
            }
        }
        let algorithm = match params.get("algorithm").map(|a| a.to_ascii_uppercase()).as_deref() {
            None | Some("MD5") => Algorithm::Md5,
            Some("SHA-256") => Algorithm::Sha256,
            _ => return None,
        };
        Some(Challenge {
            realm: params.get("realm")?.clone(),
            nonce: params.get("nonce")?.clone(),
            opaque: params.get("opaque").cloned(),
            algorithm,
            qop_auth: params.get("qop").is_some_and(|q| q.split(',').any(|q| q.trim() == "auth")),
        })
    }

    /// The credentials header value answering this challenge for `method` on `uri`.
    pub fn answer(&self, method: &str, uri: &str, user: &str, password: &str, cnonce: &str) -> String {
        let h = |s: String| match self.algorithm {
            Algorithm::Md5 => hex::encode(Md5::digest(s.as_bytes())),
            Algorithm::Sha256 => hex::encode(Sha256::digest(s.as_bytes())),
        };
        let ha1 = h(format!("{user}:{}:{password}", self.realm));
        let ha2 = h(format!("{method}:{uri}"));
        let nc = "00000001";
        let (response, qop) = if self.qop_auth {
            (
                h(format!("{ha1}:{}:{nc}:{cnonce}:auth:{ha2}", self.nonce)),
                format!(", qop=auth, nc={nc}, cnonce=\"{cnonce}\""),
            )
        } else {
            (h(format!("{ha1}:{}:{ha2}", self.nonce)), String::new())
        };
        let algorithm = match self.algorithm {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        };
        let opaque = self.opaque.as_ref().map(|o| format!(", opaque=\"{o}\"")).unwrap_or_default();
        format!(
            "Digest username=\"{user}\", realm=\"{}\", nonce=\"{}\", uri=\"{uri}\", response=\"{response}\", algorithm={algorithm}{qop}{opaque}",
            self.realm, self.nonce
        )
    }
}

/// A random token for tags, branches and Call-IDs.
pub(crate) fn token() -> String {
    hex::encode(rand::random::<[u8; 8]>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_response_with_compact_headers_and_body() {
        let raw = b"SIP/2.0 200 OK\r\nv: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKx\r\nt: <sip:a@b>;tag=abc\r\nCSeq: 2 INVITE\r\nl: 4\r\n\r\nv=0\r\nextra";
        let (m, used) = Message::parse(raw).expect("parse").expect("complete");
        assert_eq!((m.code, m.reason.as_str()), (200, "OK"));
        assert_eq!(m.cseq(), Some((2, "INVITE".to_string())));
        assert_eq!(tag_of(m.header("To").expect("to")), Some("abc".to_string()));
        assert_eq!(m.body, b"v=0\r");
        assert_eq!(used, raw.len() - "\nextra".len());
        assert!(
            Message::parse(b"SIP/2.0 200 OK\r\nContent-Length: 10\r\n\r\nabc").expect("partial").is_none()
        );
        assert!(Message::parse(b"HTTP/1.1 200 OK\r\n\r\n").is_err());
    }

    #[test]
    fn request_line_and_lists() {
        let (m, _) = Message::parse(b"BYE sip:x@y SIP/2.0\r\nRecord-Route: <sip:p1;lr>, <sip:p2;lr>\r\n\r\n")
            .expect("parse")
            .expect("complete");
        assert_eq!(m.request, Some(("BYE".into(), "sip:x@y".into())));
        assert_eq!(m.header_values("Record-Route"), vec!["<sip:p1;lr>", "<sip:p2;lr>"]);
        assert_eq!(uri_of("\"A, B\" <sip:a@b;transport=tcp>;tag=1"), "sip:a@b;transport=tcp");
    }

    #[test]
    fn digest_matches_rfc_2617_example() {
        // RFC 2617 §3.5, with its values (the method/uri of that HTTP example).
        let c = Challenge::parse(
            r#"Digest realm="testrealm@host.com", qop="auth,auth-int", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41""#,
        )
        .expect("challenge");
        let answer = c.answer("GET", "/dir/index.html", "Mufasa", "Circle Of Life", "0a4f113b");
        assert!(answer.contains("response=\"6629fae49393a05397450978507c4ef1\""), "{answer}");
        assert!(answer.contains("opaque=\"5ccc069c403ebaf9f0171e9517f40e41\""));
        assert!(Challenge::parse("Basic realm=\"x\"").is_none());
    }
}
