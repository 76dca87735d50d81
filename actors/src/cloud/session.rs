//! The MQTT 3.1.1 session to AWS IoT over one TLS connection, on one thread of its own.
//!
//! [`connect`] runs blocking: DNS, TCP and the TLS handshake through [`tls_probe::open`] (each
//! step within the connect timeout; a failure is named exactly as `awslink check` names it),
//! then CONNECT and CONNACK, SUBSCRIBE (at most 8 filters per packet, AWS's limit) and every
//! SUBACK within what is left of it. Then [`run`] serves the connection with non-blocking I/O and
//! `poll(2)` until it fails or is closed: at each wake-up it writes everything the [`Outbox`]
//! holds (one TLS record per 16 KiB, where Paho C wrote one per publish), reads and handles
//! whatever arrived (PUBACKs complete publishes in the outbox's [`InFlight`], PUBLISHes
//! from the cloud are handed on and acknowledged after), and keeps the connection alive with
//! PINGREQs.
//!
//! Packets are encoded and decoded by rumqttc's `mqttbytes` (the crate the local intake already
//! uses); the connection is the `openssl` crate's, with the same CA, client certificate or
//! hardware key, ALPN, SNI and host name check as every other TLS connection of awslink
//! ([`crate::tls::TlsIdentity::openssl_client`]). Why this replaced Paho C on this path, with
//! the measurements: ARCHITECTURE.md, "The cloud session is awslink's own".

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::task::Waker;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use openssl::ssl::{ErrorCode, SslStream};
use rumqttc::mqttbytes::v4::{
    self, ConnectReturnCode, Packet, PingReq, PubAck, Subscribe, SubscribeFilter,
    SubscribeReasonCode,
};
use rumqttc::mqttbytes::{self as codec, QoS};

use super::inflight::InFlight;
use super::link::LinkConfig;
use super::tls_probe::{self, error, is_alert_about_us, ProbeTarget};
use crate::model::{DownCause, DownReason, Outcome};
use crate::sync::lock;

/// AWS IoT accepts at most 8 topic filters in one SUBSCRIBE.
const FILTERS_PER_SUBSCRIBE: usize = 8;

/// The largest packet accepted from the endpoint (AWS's payloads are at most 128 KB).
const MAX_INCOMING: usize = 1024 * 1024;

/// How long a requested close waits to write its DISCONNECT.
const CLOSE_WRITE: Duration = Duration::from_secs(2);

/// What the publisher hands the I/O thread, and the outcomes it hands back. One lock: the
/// publisher holds it to encode one publish, the I/O thread to take the encoded bytes or to
/// complete publishes.
#[derive(Default)]
pub struct Pending {
    /// Encoded packets the I/O thread has not taken yet.
    pub out: BytesMut,
    /// The epoch and journal key of each QoS 0 publish in `out`: delivered once written.
    pub out_qos0: Vec<(u64, u64)>,
    /// Moves on when the drain forgets what is outstanding: QoS 0 publishes of an older epoch
    /// are not reported when they are written.
    pub epoch: u64,
    /// The QoS 1 publishes waiting for their PUBACK.
    pub inflight: InFlight,
    /// Finished publishes the drain has not collected yet.
    pub done: Vec<(u64, Outcome)>,
    /// Woken when `done` gets an entry (the drain's [`crate::cloud::publisher::AckNotice`]).
    pub waker: Option<Waker>,
    /// Set once the I/O thread has ended: nothing will be written any more.
    pub ended: bool,
}

impl Pending {
    /// Records a finished publish and wakes the drain.
    pub fn finish(&mut self, key: u64, outcome: Outcome) {
        self.done.push((key, outcome));
        self.wake_drain();
    }

    /// Wakes the drain to collect `done`.
    pub fn wake_drain(&self) {
        if let Some(waker) = &self.waker {
            waker.wake_by_ref();
        }
    }
}

/// The hand-over between the publisher (the drain's thread) and the I/O thread.
pub struct Outbox {
    pending: Mutex<Pending>,
    /// Set while a wake-up is unread (or about to be): saves a syscall per publish.
    awake: AtomicBool,
    closing: AtomicBool,
    /// An eventfd (non-blocking): the I/O thread polls it, [`Outbox::wake`] adds 1.
    wakeup: File,
}

impl Outbox {
    /// An empty outbox.
    pub fn new() -> io::Result<Self> {
        // SAFETY: eventfd takes no pointers; the result is checked before it is used.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a new descriptor that nothing else owns.
        let wakeup = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        Ok(Outbox {
            pending: Mutex::new(Pending::default()),
            awake: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            wakeup,
        })
    }

    /// The shared state, locked.
    pub fn lock(&self) -> MutexGuard<'_, Pending> {
        lock(&self.pending)
    }

    /// Has the I/O thread look at the outbox (one eventfd write unless a wake-up is already on
    /// its way).
    pub fn wake(&self) {
        if !self.awake.swap(true, Ordering::AcqRel) {
            // Fails only when the counter is full, i.e. wake-ups are already queued.
            let _ = (&self.wakeup).write(&1u64.to_ne_bytes());
        }
    }

    /// Asks the I/O thread to close the connection (with a DISCONNECT) and end.
    pub fn close(&self) {
        self.closing.store(true, Ordering::Release);
        self.wake();
    }

    /// True once [`Self::close`] was called.
    pub fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    fn take_wakeups(&self) {
        // One read resets the eventfd's counter, however many wake-ups it holds.
        let mut count = [0u8; 8];
        let _ = (&self.wakeup).read(&mut count);
        self.awake.store(false, Ordering::Release);
    }
}

/// A message the cloud published to us: handed on before its PUBACK is written.
pub type OnMessage = Box<dyn FnMut(String, Vec<u8>) + Send>;

/// A connected, subscribed session, ready for [`run`].
pub struct Session {
    stream: SslStream<TcpStream>,
    /// Bytes read and not yet decoded.
    incoming: BytesMut,
    /// Packets that arrived while subscribing (a retained message may come before its SUBACK).
    early: Vec<Packet>,
    keep_alive: Duration,
    /// When a packet was last written (the keep-alive counts from there).
    last_write: Instant,
}

/// Turns a refused CONNACK into a status reason.
pub fn connack_reason(code: ConnectReturnCode) -> DownReason {
    use ConnectReturnCode::*;
    let (cause, text) = match code {
        NotAuthorized => (DownCause::NotAuthenticated, "not authorized"),
        BadUserNamePassword => (DownCause::NotAuthenticated, "bad user name or password"),
        BadClientId => (DownCause::NotAuthenticated, "client identifier rejected"),
        RefusedProtocolVersion => (DownCause::Error, "unacceptable protocol version"),
        ServiceUnavailable => (DownCause::Error, "server unavailable"),
        Success => (DownCause::Error, "accepted"),
    };
    DownReason {
        cause,
        detail: format!("connection refused: {text}"),
    }
}

/// A failed read or write turned into a status reason; `during`: what the session was doing.
fn io_reason(e: &io::Error, during: &str) -> DownReason {
    let text = e.to_string();
    if is_alert_about_us(&text) {
        // TLS 1.3: the server judges our certificate after the handshake, so its refusal
        // arrives as the first read fails.
        return tls_probe::client_rejected(&text);
    }
    if matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    ) {
        return error(format!("timed out {during}"));
    }
    error(format!("connection lost {during}: {text}"))
}

/// A failed non-blocking TLS read or write turned into a status reason.
fn ssl_reason(e: openssl::ssl::Error, during: &str) -> DownReason {
    let e = e
        .into_io_error()
        .unwrap_or_else(|e| io::Error::other(e.to_string()));
    io_reason(&e, during)
}

/// How long the diagnosis of a connection lost right after the handshake may take per step.
const DIAGNOSIS_TIMEOUT: Duration = Duration::from_millis(750);

/// A connection lost between the handshake and CONNACK: under TLS 1.3 the server judges our
/// certificate only after the handshake, and its alert can be lost when our CONNECT meets the
/// closed socket (a reset, not the alert). A second handshake that reads before it writes
/// ([`tls_probe::probe`]) names the refusal then; otherwise `reason` stands.
fn diagnose(target: &ProbeTarget, reason: DownReason) -> DownReason {
    if reason.cause != DownCause::Error {
        return reason;
    }
    let probe = ProbeTarget {
        timeout: DIAGNOSIS_TIMEOUT,
        ..target.clone()
    };
    match tls_probe::probe(&probe) {
        Err(found) if found.cause == DownCause::NotAuthenticated => found,
        _ => reason,
    }
}

/// Connects, logs in and subscribes to `config.subscriptions`: each network step of the TLS open
/// within `config.connect_timeout`, CONNECT to the last SUBACK within what is left of it. Gives
/// up between steps once `outbox` is closing, so a link that was stopped while it connected never
/// sends its CONNECT.
pub fn connect(config: &LinkConfig, outbox: &Outbox) -> Result<Session, DownReason> {
    let deadline = Instant::now() + config.connect_timeout;
    let target = ProbeTarget {
        host: config.host.clone(),
        port: config.port,
        tls: config.tls.clone(),
        timeout: config.connect_timeout,
    };
    let stream = tls_probe::open(&target)?;
    let mut session = Session {
        stream,
        incoming: BytesMut::with_capacity(16 * 1024),
        early: Vec::new(),
        // A zero keep-alive would ping, and time out, at once.
        keep_alive: config.keep_alive.max(Duration::from_secs(1)),
        last_write: Instant::now(),
    };
    if outbox.is_closing() {
        return Err(error("cloud link stopped while connecting".into()));
    }

    let mut connect = v4::Connect::new(config.client_id.clone());
    connect.keep_alive = config.keep_alive.as_secs().clamp(1, u16::MAX as u64) as u16;
    connect.clean_session = true;
    if config.username.is_some() || config.password.is_some() {
        connect.set_login(
            config.username.clone().unwrap_or_default(),
            config.password.clone().unwrap_or_default(),
        );
    }
    let mut out = BytesMut::new();
    connect
        .write(&mut out)
        .map_err(|e| error(format!("cannot encode CONNECT: {e}")))?;
    let answer = session
        .write_blocking(&out, deadline, "sending CONNECT")
        .and_then(|()| session.read_blocking(deadline, "waiting for CONNACK"))
        .map_err(|reason| diagnose(&target, reason))?;
    match answer {
        Packet::ConnAck(ack) if ack.code == ConnectReturnCode::Success => {}
        Packet::ConnAck(ack) => return Err(connack_reason(ack.code)),
        other => {
            return Err(error(format!(
                "the endpoint answered CONNECT with {other:?} instead of CONNACK"
            )))
        }
    }

    let mut waiting = Vec::new();
    out.clear();
    for (i, filters) in config
        .subscriptions
        .chunks(FILTERS_PER_SUBSCRIBE)
        .enumerate()
    {
        let mut subscribe = Subscribe::new_many(
            filters
                .iter()
                .map(|f| SubscribeFilter::new(f.clone(), QoS::AtLeastOnce)),
        );
        subscribe.pkid = i as u16 + 1;
        subscribe
            .write(&mut out)
            .map_err(|e| error(format!("cannot encode SUBSCRIBE: {e}")))?;
        waiting.push(subscribe.pkid);
    }
    if !out.is_empty() {
        session.write_blocking(&out, deadline, "sending SUBSCRIBE")?;
    }
    while !waiting.is_empty() {
        match session.read_blocking(deadline, "waiting for SUBACK")? {
            Packet::SubAck(ack) if waiting.contains(&ack.pkid) => {
                if ack
                    .return_codes
                    .iter()
                    .any(|c| matches!(c, SubscribeReasonCode::Failure))
                {
                    return Err(DownReason {
                        cause: DownCause::NotAuthenticated,
                        detail: "subscription refused by the endpoint (check the policy's iot:Subscribe)"
                            .into(),
                    });
                }
                waiting.retain(|p| *p != ack.pkid);
            }
            other => session.early.push(other),
        }
    }
    if outbox.is_closing() {
        session.close(BytesMut::new());
        return Err(error("cloud link stopped while connecting".into()));
    }
    session
        .stream
        .get_ref()
        .set_nonblocking(true)
        .map_err(|e| error(format!("cannot make the socket non-blocking: {e}")))?;
    Ok(session)
}

impl Session {
    fn set_timeouts(&self, deadline: Instant, during: &str) -> Result<(), DownReason> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(error(format!("timed out {during}")));
        }
        let tcp = self.stream.get_ref();
        let _ = tcp.set_read_timeout(Some(left));
        let _ = tcp.set_write_timeout(Some(left));
        Ok(())
    }

    fn write_blocking(
        &mut self,
        bytes: &[u8],
        deadline: Instant,
        during: &str,
    ) -> Result<(), DownReason> {
        self.set_timeouts(deadline, during)?;
        self.stream
            .write_all(bytes)
            .map_err(|e| io_reason(&e, during))?;
        self.last_write = Instant::now();
        Ok(())
    }

    fn read_blocking(&mut self, deadline: Instant, during: &str) -> Result<Packet, DownReason> {
        loop {
            if let Some(packet) = self.decode()? {
                return Ok(packet);
            }
            self.set_timeouts(deadline, during)?;
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    return Err(error(format!(
                        "connection closed by the endpoint {during} (an AWS IoT policy that does not allow iot:Connect for this client id closes it so)"
                    )))
                }
                Ok(n) => self.incoming.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_reason(&e, during)),
            }
        }
    }

    /// The next complete packet in `incoming`, if there is one.
    fn decode(&mut self) -> Result<Option<Packet>, DownReason> {
        match v4::read(&mut self.incoming, MAX_INCOMING) {
            Ok(packet) => Ok(Some(packet)),
            Err(codec::Error::InsufficientBytes(_)) => Ok(None),
            Err(e) => Err(error(format!(
                "connection lost: malformed packet from the endpoint ({e})"
            ))),
        }
    }

    /// A requested close, best effort within [`CLOSE_WRITE`]: `unsent` (what is already being
    /// written, so that a record OpenSSL has half written is finished with the same bytes) and a
    /// DISCONNECT, in blocking mode, then the TLS close.
    fn close(&mut self, mut unsent: BytesMut) {
        if v4::Disconnect.write(&mut unsent).is_err() {
            return;
        }
        let tcp = self.stream.get_ref();
        let _ = tcp.set_nonblocking(false);
        let _ = tcp.set_write_timeout(Some(CLOSE_WRITE));
        let deadline = Instant::now() + CLOSE_WRITE;
        while !unsent.is_empty() && Instant::now() < deadline {
            match self.stream.ssl_write(&unsent) {
                Ok(n) => unsent.advance(n),
                // The socket's write timeout passed: the deadline ends the loop.
                Err(e) if e.code() == ErrorCode::WANT_WRITE => {}
                Err(_) => return,
            }
        }
        if unsent.is_empty() {
            let _ = self.stream.shutdown();
        }
    }
}

/// What the I/O loop keeps between wake-ups.
struct Loop<'a> {
    session: Session,
    outbox: &'a Outbox,
    on_message: OnMessage,
    /// Encoded bytes taken from the outbox (and our own PUBACKs, PINGREQs), not yet written.
    writing: BytesMut,
    /// QoS 0 publishes in `writing` (epoch, key).
    writing_qos0: Vec<(u64, u64)>,
    /// The last write was refused until the socket is writable.
    want_write: bool,
    /// What one TLS read decrypts into (a TLS record is at most 16 KiB).
    chunk: Box<[u8; 16 * 1024]>,
    ping_sent: Option<Instant>,
}

/// Serves a connected session until it fails (the reason) or `outbox` is closed (a DISCONNECT is
/// written, then `None`). Marks the outbox ended either way.
pub fn run(session: Session, outbox: &Outbox, on_message: OnMessage) -> Option<DownReason> {
    let mut state = Loop {
        session,
        outbox,
        on_message,
        writing: BytesMut::with_capacity(64 * 1024),
        writing_qos0: Vec::new(),
        want_write: false,
        chunk: Box::new([0; 16 * 1024]),
        ping_sent: None,
    };
    let result = state.serve();
    outbox.lock().ended = true;
    match result {
        Ok(()) => {
            // Publishes still in the outbox stay unsent: the drain sends them on the next link.
            let unsent = std::mem::take(&mut state.writing);
            state.session.close(unsent);
            None
        }
        Err(reason) => Some(reason),
    }
}

impl Loop<'_> {
    /// Ok on a requested close, the reason on a failure.
    fn serve(&mut self) -> Result<(), DownReason> {
        for packet in std::mem::take(&mut self.session.early) {
            self.handle(packet)?;
        }
        let socket = self.session.stream.get_ref().as_raw_fd();
        let wake = self.outbox.wakeup.as_raw_fd();
        // The first round reads whatever arrived while subscribing.
        let mut readable = true;
        loop {
            if readable {
                self.read()?;
            }
            if self.outbox.is_closing() {
                return Ok(());
            }
            self.take_outbox();
            self.keep_alive()?;
            self.write()?;

            let timeout = self.poll_timeout();
            let mut fds = [
                libc::pollfd {
                    fd: socket,
                    events: libc::POLLIN | if self.want_write { libc::POLLOUT } else { 0 },
                    revents: 0,
                },
                libc::pollfd {
                    fd: wake,
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            let ms = timeout.as_millis().clamp(1, i32::MAX as u128) as libc::c_int;
            // SAFETY: `fds` is a valid array of two pollfd for the duration of the call.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(error(format!("poll on the cloud connection failed: {e}")));
                }
                readable = false;
                continue;
            }
            readable = fds[0].revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0;
            if fds[0].revents & libc::POLLOUT != 0 {
                self.want_write = false;
            }
            if fds[1].revents != 0 {
                self.outbox.take_wakeups();
            }
        }
    }

    fn take_outbox(&mut self) {
        let mut pending = self.outbox.lock();
        if pending.out.is_empty() {
            return;
        }
        if self.writing.is_empty() {
            std::mem::swap(&mut self.writing, &mut pending.out);
            std::mem::swap(&mut self.writing_qos0, &mut pending.out_qos0);
        } else {
            self.writing.extend_from_slice(&pending.out);
            pending.out.clear();
            self.writing_qos0.append(&mut pending.out_qos0);
        }
    }

    /// Writes as much of `writing` as the socket takes.
    fn write(&mut self) -> Result<(), DownReason> {
        while !self.writing.is_empty() && !self.want_write {
            match self.session.stream.ssl_write(&self.writing) {
                Ok(n) => {
                    self.writing.advance(n);
                    self.session.last_write = Instant::now();
                }
                Err(e) if e.code() == ErrorCode::WANT_WRITE => self.want_write = true,
                // A renegotiation waits for the peer: the next readable round goes on.
                Err(e) if e.code() == ErrorCode::WANT_READ => break,
                Err(e) => return Err(ssl_reason(e, "while writing")),
            }
        }
        if self.writing.is_empty() && !self.writing_qos0.is_empty() {
            let mut pending = self.outbox.lock();
            for (epoch, key) in self.writing_qos0.drain(..) {
                if epoch == pending.epoch {
                    pending.finish(key, Outcome::Delivered);
                }
            }
        }
        Ok(())
    }

    /// Reads and handles everything that arrived.
    fn read(&mut self) -> Result<(), DownReason> {
        loop {
            match self.session.stream.ssl_read(&mut self.chunk[..]) {
                Ok(0) => return Err(error("connection closed by the endpoint".into())),
                Ok(n) => self.session.incoming.extend_from_slice(&self.chunk[..n]),
                Err(e) if e.code() == ErrorCode::WANT_READ => break,
                // TLS 1.3 KeyUpdate: the read goes on once the socket is writable.
                Err(e) if e.code() == ErrorCode::WANT_WRITE => {
                    self.want_write = true;
                    break;
                }
                Err(e) if e.code() == ErrorCode::ZERO_RETURN => {
                    return Err(error("connection closed by the endpoint".into()))
                }
                Err(e) => return Err(ssl_reason(e, "while reading")),
            }
        }
        while let Some(packet) = self.session.decode()? {
            self.handle(packet)?;
        }
        Ok(())
    }

    fn handle(&mut self, packet: Packet) -> Result<(), DownReason> {
        match packet {
            Packet::PubAck(ack) => {
                let mut pending = self.outbox.lock();
                if let Some(key) = pending.inflight.acked(ack.pkid, Instant::now()) {
                    pending.finish(key, Outcome::Delivered);
                }
            }
            Packet::Publish(publish) if publish.qos == QoS::ExactlyOnce => {
                // We subscribe at QoS 1 at most (AWS IoT has no QoS 2).
                return Err(error(format!(
                    "protocol error: the endpoint sent a QoS 2 PUBLISH on {:?}",
                    publish.topic
                )));
            }
            Packet::Publish(publish) => {
                let qos = publish.qos;
                let pkid = publish.pkid;
                (self.on_message)(publish.topic, publish.payload.to_vec());
                // Only now, after the message was handed on (and stored), the PUBACK.
                if qos != QoS::AtMostOnce {
                    PubAck::new(pkid)
                        .write(&mut self.writing)
                        .map_err(|e| error(format!("cannot encode PUBACK: {e}")))?;
                }
            }
            Packet::PingResp => self.ping_sent = None,
            Packet::Disconnect => {
                return Err(error(
                    "connection closed by the endpoint (DISCONNECT)".into(),
                ))
            }
            // SUBACKs of the connect, anything else a broker should not send a client.
            _ => {}
        }
        Ok(())
    }

    /// A PINGREQ after a keep-alive period without writing; a failure when its PINGRESP is a
    /// keep-alive period late.
    fn keep_alive(&mut self) -> Result<(), DownReason> {
        let now = Instant::now();
        let period = self.session.keep_alive;
        if let Some(sent) = self.ping_sent {
            if now.saturating_duration_since(sent) >= period {
                return Err(error(format!(
                    "connection lost: keep-alive timeout (no PINGRESP within {} s)",
                    period.as_secs()
                )));
            }
        } else if now.saturating_duration_since(self.session.last_write) >= period {
            PingReq
                .write(&mut self.writing)
                .map_err(|e| error(format!("cannot encode PINGREQ: {e}")))?;
            self.ping_sent = Some(now);
        }
        Ok(())
    }

    fn poll_timeout(&self) -> Duration {
        let now = Instant::now();
        let due = match self.ping_sent {
            Some(sent) => sent + self.session.keep_alive,
            None => self.session.last_write + self.session.keep_alive,
        };
        due.saturating_duration_since(now) + Duration::from_millis(1)
    }
}
