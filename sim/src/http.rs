//! Just enough HTTP/1.1 for the simulated payment rail, over any byte stream (turmoil TCP
//! in the simulation): one request per connection (`Connection: close`), bodies framed by
//! `Content-Length`, heads and bodies bounded.
//!
//! The execution crate's HTTP effects use reqwest, which cannot run over turmoil's sockets;
//! the simulator's rail effect ([`crate::rail_effect`]) speaks this instead, with the same
//! headers (`Idempotency-Key`, `Docket-Attempt`), and the rail ([`crate::rail`]) answers
//! it. Callers put deadlines around every call: turmoil's TCP never retransmits, so a lost
//! segment stalls a stream forever.

use std::collections::BTreeMap;
use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Longest request or status line plus headers. Real heads of this protocol are a few
/// hundred bytes.
pub const HEAD_BYTES_MAX: usize = 8 * 1024;

/// Bytes read from the stream at a time.
const READ_CHUNK_BYTES: usize = 4 * 1024;

/// A request or a response: its first line, its headers (names in lowercase) and its body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub start: String,
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

impl Message {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    /// The status code of a response's status line (`HTTP/1.1 200 OK`).
    pub fn status(&self) -> Option<u16> {
        let mut parts = self.start.split(' ');
        let version = parts.next()?;
        if !version.starts_with("HTTP/1.") {
            return None;
        }
        parts.next()?.parse().ok()
    }
}

fn invalid(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

/// Reads one message: the head up to the blank line, then `Content-Length` bytes of body
/// (at most `body_bytes_max`; a longer one is refused before it is read).
pub async fn read_message<S: AsyncRead + Unpin>(
    stream: &mut S,
    body_bytes_max: usize,
) -> io::Result<Message> {
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; READ_CHUNK_BYTES];
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        if buf.len() > HEAD_BYTES_MAX {
            return Err(invalid(format!("head longer than {HEAD_BYTES_MAX} bytes")));
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before the end of the head",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| invalid("head is not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let start = lines.next().unwrap_or_default().to_owned();
    let mut headers = BTreeMap::new();
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| invalid(format!("malformed header line {line:?}")))?;
        headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
    }
    let length: usize = match headers.get("content-length") {
        None => 0,
        Some(text) => text
            .parse()
            .map_err(|_| invalid(format!("Content-Length {text:?} is not a number")))?,
    };
    if length > body_bytes_max {
        return Err(invalid(format!(
            "body of {length} bytes exceeds {body_bytes_max}"
        )));
    }
    let mut body = buf[head_end + 4..].to_vec();
    if body.len() > length {
        return Err(invalid("more bytes than Content-Length"));
    }
    let mut rest = vec![0u8; length - body.len()];
    stream.read_exact(&mut rest).await?;
    body.extend_from_slice(&rest);
    Ok(Message {
        start,
        headers,
        body,
    })
}

/// The bytes of a POST of a JSON `body` to `path` on `host`, with extra `headers`.
pub fn post_bytes(path: &str, host: &str, headers: &[(&str, String)], body: &[u8]) -> Vec<u8> {
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// The bytes of a response with a JSON `body`.
pub fn response_bytes(status: u16, reason: &str, body: &[u8]) -> Vec<u8> {
    let mut bytes = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// Writes `bytes` and flushes.
pub async fn write_all<S: AsyncWrite + Unpin>(stream: &mut S, bytes: &[u8]) -> io::Result<()> {
    stream.write_all(bytes).await?;
    stream.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(bytes: &[u8], max: usize) -> io::Result<Message> {
        let mut stream = bytes;
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(read_message(&mut stream, max))
    }

    #[test]
    fn requests_and_responses_round_trip() {
        let bytes = post_bytes(
            "/payouts",
            "rail:9100",
            &[("Idempotency-Key", "ab".into())],
            b"{\"a\":1}",
        );
        let request = read(&bytes, 100).expect("parses");
        assert_eq!(request.start, "POST /payouts HTTP/1.1");
        assert_eq!(request.header("idempotency-key"), Some("ab"));
        assert_eq!(request.header("Idempotency-Key"), Some("ab"));
        assert_eq!(request.body, b"{\"a\":1}");
        let response = read(&response_bytes(503, "Service Unavailable", b"{}"), 100).expect("ok");
        assert_eq!(response.status(), Some(503));
        assert_eq!(response.body, b"{}");
    }

    #[test]
    fn oversize_truncated_and_malformed_messages_are_refused() {
        let big = response_bytes(200, "OK", &[b'x'; 64]);
        assert!(read(&big, 63).is_err(), "body over the cap");
        assert!(read(&big[..big.len() - 1], 64).is_err(), "truncated body");
        assert!(read(b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n", 10).is_err());
        assert!(read(b"HTTP/1.1 200 OK\r\n", 10).is_err(), "no blank line");
        let long_head = vec![b'a'; HEAD_BYTES_MAX + 10];
        assert!(read(&long_head, 10).is_err());
        let not_http = Message {
            start: "SSH-2.0".into(),
            headers: BTreeMap::new(),
            body: Vec::new(),
        };
        assert_eq!(not_http.status(), None);
    }
}
