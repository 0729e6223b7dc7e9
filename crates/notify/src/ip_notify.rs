//! Network messages (IP Notify): the rendered body over raw TCP, or as an
//! HTTP/1.1 request over TCP or TLS, to one or more destinations.
//!
//! HTTP uses hyper's low-level client connection over our own TCP (and
//! tokio-rustls) stream, so that every step has its own timeout and the TLS
//! configuration is exactly ours (the build's provider, certificate verification on).
//! Each message opens a fresh connection: alerts are rare, and a pool would
//! only keep sockets open on a device.

use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HOST, USER_AGENT};
use http::{HeaderName, HeaderValue, Method, Request};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use portcullis_core::alert::{AlertContext, Escape, render_with};
use portcullis_core::profiles::{DeliveryMode, HostPort, IpNotifyProfile, IpNotifyProtocol};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_rustls::TlsConnector;

use crate::{Delivery, NotifyError, connect_tcp, within};

/// Largest response body read (and discarded) from an HTTP destination.
const MAX_RESPONSE_BODY: usize = 64 * 1024;

/// Sends the message described by `ctx` to the profile's destinations, in
/// the profile's mode. All must succeed (or, with `next_on_error`, one);
/// otherwise the error says which failed and why.
pub async fn send_ip_notify(profile: &IpNotifyProfile, ctx: &AlertContext) -> Result<Delivery, NotifyError> {
    let prepared = Arc::new(Prepared::new(profile, ctx)?);
    let total = prepared.destinations.len();
    let mut results: Vec<(String, Result<(), NotifyError>)> = Vec::with_capacity(total);
    match profile.mode {
        DeliveryMode::Parallel => {
            let mut set = tokio::task::JoinSet::new();
            for (i, dest) in prepared.destinations.iter().enumerate() {
                let (p, dest) = (prepared.clone(), dest.clone());
                set.spawn(async move { (i, p.send(&dest).await) });
            }
            let mut indexed = Vec::with_capacity(total);
            while let Some(joined) = set.join_next().await {
                match joined {
                    Ok(r) => indexed.push(r),
                    Err(e) => {
                        return Err(NotifyError::Io { target: "IP Notify".into(), reason: e.to_string() });
                    }
                }
            }
            indexed.sort_by_key(|(i, _)| *i);
            results.extend(indexed.into_iter().map(|(i, r)| (prepared.destinations[i].to_string(), r)));
        }
        DeliveryMode::Sequential => {
            for dest in &prepared.destinations {
                results.push((dest.to_string(), prepared.send(dest).await));
            }
        }
        DeliveryMode::NextOnError => {
            for dest in &prepared.destinations {
                let r = prepared.send(dest).await;
                let done = r.is_ok();
                results.push((dest.to_string(), r));
                if done {
                    break;
                }
            }
        }
    }
    summarize(profile.protocol, profile.mode, total, results)
}

fn summarize(
    protocol: IpNotifyProtocol,
    mode: DeliveryMode,
    total: usize,
    results: Vec<(String, Result<(), NotifyError>)>,
) -> Result<Delivery, NotifyError> {
    let mut delivered = Vec::new();
    let mut failed = Vec::new();
    for (dest, r) in results {
        match r {
            Ok(()) => delivered.push(dest),
            Err(e) => failed.push((dest, e)),
        }
    }
    let proto = match protocol {
        IpNotifyProtocol::Tcp => "TCP",
        IpNotifyProtocol::Http => "HTTP",
        IpNotifyProtocol::Https => "HTTPS",
    };
    if delivered.is_empty() {
        // One destination: its own error is the clearest report.
        if failed.len() == 1
            && let Some((_, e)) = failed.pop()
        {
            return Err(e);
        }
        return Err(NotifyError::AllFailed { failed });
    }
    // With next_on_error, the destinations before the first success failed by design.
    if failed.is_empty() || mode == DeliveryMode::NextOnError {
        let skipped = if failed.is_empty() {
            String::new()
        } else {
            format!(" after {} failed", failed.iter().map(|(d, _)| d.as_str()).collect::<Vec<_>>().join(", "))
        };
        return Ok(Delivery {
            summary: format!("sent by {proto} to {}{skipped}", delivered.join(", ")),
            reached: delivered,
        });
    }
    Err(NotifyError::PartialDelivery { delivered_count: delivered.len(), delivered, total, failed })
}

/// Everything a send needs, built once per message.
struct Prepared {
    destinations: Vec<HostPort>,
    protocol: IpNotifyProtocol,
    method: Method,
    path: String,
    headers: Vec<(HeaderName, HeaderValue)>,
    has_host: bool,
    body: Bytes,
    tls: Option<TlsConnector>,
}

impl Prepared {
    fn new(profile: &IpNotifyProfile, ctx: &AlertContext) -> Result<Self, NotifyError> {
        let invalid = NotifyError::InvalidProfile;
        let destinations = profile
            .destinations
            .iter()
            .map(|d| HostPort::parse(d, None).map_err(invalid))
            .collect::<Result<Vec<_>, _>>()?;
        if destinations.is_empty() {
            return Err(NotifyError::InvalidProfile("the profile has no destination".to_string()));
        }
        let escape = if profile.body_is_json() { Escape::Json } else { Escape::Text };
        let body = Bytes::from(render_with(&profile.body, ctx, escape));
        let method = Method::from_bytes(profile.method.as_bytes()).map_err(|_| {
            NotifyError::InvalidProfile(format!("\"{}\" is not an HTTP method", profile.method))
        })?;
        let mut headers = vec![(
            CONTENT_TYPE,
            HeaderValue::from_str(&profile.content_type).map_err(|_| {
                NotifyError::InvalidProfile("content_type is not a valid header value".to_string())
            })?,
        )];
        headers
            .push((USER_AGENT, HeaderValue::from_static(concat!("portcullis/", env!("CARGO_PKG_VERSION")))));
        if let Some(user) = &profile.username {
            let password = profile.password.as_ref().map(|p| p.expose()).unwrap_or_default();
            let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            let mut value = HeaderValue::from_str(&format!("Basic {token}"))
                .map_err(|_| NotifyError::InvalidProfile("username cannot be sent".to_string()))?;
            value.set_sensitive(true);
            headers.push((AUTHORIZATION, value));
        }
        let mut has_host = false;
        for (name, value) in &profile.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| NotifyError::InvalidProfile(format!("\"{name}\" is not a header name")))?;
            let value = HeaderValue::from_str(value).map_err(|_| {
                NotifyError::InvalidProfile(format!("the value of {name} is not a header value"))
            })?;
            has_host |= name == HOST;
            // A profile header replaces the default of the same name.
            headers.retain(|(n, _)| *n != name);
            headers.push((name, value));
        }
        let tls = match profile.protocol {
            IpNotifyProtocol::Https => {
                Some(TlsConnector::from(crate::tls::client_config(profile.ca_pem.as_deref())?))
            }
            _ => None,
        };
        Ok(Self {
            destinations,
            protocol: profile.protocol,
            method,
            path: profile.path.clone(),
            headers,
            has_host,
            body,
            tls,
        })
    }

    async fn send(&self, dest: &HostPort) -> Result<(), NotifyError> {
        let target = dest.to_string();
        let tcp = connect_tcp(dest).await?;
        match (self.protocol, &self.tls) {
            (IpNotifyProtocol::Tcp, _) => {
                let mut tcp = tcp;
                let io =
                    |e: std::io::Error| NotifyError::Io { target: target.clone(), reason: e.to_string() };
                within(&target, "write", tcp.write_all(&self.body)).await?.map_err(io)?;
                // Closing our side tells the receiver the message is complete.
                within(&target, "close", tcp.shutdown()).await?.map_err(io)?;
                Ok(())
            }
            (_, Some(tls)) => {
                let name = ServerName::try_from(dest.host.clone()).map_err(|_| {
                    NotifyError::InvalidProfile(format!("\"{}\" is not a TLS server name", dest.host))
                })?;
                let stream = within(&target, "TLS handshake", tls.connect(name, tcp))
                    .await?
                    .map_err(|e| NotifyError::Tls { target: target.clone(), reason: e.to_string() })?;
                self.request(stream, dest).await
            }
            (_, None) => self.request(tcp, dest).await,
        }
    }

    async fn request<S>(&self, stream: S, dest: &HostPort) -> Result<(), NotifyError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let target = dest.to_string();
        let io = |e: hyper::Error| NotifyError::Io { target: target.clone(), reason: e.to_string() };
        let (mut sender, conn) =
            within(&target, "HTTP handshake", hyper::client::conn::http1::handshake(TokioIo::new(stream)))
                .await?
                .map_err(io)?;
        let driver = tokio::spawn(conn);
        let mut request = Request::builder().method(self.method.clone()).uri(self.path.as_str());
        if !self.has_host {
            request = request.header(HOST, target.as_str());
        }
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        let request = request
            .body(Full::new(self.body.clone()))
            .map_err(|e| NotifyError::InvalidProfile(format!("cannot build the request: {e}")))?;
        let result = async {
            let response =
                within(&target, "HTTP response", sender.send_request(request)).await?.map_err(io)?;
            let status = response.status().as_u16();
            // Read (and drop) a bounded body so the peer sees a complete exchange.
            let _ = within(
                &target,
                "HTTP response body",
                Limited::new(response.into_body(), MAX_RESPONSE_BODY).collect(),
            )
            .await;
            if (200..300).contains(&status) {
                Ok(())
            } else {
                Err(NotifyError::HttpStatus { target: target.clone(), status })
            }
        }
        .await;
        driver.abort();
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(target: &str) -> (String, Result<(), NotifyError>) {
        (target.into(), Err(NotifyError::Connect { target: target.into(), reason: "refused".into() }))
    }

    #[test]
    fn summaries() {
        let ok = |t: &str| (t.to_string(), Ok(()));
        let d = summarize(IpNotifyProtocol::Http, DeliveryMode::Parallel, 2, vec![ok("a:1"), ok("b:2")])
            .expect("all");
        assert_eq!(d.reached, vec!["a:1", "b:2"]);
        // next_on_error: a failure before the first success is fine.
        let d = summarize(IpNotifyProtocol::Tcp, DeliveryMode::NextOnError, 2, vec![err("a:1"), ok("b:2")])
            .expect("second");
        assert_eq!(d.summary, "sent by TCP to b:2 after a:1 failed");
        let e = summarize(IpNotifyProtocol::Http, DeliveryMode::Parallel, 2, vec![ok("a:1"), err("b:2")])
            .expect_err("partial");
        assert_eq!(e.code(), "partial_delivery");
        let e =
            summarize(IpNotifyProtocol::Http, DeliveryMode::Parallel, 1, vec![err("a:1")]).expect_err("one");
        assert_eq!(e.code(), "connect_failed");
        let e = summarize(IpNotifyProtocol::Http, DeliveryMode::Sequential, 2, vec![err("a:1"), err("b:2")])
            .expect_err("all");
        assert_eq!(e.code(), "all_destinations_failed");
    }
}
