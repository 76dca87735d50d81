//! A TCP relay between awslink and the cloud endpoint that a test can cut (connections closed,
//! new ones refused: an outage) or black-hole (connections stay open, nothing passes either way).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const OPEN: u8 = 0;
const CUT: u8 = 1;
const BLACK_HOLE: u8 = 2;
const STOPPED: u8 = 3;

/// The relay; stops on drop.
pub struct Proxy {
    pub port: u16,
    state: Arc<AtomicU8>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    /// Relays 127.0.0.1:`port` → 127.0.0.1:`target`.
    pub fn start(target: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(AtomicU8::new(OPEN));
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (st, cs) = (state.clone(), conns.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                match st.load(Ordering::SeqCst) {
                    STOPPED => return,
                    CUT => {
                        let _ = client.shutdown(Shutdown::Both);
                        continue;
                    }
                    _ => {}
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                {
                    let mut list = cs.lock().unwrap();
                    list.push(client.try_clone().unwrap());
                    list.push(server.try_clone().unwrap());
                }
                pipe(
                    client.try_clone().unwrap(),
                    server.try_clone().unwrap(),
                    st.clone(),
                );
                pipe(server, client, st.clone());
            }
        });
        Proxy { port, state, conns }
    }

    /// Closes every relayed connection and refuses new ones until [`resume`](Self::resume).
    pub fn cut(&self) {
        self.state.store(CUT, Ordering::SeqCst);
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
    }

    /// Stops forwarding in both directions without closing anything.
    pub fn black_hole(&self) {
        self.state.store(BLACK_HOLE, Ordering::SeqCst);
    }

    /// Forwards again (after a black hole, the stalled connections are closed first, as a
    /// network that dropped packets for a while would have made them useless anyway).
    pub fn resume(&self) {
        if self.state.swap(OPEN, Ordering::SeqCst) == BLACK_HOLE {
            for c in self.conns.lock().unwrap().drain(..) {
                let _ = c.shutdown(Shutdown::Both);
            }
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.state.store(STOPPED, Ordering::SeqCst);
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(Shutdown::Both);
        }
        let _ = TcpStream::connect(("127.0.0.1", self.port)); // wake the accept loop
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream, state: Arc<AtomicU8>) {
    std::thread::spawn(move || {
        let _ = from.set_read_timeout(Some(Duration::from_millis(50)));
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match state.load(Ordering::SeqCst) {
                STOPPED | CUT => break,
                BLACK_HOLE => {
                    // Swallow nothing, forward nothing: leave bytes in the kernel buffers.
                    std::thread::park_timeout(Duration::from_millis(20));
                    continue;
                }
                _ => {}
            }
            match from.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => break,
            }
        }
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}
