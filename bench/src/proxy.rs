//! A TCP relay between a forwarder and the emulator. While the "down" file exists it closes
//! every relayed connection and refuses (or accepts and closes) new ones: the cloud is away,
//! while the emulator and its private broker (and the sink on it) keep running.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use crate::Result;

/// Options of `proxy`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Port to listen on (127.0.0.1).
    #[arg(long)]
    listen_port: u16,
    /// Port to relay to (127.0.0.1).
    #[arg(long)]
    target_port: u16,
    /// While this file exists the cloud is unreachable.
    #[arg(long)]
    down_file: PathBuf,
    /// Created once listening.
    #[arg(long)]
    ready_file: Option<PathBuf>,
    /// How the cloud is away: `refuse` closes the port (connection refused), `eof` accepts TCP
    /// and closes it at once (the TLS handshake sees EOF, as behind a load balancer or proxy).
    #[arg(long, value_enum, default_value = "refuse")]
    mode: DownMode,
}

/// How the relay behaves while the cloud is away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DownMode {
    /// Close the listening port.
    Refuse,
    /// Accept and close immediately.
    Eof,
}

fn pump(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}

/// Runs the relay until killed.
pub fn run(a: Args) -> Result<()> {
    let bind = |port: u16| -> std::io::Result<TcpListener> {
        let l = TcpListener::bind(("127.0.0.1", port))?;
        l.set_nonblocking(true)?;
        Ok(l)
    };
    let mut listener = Some(
        bind(a.listen_port).map_err(|e| format!("listen on 127.0.0.1:{}: {e}", a.listen_port))?,
    );
    if let Some(f) = &a.ready_file {
        std::fs::write(f, b"ready\n").map_err(|e| format!("{}: {e}", f.display()))?;
    }
    let mut live: Vec<TcpStream> = Vec::new();
    loop {
        let down = a.down_file.exists();
        if down {
            for s in live.drain(..) {
                let _ = s.shutdown(Shutdown::Both);
            }
            if a.mode == DownMode::Refuse {
                // Closed port: connection refused, as when the endpoint process is gone.
                listener = None;
            }
        } else if listener.is_none() {
            match bind(a.listen_port) {
                Ok(l) => listener = Some(l),
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
            }
        }
        let accepted = match &listener {
            Some(l) => l.accept().ok(),
            None => None,
        };
        let Some((client, _)) = accepted else {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        if down {
            // EOF mode: TCP connects, then the peer closes before the TLS handshake completes.
            let _ = client.shutdown(Shutdown::Both);
            continue;
        }
        let _ = client.set_nonblocking(false);
        let Ok(server) = TcpStream::connect(("127.0.0.1", a.target_port)) else {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        };
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        let (Ok(c2), Ok(s2), Ok(c3), Ok(s3)) = (
            client.try_clone(),
            server.try_clone(),
            client.try_clone(),
            server.try_clone(),
        ) else {
            continue;
        };
        live.retain(|s| s.peer_addr().is_ok());
        live.push(c3);
        live.push(s3);
        std::thread::spawn(move || pump(client, s2));
        std::thread::spawn(move || pump(server, c2));
    }
}
