//! A TCP relay between a forwarder and the emulator. While the "down" file exists it closes
//! every relayed connection and closes new ones right after accepting them: the cloud is away,
//! while the emulator and its private broker (and the sink on it) keep running.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
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
    let listener = TcpListener::bind(("127.0.0.1", a.listen_port))
        .map_err(|e| format!("listen on 127.0.0.1:{}: {e}", a.listen_port))?;
    if let Some(f) = &a.ready_file {
        std::fs::write(f, b"ready\n").map_err(|e| format!("{}: {e}", f.display()))?;
    }
    let live: Arc<Mutex<Vec<TcpStream>>> = Arc::new(Mutex::new(Vec::new()));
    {
        let live = Arc::clone(&live);
        let down = a.down_file.clone();
        std::thread::spawn(move || loop {
            if down.exists() {
                if let Ok(mut v) = live.lock() {
                    for s in v.drain(..) {
                        let _ = s.shutdown(Shutdown::Both);
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        });
    }
    for conn in listener.incoming() {
        let Ok(client) = conn else { continue };
        if a.down_file.exists() {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        }
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
        if let Ok(mut v) = live.lock() {
            v.retain(|s| s.peer_addr().is_ok());
            v.push(c3);
            v.push(s3);
        }
        std::thread::spawn(move || pump(client, s2));
        std::thread::spawn(move || pump(server, c2));
    }
    Ok(())
}
