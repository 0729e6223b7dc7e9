//! The device's Prometheus metrics: one registry, typed handles the server
//! updates where things happen, and the text exposition `/metrics` answers.
//!
//! Names start with `portcullis_`. Counters end in `_total` (the exposition
//! adds it), a timestamp in `_timestamp_seconds`. Label values are bounded
//! sets (listener names, status classes, outcome words, channel names,
//! configured destinations), never client addresses or user names: a
//! device's series stay a few dozen however many clients it sees.

use prometheus_client::encoding::{EncodeLabelSet, text};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The `Content-Type` of [`Metrics::encode`]'s text: the Prometheus text
/// format 0.0.4, which every Prometheus reads and `promtool check metrics`
/// checks.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// The `Content-Type` of [`Metrics::encode_openmetrics`]'s text.
pub const OPENMETRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A listener's requests by status class.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The listener's name (`http`, `https`, ...).
    pub listener: String,
    /// `1xx` .. `5xx`.
    pub class: &'static str,
}

/// One label naming a listener.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabel {
    /// The listener's name.
    pub listener: String,
}

/// One label naming an outcome (`completed`/`failed`, `sent`/`failed`, `ok`/`failed`).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    /// The outcome.
    pub result: &'static str,
}

/// Where a block comes from.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OriginLabel {
    /// `local` (the device's intrusion detection) or `crowdsec`.
    pub origin: &'static str,
}

/// A notification channel and its outcome.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AlertLabels {
    /// `email`, `ip_notify`, `phone`, `crowdsec`.
    pub channel: String,
    /// `sent` or `failed`.
    pub result: &'static str,
}

/// A syslog collector and an outcome.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SyslogLabels {
    /// `transport://host:port`.
    pub destination: String,
    /// `sent` or `dropped`.
    pub result: &'static str,
}

/// A syslog collector.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DestinationLabel {
    /// `transport://host:port`.
    pub destination: String,
}

/// The build: version and features.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    /// The version.
    pub version: String,
    /// The build's features, comma-separated.
    pub features: String,
}

/// The registry and its handles (cheap to clone: handles share their values).
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Requests answered, by listener and status class.
    pub requests: Family<RequestLabels, Counter>,
    /// Connections open now, by listener.
    pub connections_open: Family<ListenerLabel, Gauge>,
    /// TLS handshakes, `completed` or `failed`.
    pub tls_handshakes: Family<ResultLabel, Counter>,
    /// Failed logins.
    pub failed_logins: Counter,
    /// Clients refused now, by origin (`local`, `crowdsec`).
    pub clients_blocked: Family<OriginLabel, Gauge>,
    /// Alerts by channel, `sent` or `failed`.
    pub alerts: Family<AlertLabels, Counter>,
    /// The certificate in use's `notAfter`, Unix seconds.
    pub certificate_not_after: Gauge,
    /// 1 while running settings differ from the stored ones.
    pub unsaved_changes: Gauge,
    /// Syslog messages by collector, `sent` or `dropped`.
    pub syslog_messages: Family<SyslogLabels, Counter>,
    /// Syslog messages waiting, by collector.
    pub syslog_queued: Family<DestinationLabel, Gauge>,
    /// Polls of the CrowdSec decision stream, `ok` or `failed`.
    pub crowdsec_polls: Family<ResultLabel, Counter>,
    /// CrowdSec decisions enforced now.
    pub crowdsec_decisions: Gauge,
    /// CrowdSec decisions left out because the set was full.
    pub crowdsec_decisions_dropped: Counter,
}

impl Metrics {
    /// A registry with every metric registered; `features` are the build's.
    pub fn new(version: &str, features: &[&str]) -> Self {
        let mut registry = Registry::with_prefix("portcullis");
        let m = Self {
            registry: Registry::default(),
            requests: Family::default(),
            connections_open: Family::default(),
            tls_handshakes: Family::default(),
            failed_logins: Counter::default(),
            clients_blocked: Family::default(),
            alerts: Family::default(),
            certificate_not_after: Gauge::default(),
            unsaved_changes: Gauge::default(),
            syslog_messages: Family::default(),
            syslog_queued: Family::default(),
            crowdsec_polls: Family::default(),
            crowdsec_decisions: Gauge::default(),
            crowdsec_decisions_dropped: Counter::default(),
        };
        registry.register(
            "http_requests",
            "HTTP requests answered, by listener and status class",
            m.requests.clone(),
        );
        registry.register(
            "connections_open",
            "Connections open now, by listener",
            m.connections_open.clone(),
        );
        registry.register("tls_handshakes", "TLS handshakes, completed or failed", m.tls_handshakes.clone());
        registry.register("failed_logins", "Failed logins", m.failed_logins.clone());
        registry.register(
            "clients_blocked",
            "Clients refused now, by origin (local, crowdsec)",
            m.clients_blocked.clone(),
        );
        registry.register("alerts", "Alerts by channel, sent or failed", m.alerts.clone());
        registry.register(
            "certificate_not_after_timestamp_seconds",
            "The notAfter of the certificate in use, Unix time",
            m.certificate_not_after.clone(),
        );
        registry.register(
            "unsaved_changes",
            "1 while the running settings differ from the stored ones",
            m.unsaved_changes.clone(),
        );
        registry.register(
            "syslog_messages",
            "Syslog messages by collector, sent or dropped",
            m.syslog_messages.clone(),
        );
        registry.register(
            "syslog_queued_messages",
            "Syslog messages waiting, by collector",
            m.syslog_queued.clone(),
        );
        registry.register(
            "crowdsec_polls",
            "Polls of the CrowdSec decision stream, ok or failed",
            m.crowdsec_polls.clone(),
        );
        registry.register(
            "crowdsec_decisions",
            "CrowdSec ban decisions enforced now",
            m.crowdsec_decisions.clone(),
        );
        registry.register(
            "crowdsec_decisions_dropped",
            "CrowdSec decisions not enforced because the set was full",
            m.crowdsec_decisions_dropped.clone(),
        );
        let build: Family<BuildLabels, Gauge> = Family::default();
        build
            .get_or_create(&BuildLabels { version: version.to_string(), features: features.join(",") })
            .set(1);
        registry.register("build_info", "The build: version and features (always 1)", build);
        // Every outcome is present from the start at 0, so that a rate over
        // a series that has not happened yet is 0 rather than absent.
        for result in ["completed", "failed"] {
            drop(m.tls_handshakes.get_or_create(&ResultLabel { result }));
        }
        for result in ["ok", "failed"] {
            drop(m.crowdsec_polls.get_or_create(&ResultLabel { result }));
        }
        for origin in ["local", "crowdsec"] {
            drop(m.clients_blocked.get_or_create(&OriginLabel { origin }));
        }
        Self { registry, ..m }
    }

    /// Counts a request answered with `status` on `listener`.
    pub fn request(&self, listener: &str, status: u16) {
        self.requests
            .get_or_create(&RequestLabels { listener: listener.to_string(), class: status_class(status) })
            .inc();
    }

    /// The exposition text in OpenMetrics 1.0, as prometheus-client writes it.
    pub fn encode_openmetrics(&self) -> String {
        let mut out = String::with_capacity(4096);
        // Writing to a String cannot fail.
        let _ = text::encode(&mut out, &self.registry);
        out
    }

    /// The exposition text in the Prometheus text format 0.0.4 (see [`to_prometheus_text`]).
    pub fn encode(&self) -> String {
        to_prometheus_text(&self.encode_openmetrics())
    }
}

/// OpenMetrics text turned into the Prometheus text format 0.0.4: a
/// counter family `x` (whose samples OpenMetrics names `x_total`) is
/// described as `x_total`, and the `# EOF` and `# UNIT` lines go. Samples
/// are unchanged, so the two formats give Prometheus the same series.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut help: Option<&str> = None;
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if line.starts_with("# HELP ") {
            // Held until its TYPE line says whether the family is a counter.
            if let Some(h) = help.replace(line) {
                out.push_str(h);
                out.push('\n');
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ")
            && let Some((name, kind)) = rest.split_once(' ')
        {
            let counter = kind == "counter" && !name.ends_with("_total");
            if let Some(h) = help.take() {
                match h.strip_prefix("# HELP ").and_then(|r| r.strip_prefix(name)) {
                    Some(text) if counter => out.push_str(&format!("# HELP {name}_total{text}\n")),
                    _ => {
                        out.push_str(h);
                        out.push('\n');
                    }
                }
            }
            if counter {
                out.push_str(&format!("# TYPE {name}_total counter\n"));
            } else {
                out.push_str(line);
                out.push('\n');
            }
            continue;
        }
        if let Some(h) = help.take() {
            out.push_str(h);
            out.push('\n');
        }
        out.push_str(line);
        out.push('\n');
    }
    if let Some(h) = help {
        out.push_str(h);
        out.push('\n');
    }
    out
}

/// The status class label of an HTTP status.
pub fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

#[cfg(feature = "syslog")]
impl crate::syslog::SyslogObserver for Metrics {
    fn sent(&self, destination: &str) {
        self.syslog_messages
            .get_or_create(&SyslogLabels { destination: destination.to_string(), result: "sent" })
            .inc();
    }

    fn dropped(&self, destination: &str, count: u64) {
        self.syslog_messages
            .get_or_create(&SyslogLabels { destination: destination.to_string(), result: "dropped" })
            .inc_by(count);
    }

    fn failed(&self, _: &str, _: &str) {}
}

#[cfg(feature = "crowdsec")]
impl crate::crowdsec::CrowdSecObserver for Metrics {
    fn polled(&self, outcome: &portcullis_core::crowdsec::StreamOutcome, held: usize) {
        self.crowdsec_polls.get_or_create(&ResultLabel { result: "ok" }).inc();
        let held = i64::try_from(held).unwrap_or(i64::MAX);
        self.crowdsec_decisions.set(held);
        self.clients_blocked.get_or_create(&OriginLabel { origin: "crowdsec" }).set(held);
        self.crowdsec_decisions_dropped.inc_by(outcome.dropped as u64);
    }

    fn poll_failed(&self, _: &crate::crowdsec::LapiError) {
        self.crowdsec_polls.get_or_create(&ResultLabel { result: "failed" }).inc();
    }

    fn alert_sent(&self, _: &portcullis_core::crowdsec::BlockFacts) {
        self.alerts.get_or_create(&AlertLabels { channel: "crowdsec".into(), result: "sent" }).inc();
    }

    fn alert_failed(&self, _: &portcullis_core::crowdsec::BlockFacts, _: &crate::crowdsec::LapiError) {
        self.alerts.get_or_create(&AlertLabels { channel: "crowdsec".into(), result: "failed" }).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_names_every_metric_and_counts() {
        let m = Metrics::new("0.1.0", &["metrics", "syslog"]);
        m.request("https", 200);
        m.request("https", 204);
        m.request("http", 404);
        m.failed_logins.inc();
        m.certificate_not_after.set(1_900_000_000);
        let text = m.encode();
        for line in [
            "portcullis_http_requests_total{listener=\"https\",class=\"2xx\"} 2",
            "portcullis_http_requests_total{listener=\"http\",class=\"4xx\"} 1",
            "portcullis_failed_logins_total 1",
            "portcullis_certificate_not_after_timestamp_seconds 1900000000",
            "portcullis_build_info{version=\"0.1.0\",features=\"metrics,syslog\"} 1",
            "portcullis_tls_handshakes_total{result=\"failed\"} 0",
            "portcullis_clients_blocked{origin=\"crowdsec\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in:\n{text}");
        }
        assert!(text.contains("# HELP portcullis_failed_logins_total Failed logins.\n# TYPE portcullis_failed_logins_total counter\n"), "{text}");
        assert!(text.contains("# TYPE portcullis_unsaved_changes gauge\n"), "{text}");
        assert!(!text.contains("# EOF"));
        assert!(m.encode_openmetrics().ends_with("# EOF\n"));
    }

    #[test]
    fn status_classes() {
        assert_eq!(
            [status_class(101), status_class(301), status_class(503), status_class(999)],
            ["1xx", "3xx", "5xx", "5xx"]
        );
    }
}
