//! The TLS listener and the per-connection relay to the private broker.
//!
//! One accept thread; one thread per connection that polls the TLS socket and the broker
//! socket, passes every packet from the device through the [`Policy`], hands Basic Ingest
//! PUBLISHes to their rule's sink topic ([`crate::rules`]), and copies the broker's bytes
//! back unchanged.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use openssl::ssl::{ErrorCode, SslAcceptor, SslStream};

use crate::error::EmulatorError;
use crate::mqtt_packet::{
    encode_connack, encode_publish, kind, parse_fixed_header, parse_packet, Packet, Publish,
};
use crate::policy::{surely_oversize, CloseReason, Limits, Policy, Verdict};
use crate::rules::{route, Route, RuleSet};
use crate::stats::StatsHandle;
use crate::tls::{self, TlsSettings};

const POLL_MS: i32 = 100;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything a connection thread needs.
pub struct RelayContext {
    /// The TLS acceptor.
    pub acceptor: SslAcceptor,
    /// Settings for the post-handshake SNI / ALPN checks.
    pub tls: TlsSettings,
    /// The private broker.
    pub broker: SocketAddr,
    /// Limits applied to each connection.
    pub limits: Limits,
    /// The enabled Basic Ingest rules.
    pub rules: RuleSet,
    /// Shared counters.
    pub stats: StatsHandle,
}

struct Shared {
    ctx: RelayContext,
    stop: AtomicBool,
    sockets: Mutex<HashMap<u64, TcpStream>>,
}

/// The running listener; [`Relay::stop`] (or drop) closes it and every relayed connection.
pub struct Relay {
    addr: SocketAddr,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Relay {
    /// Binds `listen` (SO_REUSEADDR, so a restarted emulator can take the same port) and
    /// starts accepting.
    pub fn start(listen: SocketAddr, ctx: RelayContext) -> Result<Relay, EmulatorError> {
        let listener = TcpListener::bind(listen)
            .map_err(|e| EmulatorError::io(format!("bind {listen}"), e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| EmulatorError::io("local_addr", e))?;
        let shared = Arc::new(Shared {
            ctx,
            stop: AtomicBool::new(false),
            sockets: Mutex::new(HashMap::new()),
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("emu-accept".into())
            .spawn(move || accept_loop(listener, s))
            .map_err(|e| EmulatorError::io("spawn accept thread", e))?;
        Ok(Relay {
            addr,
            shared,
            thread: Some(thread),
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes the listener and every connection, and waits for their threads.
    pub fn stop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for s in lock(&self.shared.sockets).values() {
            let _ = s.shutdown(Shutdown::Both);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn poll_fds(fds: &mut [libc::pollfd], timeout_ms: i32) -> std::io::Result<()> {
    // SAFETY: `fds` is a valid, exclusively borrowed slice of pollfd for the whole call.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
    if n < 0 {
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
        for f in fds.iter_mut() {
            f.revents = 0;
        }
    }
    Ok(())
}

fn pollfd(fd: i32) -> libc::pollfd {
    libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut threads: Vec<JoinHandle<()>> = Vec::new();
    let mut next_key = 0u64;
    while !shared.stop.load(Ordering::SeqCst) {
        let mut fds = [pollfd(listener.as_raw_fd())];
        if let Err(e) = poll_fds(&mut fds, POLL_MS) {
            warn!("poll on listener failed: {e}");
            break;
        }
        if fds[0].revents == 0 {
            threads.retain(|t| !t.is_finished());
            continue;
        }
        let (stream, peer) = match listener.accept() {
            Ok(x) => x,
            Err(e) => {
                debug!("accept failed: {e}");
                continue;
            }
        };
        next_key += 1;
        let key = next_key;
        if let Ok(clone) = stream.try_clone() {
            lock(&shared.sockets).insert(key, clone);
        }
        let s = shared.clone();
        match std::thread::Builder::new()
            .name(format!("emu-conn-{key}"))
            .spawn(move || {
                serve(stream, peer, &s);
                lock(&s.sockets).remove(&key);
            }) {
            Ok(t) => threads.push(t),
            Err(e) => warn!("cannot spawn connection thread: {e}"),
        }
    }
    drop(listener);
    for s in lock(&shared.sockets).values() {
        let _ = s.shutdown(Shutdown::Both);
    }
    for t in threads {
        let _ = t.join();
    }
}

fn serve(stream: TcpStream, peer: SocketAddr, shared: &Shared) {
    let ctx = &shared.ctx;
    let _ = stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT));
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let _ = stream.set_nodelay(true);
    let tls_stream = match ctx.acceptor.accept(stream) {
        Ok(s) => s,
        Err(e) => {
            ctx.stats.lock().tls_failed += 1;
            info!("TLS handshake from {peer} refused: {e}");
            return;
        }
    };
    if let Err(why) = tls::check_session(tls_stream.ssl(), &ctx.tls) {
        ctx.stats.lock().tls_failed += 1;
        info!("TLS session from {peer} refused: {why}");
        return;
    }
    let cn = tls::peer_cn(tls_stream.ssl());
    let alpn = tls::alpn(tls_stream.ssl());
    let id = ctx.stats.open_connection(peer, cn.clone(), alpn.clone());
    info!(
        "connection {id} from {peer}: certificate CN={} ALPN={}",
        cn.as_deref().unwrap_or("?"),
        alpn.as_deref().unwrap_or("-")
    );
    match Connection::new(id, tls_stream, shared) {
        Ok(mut c) => c.run(),
        Err(e) => warn!("connection {id}: cannot reach private broker: {e}"),
    }
    ctx.stats.close_connection(id);
    debug!("connection {id} closed");
}

enum Flow {
    Continue,
    Close,
}

struct Connection<'a> {
    id: u64,
    tls: SslStream<TcpStream>,
    broker: TcpStream,
    policy: Policy,
    inbuf: Vec<u8>,
    shared: &'a Shared,
}

impl<'a> Connection<'a> {
    fn new(id: u64, tls: SslStream<TcpStream>, shared: &'a Shared) -> std::io::Result<Self> {
        let broker = TcpStream::connect(shared.ctx.broker)?;
        broker.set_nodelay(true)?;
        // Non-blocking TLS socket: reads drain everything OpenSSL holds (including records
        // it buffered internally, which poll cannot see) until WANT_READ.
        tls.get_ref().set_nonblocking(true)?;
        Ok(Connection {
            id,
            tls,
            broker,
            policy: Policy::new(shared.ctx.limits.clone()),
            inbuf: Vec::new(),
            shared,
        })
    }

    fn run(&mut self) {
        let mut buf = vec![0u8; 64 * 1024];
        // OpenSSL may already hold bytes read during the handshake.
        let mut device_ready = true;
        while !self.shared.stop.load(Ordering::SeqCst) {
            if device_ready && !self.read_device(&mut buf) {
                break;
            }
            let mut fds = [
                pollfd(self.tls.get_ref().as_raw_fd()),
                pollfd(self.broker.as_raw_fd()),
            ];
            if let Err(e) = poll_fds(&mut fds, POLL_MS) {
                warn!("connection {}: poll failed: {e}", self.id);
                break;
            }
            device_ready = fds[0].revents != 0;
            if fds[1].revents != 0 {
                match self.broker.read(&mut buf) {
                    Ok(0) => {
                        debug!("connection {}: broker closed the connection", self.id);
                        break;
                    }
                    Ok(n) => {
                        if let Err(e) = self.write_device(&buf[..n]) {
                            debug!("connection {}: write to device failed: {e}", self.id);
                            break;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        debug!("connection {}: broker read failed: {e}", self.id);
                        break;
                    }
                }
            }
        }
        let _ = self.tls.get_ref().shutdown(Shutdown::Both);
        let _ = self.broker.shutdown(Shutdown::Both);
    }

    /// Reads everything the device sent so far; false when the connection must end.
    fn read_device(&mut self, buf: &mut [u8]) -> bool {
        loop {
            match self.tls.ssl_read(buf) {
                Ok(0) => return false,
                Ok(n) => {
                    self.inbuf.extend_from_slice(&buf[..n]);
                    if let Flow::Close = self.process() {
                        return false;
                    }
                }
                Err(e) if matches!(e.code(), ErrorCode::WANT_READ | ErrorCode::WANT_WRITE) => {
                    return true
                }
                Err(e) => {
                    debug!("connection {}: device side closed: {e}", self.id);
                    return false;
                }
            }
        }
    }

    /// Writes all of `data` to the non-blocking TLS stream, waiting for the socket as needed.
    fn write_device(&mut self, mut data: &[u8]) -> std::io::Result<()> {
        let deadline = Instant::now() + WRITE_TIMEOUT;
        while !data.is_empty() {
            match self.tls.ssl_write(data) {
                Ok(n) => data = &data[n..],
                Err(e) if matches!(e.code(), ErrorCode::WANT_READ | ErrorCode::WANT_WRITE) => {
                    if Instant::now() > deadline || self.shared.stop.load(Ordering::SeqCst) {
                        return Err(std::io::ErrorKind::TimedOut.into());
                    }
                    let events = if e.code() == ErrorCode::WANT_READ {
                        libc::POLLIN
                    } else {
                        libc::POLLOUT
                    };
                    let mut fds = [libc::pollfd {
                        fd: self.tls.get_ref().as_raw_fd(),
                        events,
                        revents: 0,
                    }];
                    poll_fds(&mut fds, POLL_MS)?;
                }
                Err(e) => return Err(std::io::Error::other(e.to_string())),
            }
        }
        Ok(())
    }

    /// Appends an admitted PUBLISH for the broker to `out`: unchanged, or for a Basic Ingest
    /// topic rewritten to its rule's sink topic (same QoS and packet id, so the broker's
    /// PUBACK answers the device in order; RETAIN cleared, rules keep nothing).
    fn forward_publish(&self, p: &Publish<'_>, bytes: &[u8], out: &mut Vec<u8>) {
        let (rule, sink, found) = match route(p.topic, &self.shared.ctx.rules) {
            Route::Broker => return out.extend_from_slice(bytes),
            Route::Rule { rule, sink } => (rule, sink, true),
            Route::RuleNotFound { rule, sink } => (rule, sink, false),
        };
        let n = self.shared.ctx.stats.rule_message(self.id, &rule, found);
        if !found {
            // AWS logs RuleNotFound for every such message; here the first one per rule is
            // logged at info, the rest at debug (the count is in the stats).
            let line = format!(
                "connection {}: RuleNotFound: {:?}: rule {rule:?} does not exist or is disabled, message dropped ({n} so far)",
                self.id, p.topic
            );
            if n == 1 {
                info!("{line}");
            } else {
                debug!("{line}");
            }
        }
        out.extend_from_slice(&encode_publish(
            &sink,
            p.payload,
            p.qos,
            p.packet_id.unwrap_or(0),
            false,
        ));
    }

    /// Judges every complete packet in `inbuf`, forwards the admitted ones.
    fn process(&mut self) -> Flow {
        let mut out = Vec::new();
        let mut to_device = Vec::new();
        let mut start = 0;
        let mut close = None;
        let stats = &self.shared.ctx.stats;
        loop {
            let rest = &self.inbuf[start..];
            let header = match parse_fixed_header(rest) {
                Ok(Some(h)) => h,
                Ok(None) => break,
                Err(_) => {
                    close = Some(CloseReason::ProtocolError);
                    break;
                }
            };
            if header.packet_type == kind::PUBLISH
                && surely_oversize(header.remaining_len, self.policy.limits())
            {
                close = Some(CloseReason::PayloadTooLarge);
                break;
            }
            if rest.len() < header.total_len() {
                break;
            }
            let bytes = &rest[..header.total_len()];
            let packet = match parse_packet(&header, bytes) {
                Ok(p) => p,
                Err(e) => {
                    debug!("connection {}: {e}", self.id);
                    close = Some(CloseReason::ProtocolError);
                    break;
                }
            };
            match self.policy.check(&packet, bytes.len(), Instant::now()) {
                Verdict::Forward => {
                    match &packet {
                        Packet::Publish(p) => self.forward_publish(p, bytes, &mut out),
                        _ => out.extend_from_slice(bytes),
                    }
                    count_forwarded(stats, self.id, &packet);
                }
                Verdict::Throttle => {
                    stats.lock().publishes_throttled += 1;
                    stats.with_connection(self.id, |c| c.publishes_throttled += 1);
                }
                Verdict::Close(r) => {
                    close = Some(r);
                    break;
                }
                Verdict::Refuse(r, code) => {
                    if let Packet::Connect(c) = &packet {
                        let client_id = String::from_utf8_lossy(c.client_id).into_owned();
                        stats.with_connection(self.id, |s| s.client_id = Some(client_id));
                    }
                    stats.lock().connects_refused += 1;
                    to_device = encode_connack(false, code);
                    close = Some(r);
                    break;
                }
            }
            start += header.total_len();
        }
        self.inbuf.drain(..start);
        if !out.is_empty() {
            if let Err(e) = self.broker.write_all(&out) {
                debug!("connection {}: write to broker failed: {e}", self.id);
                return Flow::Close;
            }
        }
        if !to_device.is_empty() {
            let _ = self.write_device(&to_device);
        }
        match close {
            None => Flow::Continue,
            Some(reason) => {
                let who = stats
                    .snapshot()
                    .connections
                    .iter()
                    .find(|c| c.id == self.id)
                    .cloned();
                warn!(
                    "connection {} (CN={}, client id {}) closed for policy: {}",
                    self.id,
                    who.as_ref().and_then(|c| c.cn.clone()).unwrap_or_default(),
                    who.as_ref()
                        .and_then(|c| c.client_id.clone())
                        .unwrap_or_default(),
                    reason.as_str()
                );
                *stats
                    .lock()
                    .closed_for_policy
                    .entry(reason.as_str().to_string())
                    .or_insert(0) += 1;
                stats.with_connection(self.id, |c| {
                    c.closed_for_policy = Some(reason.as_str().to_string())
                });
                Flow::Close
            }
        }
    }
}

fn count_forwarded(stats: &StatsHandle, id: u64, packet: &Packet<'_>) {
    match packet {
        Packet::Connect(c) => {
            let client_id = String::from_utf8_lossy(c.client_id).into_owned();
            info!("connection {id}: CONNECT client id {client_id:?}");
            stats.lock().connects += 1;
            stats.with_connection(id, |s| s.client_id = Some(client_id));
        }
        Packet::Publish(p) => {
            let len = p.payload.len() as u64;
            stats.lock().publishes_accepted += 1;
            stats.with_connection(id, |s| {
                s.publishes_accepted += 1;
                s.payload_bytes_accepted += len;
            });
        }
        _ => {}
    }
}
