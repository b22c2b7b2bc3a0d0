//! The benchmark's backend: the smallest HTTP/1.1 keep-alive server std can make, so that
//! the proxies, not the app, are what the ingress benchmark measures. Built by
//! `benches/ingress.rs` with `rustc -O -C target-feature=+crt-static` into a `FROM scratch`
//! image (busybox httpd closes every connection, which would hide upstream keep-alive).
//!
//! A fixture, not a web server: it reads request heads up to the blank line, skips a
//! `Content-Length` body, and answers every request `200 hello\n`, keeping the connection
//! unless the client sent `Connection: close`; a request with an `Upgrade` header gets `101`
//! and its bytes echoed back (a stand-in for a WebSocket). One thread per connection.
//! Listens on `0.0.0.0:8080`.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
};

const BODY: &[u8] = b"hello\n";

fn serve(stream: TcpStream) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    loop {
        let mut length = 0usize;
        let mut close = false;
        let mut upgrade = None;
        let mut first = true;
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            let l = line.trim_end();
            if l.is_empty() {
                if first {
                    continue;
                }
                break;
            }
            first = false;
            if let Some((name, value)) = l.split_once(':') {
                let value = value.trim();
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.parse().unwrap_or(0);
                } else if name.eq_ignore_ascii_case("connection") {
                    close = value.eq_ignore_ascii_case("close");
                } else if name.eq_ignore_ascii_case("upgrade") {
                    upgrade = Some(value.to_owned());
                }
            }
        }
        if let Some(protocol) = upgrade {
            let head = format!(
                "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: {protocol}\r\n\r\n"
            );
            writer.write_all(head.as_bytes())?;
            std::io::copy(&mut reader, &mut writer)?;
            return Ok(());
        }
        if length > 0 {
            std::io::copy(&mut (&mut reader).take(length as u64), &mut std::io::sink())?;
        }
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{}\r\n",
            BODY.len(),
            if close { "Connection: close\r\n" } else { "" }
        );
        let mut response = head.into_bytes();
        response.extend_from_slice(BODY);
        writer.write_all(&response)?;
        if close {
            return Ok(());
        }
    }
}

fn main() {
    let listener = TcpListener::bind("0.0.0.0:8080").expect("bind 0.0.0.0:8080");
    for stream in listener.incoming().flatten() {
        std::thread::spawn(move || {
            let _ = serve(stream);
        });
    }
}
