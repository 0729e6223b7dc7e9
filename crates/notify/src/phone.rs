//! Phone alerts: a SIP call (RFC 3261) that plays an audio message over RTP.
//!
//! # Why a hand-written UAC
//!
//! Our call flow is short and fixed: optional REGISTER (digest auth),
//! INVITE with an SDP offer of G.711 (digest auth again if challenged), ACK,
//! RTP for a few seconds, BYE; CANCEL when nobody answers. rsipstack 0.7
//! does work for this (see CRATES.md), but it brings a full endpoint with its
//! own transaction and dialog layers (about 70 crates) whose timers and
//! error reasons we would have to map back onto ours. The flow here is a few
//! hundred lines of text handling in which every wait has our timeout and
//! every failure our reason (busy, declined, unanswered, refused, auth), and
//! it is tested against sipp, a real UAS. The message layer is in `sip.rs`,
//! the audio in [`crate::media`].
//!
//! Transactions follow RFC 3261 §17.1 in the small: over UDP, requests are
//! retransmitted (T1 = 500 ms doubling up to T2 = 4 s) until a response
//! arrives; over TCP they are sent once. Responses are matched by Call-ID and
//! CSeq.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use portcullis_core::alert::{AlertContext, render};
use portcullis_core::profiles::{DEFAULT_SIP_PORT, HostPort, PhoneProfile, SipUri};
use tokio::net::UdpSocket;
use tokio::time::Instant;

use crate::error::one_line;
use crate::media::{self, Codec, SAMPLES_PER_PACKET};
use crate::sip::{Challenge, Link, Message, tag_of, token, uri_of};
use crate::{Delivery, IO_TIMEOUT, NotifyError};

/// RFC 3261 T1: first retransmission interval over UDP.
const T1: Duration = Duration::from_millis(500);
/// RFC 3261 T2: longest retransmission interval.
const T2: Duration = Duration::from_secs(4);
/// How long to wait for the 487 after a CANCEL.
const CANCEL_WAIT: Duration = Duration::from_secs(4);
/// Caller name used when the profile has no user name.
const DEFAULT_CALLER: &str = "portcullis";

/// Calls the profile's SIP URI and plays its audio message (the built-in tone
/// sequence, or its WAV), then hangs up.
pub async fn place_call(profile: &PhoneProfile, ctx: &AlertContext) -> Result<Delivery, NotifyError> {
    let uri = SipUri::parse(&profile.uri).map_err(NotifyError::InvalidProfile)?;
    let registrar = profile
        .registrar
        .as_deref()
        .map(|r| HostPort::parse(r, Some(DEFAULT_SIP_PORT)))
        .transpose()
        .map_err(NotifyError::InvalidProfile)?;
    // Audio first: a bad WAV is the operator's to fix, not worth a ringing phone.
    let samples = media::audio_samples(profile.audio.as_deref())?;
    let next_hop = registrar.clone().unwrap_or_else(|| uri.host_port.clone());
    let link = Link::connect(profile.transport, &next_hop).await?;
    let mut ua = UserAgent::new(link, next_hop.to_string(), profile, registrar.as_ref()).await?;
    if let Some(registrar) = &registrar
        && profile.username.is_some()
    {
        ua.register(registrar).await?;
    }
    let subject = render("{event} on {device}: {message}", ctx);
    let call = ua.invite(&uri, profile.ring_timeout_seconds, &subject).await?;
    let (packets, peer_hung_up) = ua.play(&call, &samples).await?;
    let seconds = packets as f64 * 0.02;
    let ending = if peer_hung_up {
        "the callee hung up".to_string()
    } else {
        match ua.bye(&call).await {
            Ok(()) => "hung up".to_string(),
            // The message was played; a lost BYE does not undo that.
            Err(e) => format!("hang-up unconfirmed: {e}"),
        }
    };
    Ok(Delivery {
        summary: format!(
            "called {uri}: answered, played {seconds:.1} s ({packets} RTP packets, {}), {ending}",
            call.codec.name()
        ),
        reached: vec![uri.to_string()],
    })
}

/// An established call.
struct Call {
    /// Where in-dialog requests go (the callee's Contact).
    remote_target: String,
    /// The To header with the callee's tag.
    remote_to: String,
    /// Route set from Record-Route, for in-dialog requests.
    route: Vec<String>,
    /// CSeq of the INVITE (to spot retransmitted 200 OKs).
    invite_cseq: u32,
    /// Our ACK, sent again if the 200 OK is retransmitted.
    ack: Vec<u8>,
    media: SocketAddr,
    codec: Codec,
}

/// How a transaction ended.
enum Wait {
    Final(Message),
    Timeout { provisional: bool },
}

/// One request to send.
struct Outgoing<'a> {
    method: &'a str,
    uri: &'a str,
    to: &'a str,
    call_id: &'a str,
    cseq: u32,
    branch: &'a str,
    extra: Vec<(String, String)>,
    body: Option<Vec<u8>>,
}

struct UserAgent {
    link: Link,
    target: String,
    local: SocketAddr,
    rtp: UdpSocket,
    call_id: String,
    from_tag: String,
    cseq: u32,
    user: String,
    domain: String,
    credentials: Option<(String, String)>,
    peer_hung_up: bool,
}

impl UserAgent {
    async fn new(
        link: Link,
        target: String,
        profile: &PhoneProfile,
        registrar: Option<&HostPort>,
    ) -> Result<Self, NotifyError> {
        let io = |e: std::io::Error| NotifyError::Io { target: target.clone(), reason: e.to_string() };
        let local = link.local_addr().map_err(io)?;
        // RTP leaves from the address the signalling uses, which the SDP announces.
        let rtp = UdpSocket::bind(SocketAddr::new(local.ip(), 0)).await.map_err(io)?;
        let user = profile.username.clone().unwrap_or_else(|| DEFAULT_CALLER.to_string());
        let domain = registrar.map_or_else(|| host_text(local.ip()), |r| r.host.clone());
        let credentials = profile.username.as_ref().map(|u| {
            (u.clone(), profile.password.as_ref().map(|p| p.expose().to_string()).unwrap_or_default())
        });
        Ok(Self {
            link,
            target,
            local,
            rtp,
            call_id: format!("{}@portcullis", token()),
            from_tag: token(),
            cseq: 0,
            user,
            domain,
            credentials,
            peer_hung_up: false,
        })
    }

    fn contact(&self) -> String {
        let transport = if self.link.unreliable() { "" } else { ";transport=tcp" };
        format!("<sip:{}@{}{transport}>", self.user, addr_text(self.local))
    }

    fn render(&self, o: &Outgoing<'_>) -> Vec<u8> {
        let mut s = format!(
            "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/{transport} {via};branch={branch};rport\r\nMax-Forwards: 70\r\n\
             From: \"{caller}\" <sip:{user}@{domain}>;tag={tag}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\n\
             User-Agent: portcullis/{version}\r\n",
            method = o.method,
            uri = o.uri,
            transport = self.link.name(),
            via = addr_text(self.local),
            branch = o.branch,
            caller = DEFAULT_CALLER,
            user = self.user,
            domain = self.domain,
            tag = self.from_tag,
            to = o.to,
            call_id = o.call_id,
            cseq = o.cseq,
            version = env!("CARGO_PKG_VERSION"),
        );
        for (name, value) in &o.extra {
            s.push_str(&format!("{name}: {value}\r\n"));
        }
        let body = o.body.as_deref().unwrap_or_default();
        s.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        let mut bytes = s.into_bytes();
        bytes.extend_from_slice(body);
        bytes
    }

    /// The credentials header answering a 401/407, if we have credentials and a usable challenge.
    fn authorize(&self, resp: &Message, method: &str, uri: &str) -> Option<(String, String)> {
        let (user, password) = self.credentials.as_ref()?;
        let (challenge_header, answer_header) = if resp.code == 407 {
            ("Proxy-Authenticate", "Proxy-Authorization")
        } else {
            ("WWW-Authenticate", "Authorization")
        };
        let challenge = resp
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(challenge_header))
            .find_map(|(_, v)| Challenge::parse(v))?;
        Some((answer_header.to_string(), challenge.answer(method, uri, user, password, &token())))
    }

    /// Sends `request` and waits for its final response, retransmitting over UDP.
    async fn transaction(
        &mut self,
        request: &[u8],
        call_id: &str,
        method: &str,
        cseq: u32,
        deadline: Instant,
    ) -> Result<Wait, NotifyError> {
        let target = self.target.clone();
        self.link.send(&target, request).await?;
        let start = Instant::now();
        let silence_end = start + IO_TIMEOUT;
        let mut provisional = false;
        let mut interval = T1;
        let mut next_retransmit = start + T1;
        loop {
            let now = Instant::now();
            if now >= deadline || (!provisional && now >= silence_end) {
                return Ok(Wait::Timeout { provisional });
            }
            let retransmit = self.link.unreliable() && !provisional;
            let mut wake = deadline;
            if !provisional {
                wake = wake.min(silence_end);
            }
            if retransmit {
                wake = wake.min(next_retransmit);
            }
            match tokio::time::timeout_at(wake, self.link.recv(&target)).await {
                Err(_) => {
                    if retransmit && Instant::now() >= next_retransmit {
                        self.link.send(&target, request).await?;
                        interval = (interval * 2).min(T2);
                        next_retransmit = Instant::now() + interval;
                    }
                }
                Ok(Err(e)) => return Err(e),
                Ok(Ok(msg)) if msg.request.is_some() => self.answer_request(&msg).await,
                Ok(Ok(msg)) => {
                    if msg.header("Call-ID") != Some(call_id)
                        || msg.cseq() != Some((cseq, method.to_string()))
                    {
                        continue;
                    }
                    if msg.code < 200 {
                        provisional = true;
                        continue;
                    }
                    return Ok(Wait::Final(msg));
                }
            }
        }
    }

    /// Answers a request the peer sent us: BYE ends our call, OPTIONS is fine, the rest is refused.
    async fn answer_request(&mut self, req: &Message) {
        let method = req.request.as_ref().map(|(m, _)| m.as_str()).unwrap_or_default();
        let (code, reason) = match method {
            "BYE" if req.header("Call-ID") == Some(self.call_id.as_str()) => {
                self.peer_hung_up = true;
                (200, "OK")
            }
            "BYE" => (481, "Call/Transaction Does Not Exist"),
            "OPTIONS" => (200, "OK"),
            // Nothing to answer for an ACK.
            "ACK" => return,
            _ => (501, "Not Implemented"),
        };
        let mut s = format!("SIP/2.0 {code} {reason}\r\n");
        for (name, value) in &req.headers {
            if ["Via", "From", "To", "Call-ID", "CSeq"].iter().any(|h| h.eq_ignore_ascii_case(name)) {
                s.push_str(&format!("{name}: {value}\r\n"));
            }
        }
        s.push_str("Content-Length: 0\r\n\r\n");
        let target = self.target.clone();
        if let Err(e) = self.link.send(&target, s.as_bytes()).await {
            tracing::debug!(error = %e, "could not answer a SIP request");
        }
    }

    async fn register(&mut self, registrar: &HostPort) -> Result<(), NotifyError> {
        let uri = format!("sip:{registrar}");
        let aor = format!("<sip:{}@{}>", self.user, self.domain);
        let call_id = format!("{}@portcullis", token());
        let mut auth: Option<(String, String)> = None;
        let mut expires = 300u32;
        let mut last = (0, String::new());
        for _ in 0..4 {
            self.cseq += 1;
            let cseq = self.cseq;
            let branch = format!("z9hG4bK{}", token());
            let mut extra =
                vec![("Contact".to_string(), self.contact()), ("Expires".to_string(), expires.to_string())];
            extra.extend(auth.clone());
            let req = self.render(&Outgoing {
                method: "REGISTER",
                uri: &uri,
                to: &aor,
                call_id: &call_id,
                cseq,
                branch: &branch,
                extra,
                body: None,
            });
            let resp = match self
                .transaction(&req, &call_id, "REGISTER", cseq, Instant::now() + IO_TIMEOUT)
                .await?
            {
                Wait::Final(resp) => resp,
                Wait::Timeout { .. } => {
                    return Err(NotifyError::Timeout {
                        target: self.target.clone(),
                        stage: "REGISTER".into(),
                    });
                }
            };
            match resp.code {
                200..=299 => return Ok(()),
                401 | 407 if auth.is_none() => match self.authorize(&resp, "REGISTER", &uri) {
                    Some(a) => auth = Some(a),
                    None => {
                        return Err(NotifyError::SipAuthFailed { stage: "REGISTER".into(), code: resp.code });
                    }
                },
                // A refusal after we answered the challenge means wrong credentials.
                401 | 403 | 407 if auth.is_some() => {
                    return Err(NotifyError::SipAuthFailed { stage: "REGISTER".into(), code: resp.code });
                }
                // Interval Too Brief: use the registrar's minimum.
                423 => {
                    expires = resp
                        .header("Min-Expires")
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(3600)
                        .min(86_400)
                }
                code => return Err(refused("REGISTER", code, &resp.reason)),
            }
            last = (resp.code, resp.reason);
        }
        Err(refused("REGISTER", last.0, &last.1))
    }

    fn offer(&self) -> Result<Vec<u8>, NotifyError> {
        let port = self
            .rtp
            .local_addr()
            .map_err(|e| NotifyError::Io { target: self.target.clone(), reason: e.to_string() })?
            .port();
        let ip = self.local.ip();
        let family = if ip.is_ipv4() { "IP4" } else { "IP6" };
        let id = rand::random::<u32>();
        Ok(format!(
            "v=0\r\no=portcullis {id} {id} IN {family} {ip}\r\ns=portcullis alert\r\nc=IN {family} {ip}\r\nt=0 0\r\n\
             m=audio {port} RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=ptime:20\r\na=sendrecv\r\n"
        )
        .into_bytes())
    }

    async fn invite(&mut self, uri: &SipUri, ring_seconds: u32, subject: &str) -> Result<Call, NotifyError> {
        let ruri = uri.to_string();
        let to = format!("<{ruri}>");
        let call_id = self.call_id.clone();
        let offer = self.offer()?;
        let deadline = Instant::now() + Duration::from_secs(u64::from(ring_seconds));
        let mut auth: Option<(String, String)> = None;
        loop {
            self.cseq += 1;
            let cseq = self.cseq;
            let branch = format!("z9hG4bK{}", token());
            let mut extra = vec![
                ("Contact".to_string(), self.contact()),
                ("Allow".to_string(), "INVITE, ACK, CANCEL, BYE, OPTIONS".to_string()),
                ("Subject".to_string(), one_line(subject)),
                ("Content-Type".to_string(), "application/sdp".to_string()),
            ];
            extra.extend(auth.clone());
            let req = self.render(&Outgoing {
                method: "INVITE",
                uri: &ruri,
                to: &to,
                call_id: &call_id,
                cseq,
                branch: &branch,
                extra,
                body: Some(offer.clone()),
            });
            let resp = match self.transaction(&req, &call_id, "INVITE", cseq, deadline).await? {
                Wait::Final(resp) => resp,
                Wait::Timeout { provisional: false } => {
                    return Err(NotifyError::Timeout { target: self.target.clone(), stage: "INVITE".into() });
                }
                Wait::Timeout { provisional: true } => {
                    self.cancel(&ruri, &to, cseq, &branch).await;
                    return Err(NotifyError::NoAnswer { seconds: ring_seconds });
                }
            };
            if resp.code >= 300 {
                self.ack_failure(&ruri, &resp, cseq, &branch).await;
            }
            let reason = one_line(&resp.reason);
            match resp.code {
                200..=299 => return self.confirm(&resp, &ruri, cseq, auth).await,
                401 | 407 if auth.is_none() => match self.authorize(&resp, "INVITE", &ruri) {
                    Some(a) => auth = Some(a),
                    None => {
                        return Err(NotifyError::SipAuthFailed { stage: "INVITE".into(), code: resp.code });
                    }
                },
                // A refusal after we answered the challenge means wrong credentials.
                401 | 403 | 407 if auth.is_some() => {
                    return Err(NotifyError::SipAuthFailed { stage: "INVITE".into(), code: resp.code });
                }
                486 | 600 => return Err(NotifyError::CallBusy { code: resp.code, reason }),
                603 => return Err(NotifyError::CallDeclined { code: resp.code, reason }),
                408 | 487 => return Err(NotifyError::NoAnswer { seconds: ring_seconds }),
                code => return Err(refused("INVITE", code, &reason)),
            }
        }
    }

    /// ACK for a non-2xx final response: same branch as the INVITE (RFC 3261 §17.1.1.3).
    async fn ack_failure(&mut self, ruri: &str, resp: &Message, cseq: u32, branch: &str) {
        let to = resp.header("To").unwrap_or_default().to_string();
        let call_id = self.call_id.clone();
        let ack = self.render(&Outgoing {
            method: "ACK",
            uri: ruri,
            to: &to,
            call_id: &call_id,
            cseq,
            branch,
            extra: Vec::new(),
            body: None,
        });
        let target = self.target.clone();
        if let Err(e) = self.link.send(&target, &ack).await {
            tracing::debug!(error = %e, "could not acknowledge a SIP failure response");
        }
    }

    /// Gives up on a ringing call: CANCEL, then acknowledge the 487.
    async fn cancel(&mut self, ruri: &str, to: &str, cseq: u32, branch: &str) {
        let call_id = self.call_id.clone();
        let cancel = self.render(&Outgoing {
            method: "CANCEL",
            uri: ruri,
            to,
            call_id: &call_id,
            cseq,
            branch,
            extra: Vec::new(),
            body: None,
        });
        let target = self.target.clone();
        if self.link.send(&target, &cancel).await.is_err() {
            return;
        }
        let until = Instant::now() + CANCEL_WAIT;
        while let Ok(Ok(msg)) = tokio::time::timeout_at(until, self.link.recv(&target)).await {
            if msg.request.is_some() {
                self.answer_request(&msg).await;
                continue;
            }
            if msg.cseq() == Some((cseq, "INVITE".to_string())) && msg.code >= 300 {
                self.ack_failure(ruri, &msg, cseq, branch).await;
                return;
            }
            // Answered just as we gave up: acknowledge and hang up at once.
            if msg.cseq() == Some((cseq, "INVITE".to_string())) && (200..300).contains(&msg.code) {
                if let Ok(call) = self.confirm(&msg, ruri, cseq, None).await {
                    let _ = self.bye(&call).await;
                }
                return;
            }
        }
    }

    /// After a 2xx: ACK it and read the SDP answer.
    async fn confirm(
        &mut self,
        resp: &Message,
        ruri: &str,
        cseq: u32,
        auth: Option<(String, String)>,
    ) -> Result<Call, NotifyError> {
        let remote_to = resp.header("To").unwrap_or_default().to_string();
        if tag_of(&remote_to).is_none() {
            return Err(NotifyError::SipProtocol("the 200 OK has no To tag".into()));
        }
        let remote_target = resp.header("Contact").map(uri_of).unwrap_or_else(|| ruri.to_string());
        let route: Vec<String> = resp.header_values("Record-Route").into_iter().rev().collect();
        let mut extra: Vec<(String, String)> =
            route.iter().map(|r| ("Route".to_string(), r.clone())).collect();
        extra.extend(auth.clone());
        let call_id = self.call_id.clone();
        let ack = self.render(&Outgoing {
            method: "ACK",
            uri: &remote_target,
            to: &remote_to,
            call_id: &call_id,
            cseq,
            branch: &format!("z9hG4bK{}", token()),
            extra,
            body: None,
        });
        let target = self.target.clone();
        self.link.send(&target, &ack).await?;
        let answer = parse_answer(&resp.body);
        let call = Call {
            remote_target,
            remote_to,
            route,
            invite_cseq: cseq,
            ack,
            media: ([0, 0, 0, 0], 0).into(),
            codec: Codec::Pcmu,
        };
        match answer {
            Ok((media, codec)) => Ok(Call { media, codec, ..call }),
            Err(e) => {
                // Hang up rather than leave a silent call open.
                let _ = self.bye(&call).await;
                Err(e)
            }
        }
    }

    /// Streams `samples` as 20 ms RTP packets; returns the packets sent and
    /// whether the callee hung up first.
    async fn play(&mut self, call: &Call, samples: &[i16]) -> Result<(u32, bool), NotifyError> {
        let target = self.target.clone();
        self.rtp
            .connect(call.media)
            .await
            .map_err(|e| NotifyError::Io { target: call.media.to_string(), reason: e.to_string() })?;
        let payload = call.codec.encode(samples);
        let silence = call.codec.encode(&[0])[0];
        let ssrc = rand::random::<u32>();
        let mut seq = rand::random::<u16>();
        let mut timestamp = rand::random::<u32>();
        let mut ticks = tokio::time::interval(Duration::from_millis(20));
        let mut sent = 0u32;
        for (i, chunk) in payload.chunks(SAMPLES_PER_PACKET).enumerate() {
            let mut frame = chunk.to_vec();
            frame.resize(SAMPLES_PER_PACKET, silence);
            loop {
                tokio::select! {
                    _ = ticks.tick() => break,
                    msg = self.link.recv(&target) => match msg {
                        Ok(m) if m.request.is_some() => {
                            self.answer_request(&m).await;
                            if self.peer_hung_up {
                                return Ok((sent, true));
                            }
                        }
                        // Our ACK was lost: the callee repeats its 200 OK.
                        Ok(m) if m.cseq() == Some((call.invite_cseq, "INVITE".to_string())) => {
                            self.link.send(&target, &call.ack).await?;
                        }
                        Ok(_) => {}
                        Err(e) => return Err(e),
                    },
                }
            }
            let packet = media::rtp_packet(call.codec.payload_type(), i == 0, seq, timestamp, ssrc, &frame);
            match self.rtp.send(&packet).await {
                Ok(_) => sent += 1,
                // A closed media port (ICMP) loses this packet, not the call.
                Err(e) => tracing::debug!(error = %e, "RTP packet not sent"),
            }
            seq = seq.wrapping_add(1);
            timestamp = timestamp.wrapping_add(SAMPLES_PER_PACKET as u32);
        }
        Ok((sent, false))
    }

    async fn bye(&mut self, call: &Call) -> Result<(), NotifyError> {
        let call_id = self.call_id.clone();
        // Digest answers are per method: the INVITE's is no use for BYE; a
        // proxy that wants credentials challenges again.
        let mut auth: Option<(String, String)> = None;
        let mut challenged = false;
        loop {
            self.cseq += 1;
            let cseq = self.cseq;
            let mut extra: Vec<(String, String)> =
                call.route.iter().map(|r| ("Route".to_string(), r.clone())).collect();
            extra.extend(auth.clone());
            let req = self.render(&Outgoing {
                method: "BYE",
                uri: &call.remote_target,
                to: &call.remote_to,
                call_id: &call_id,
                cseq,
                branch: &format!("z9hG4bK{}", token()),
                extra,
                body: None,
            });
            let resp = match self
                .transaction(&req, &call_id, "BYE", cseq, Instant::now() + IO_TIMEOUT)
                .await?
            {
                Wait::Final(resp) => resp,
                Wait::Timeout { .. } => {
                    return Err(NotifyError::Timeout { target: self.target.clone(), stage: "BYE".into() });
                }
            };
            match resp.code {
                200..=299 => return Ok(()),
                401 | 407 if !challenged => {
                    challenged = true;
                    auth = self.authorize(&resp, "BYE", &call.remote_target);
                    if auth.is_none() {
                        return Err(NotifyError::SipAuthFailed { stage: "BYE".into(), code: resp.code });
                    }
                }
                code => return Err(refused("BYE", code, &resp.reason)),
            }
        }
    }
}

fn refused(stage: &str, code: u16, reason: &str) -> NotifyError {
    NotifyError::SipRefused { stage: stage.to_string(), code, reason: one_line(reason) }
}

/// An IP as it appears in a SIP host part (IPv6 in brackets).
fn host_text(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

fn addr_text(addr: SocketAddr) -> String {
    format!("{}:{}", host_text(addr.ip()), addr.port())
}

/// The media address and codec of an SDP answer.
fn parse_answer(body: &[u8]) -> Result<(SocketAddr, Codec), NotifyError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| NotifyError::SipProtocol("the SDP answer is not text".into()))?;
    let mut session_ip: Option<IpAddr> = None;
    let mut media_ip: Option<IpAddr> = None;
    let mut audio: Option<(u16, Vec<u8>)> = None;
    let mut in_audio = false;
    let mut seen_media = false;
    for line in text.lines().map(str::trim) {
        if let Some(c) = line.strip_prefix("c=") {
            let ip =
                c.split_whitespace().nth(2).and_then(|a| a.split('/').next()).and_then(|a| a.parse().ok());
            if in_audio {
                media_ip = ip;
            } else if !seen_media {
                session_ip = ip;
            }
        } else if let Some(m) = line.strip_prefix("m=") {
            let mut parts = m.split_whitespace();
            seen_media = true;
            in_audio = parts.next() == Some("audio") && audio.is_none();
            if in_audio {
                let port = parts.next().and_then(|p| p.parse::<u16>().ok()).unwrap_or(0);
                let formats = parts.skip(1).filter_map(|f| f.parse::<u8>().ok()).collect();
                audio = Some((port, formats));
            }
        }
    }
    let (port, formats) =
        audio.ok_or_else(|| NotifyError::SipProtocol("the SDP answer has no audio stream".into()))?;
    if port == 0 {
        return Err(NotifyError::SipProtocol("the callee refused the audio stream (port 0)".into()));
    }
    let codec = formats
        .iter()
        .find_map(|pt| Codec::from_payload_type(*pt))
        .ok_or_else(|| NotifyError::SipProtocol("the callee accepts neither PCMU nor PCMA".into()))?;
    let ip = media_ip
        .or(session_ip)
        .ok_or_else(|| NotifyError::SipProtocol("the SDP answer has no connection address".into()))?;
    if ip.is_unspecified() {
        return Err(NotifyError::SipProtocol("the callee put the call on hold (address 0.0.0.0)".into()));
    }
    Ok((SocketAddr::new(ip, port), codec))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sdp_answer_picks_first_g711_and_media_address() {
        let sdp = b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 8 0 101\r\nc=IN IP4 10.0.0.2\r\n";
        let (addr, codec) = parse_answer(sdp).expect("answer");
        assert_eq!(addr, "10.0.0.2:4000".parse().expect("addr"));
        assert_eq!(codec, Codec::Pcma);
        let session_only = b"v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 4000 RTP/AVP 0\r\n";
        assert_eq!(parse_answer(session_only).map(|a| a.0.port()), Ok(4000));
        assert_eq!(
            parse_answer(b"c=IN IP4 1.2.3.4\r\nm=audio 0 RTP/AVP 0\r\n").map_err(|e| e.code().as_str()),
            Err("sip_protocol")
        );
        assert_eq!(
            parse_answer(b"c=IN IP4 1.2.3.4\r\nm=audio 5 RTP/AVP 9\r\n").map_err(|e| e.code().as_str()),
            Err("sip_protocol")
        );
        assert_eq!(
            parse_answer(b"c=IN IP4 0.0.0.0\r\nm=audio 5 RTP/AVP 0\r\n").map_err(|e| e.code().as_str()),
            Err("sip_protocol")
        );
    }
}
