//! A host-side HTTP server for guests that download over user networking.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;

/// Serves `body` to every HTTP GET on the host's loopback; returns the port.
pub fn http_server(body: Vec<u8>) -> u16 {
    http_server_paced(body, None)
}

/// [`http_server`], sending at most `bytes_per_second` if given (a transfer that lasts).
pub fn http_server_paced(body: Vec<u8>, bytes_per_second: Option<usize>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let body = body.clone();
            std::thread::spawn(move || {
                let mut conn = conn;
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let head = format!("HTTP/1.0 200 OK\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\n\r\n", body.len());
                if conn.write_all(head.as_bytes()).is_err() {
                    return;
                }
                const CHUNK: usize = 64 << 10;
                for chunk in body.chunks(CHUNK) {
                    if conn.write_all(chunk).is_err() {
                        return;
                    }
                    if let Some(rate) = bytes_per_second {
                        std::thread::sleep(Duration::from_secs_f64(chunk.len() as f64 / rate as f64));
                    }
                }
            });
        }
    });
    port
}

