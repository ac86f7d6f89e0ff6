//! A minimal HTTP/1.1 keep-alive client for the load generators. The generator shares the 2
//! cores with the server it measures (as `wrk` did for perf-limits.md §1), so requests are
//! prepared as bytes before the clock starts and only the status line and `Content-Length` of
//! each answer are read: what the bench spends per request is left to the server.

use std::io;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One kept-alive connection; requests are sent one at a time.
pub(crate) struct RawConnection {
    stream: TcpStream,
    buffer: Vec<u8>,
}

/// `http://host:port/path…` → (`host:port`, `/path…`).
pub(crate) fn split_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("http://")?;
    let slash = rest.find('/').unwrap_or(rest.len());
    let path = if slash == rest.len() { "/" } else { &rest[slash..] };
    Some((&rest[..slash], path))
}

/// A `POST` with a JSON body and the given extra headers, as bytes on the wire.
pub(crate) fn post_request(host: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(name);
        head.push_str(": ");
        head.push_str(value);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    let mut request = head.into_bytes();
    request.extend_from_slice(body);
    request
}

impl RawConnection {
    pub(crate) async fn connect(host: &str) -> io::Result<RawConnection> {
        let stream = TcpStream::connect(host).await?;
        stream.set_nodelay(true)?;
        Ok(RawConnection {
            stream,
            buffer: Vec::with_capacity(4096),
        })
    }

    /// Sends one request and reads its whole answer; returns the status code.
    pub(crate) async fn round_trip(&mut self, request: &[u8]) -> io::Result<u16> {
        self.stream.write_all(request).await?;
        loop {
            if let Some(end) = memchr::memmem::find(&self.buffer, b"\r\n\r\n") {
                let head = &self.buffer[..end];
                let status = head
                    .get(9..12)
                    .and_then(|s| std::str::from_utf8(s).ok())
                    .and_then(|s| s.parse::<u16>().ok())
                    .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no status line"))?;
                let length = content_length(head)
                    .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no content-length"))?;
                let total = end + 4 + length;
                while self.buffer.len() < total {
                    self.fill().await?;
                }
                self.buffer.drain(..total);
                return Ok(status);
            }
            self.fill().await?;
        }
    }

    async fn fill(&mut self) -> io::Result<()> {
        if self.stream.read_buf(&mut self.buffer).await? == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed"));
        }
        Ok(())
    }
}

fn content_length(head: &[u8]) -> Option<usize> {
    head.split(|b| *b == b'\n').find_map(|line| {
        let line = std::str::from_utf8(line).ok()?.trim_end();
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse().ok())
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_and_requests_are_well_formed() {
        assert_eq!(
            split_url("http://127.0.0.1:8080/hooks/api/x?y=1"),
            Some(("127.0.0.1:8080", "/hooks/api/x?y=1"))
        );
        assert_eq!(split_url("http://h:1"), Some(("h:1", "/")));
        assert_eq!(split_url("https://h/x"), None);
        let r = post_request("h:1", "/p", &[("x-sig", "abc")], b"{}");
        assert_eq!(
            r,
            b"POST /p HTTP/1.1\r\nhost: h:1\r\ncontent-type: application/json\r\ncontent-length: 2\r\nx-sig: abc\r\n\r\n{}"
        );
        assert_eq!(
            content_length(b"HTTP/1.1 200 OK\r\nContent-Length: 22\r\nx: y"),
            Some(22)
        );
    }

    /// Two answers on one connection, the second split across reads.
    #[tokio::test]
    async fn reads_whole_answers_on_a_kept_alive_connection() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.expect("accept");
            let mut seen = Vec::new();
            let mut buf = [0u8; 1024];
            while memchr::memmem::find_iter(&seen, b"{}").count() < 2 {
                let n = socket.read(&mut buf).await.expect("read");
                seen.extend_from_slice(&buf[..n]);
                if memchr::memmem::find_iter(&seen, b"{}").count() == 1 && seen.ends_with(b"{}") {
                    socket
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                        .await
                        .expect("write");
                }
            }
            socket
                .write_all(b"HTTP/1.1 409 Conflict\r\nContent-Length: 5\r\n\r\nab")
                .await
                .expect("write");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            socket.write_all(b"cde").await.expect("write");
        });
        let mut c = RawConnection::connect(&addr).await.expect("connect");
        let request = post_request(&addr, "/", &[], b"{}");
        assert_eq!(c.round_trip(&request).await.expect("first"), 200);
        assert_eq!(c.round_trip(&request).await.expect("second"), 409);
        assert!(c.buffer.is_empty());
        server.await.expect("server");
    }
}
