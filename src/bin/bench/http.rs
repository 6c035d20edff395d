//! A minimal HTTP/1.1 client over one keep-alive `TcpStream` (loopback only): enough to speak
//! Moodle's REST protocol to the server under test without pulling an HTTP client crate into
//! the build. Every read is bounded by `REQUEST_TIMEOUT_MS`.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// No single request of the benchmark may take longer than this.
pub const REQUEST_TIMEOUT_MS: u64 = 60_000;
/// A response header section longer than this is refused (the server's are a few lines).
const HEADER_LINES_MAX: usize = 64;

pub type HttpResult<T> = Result<T, String>;

/// One keep-alive connection to the server.
pub struct Client {
    addr: String,
    stream: Option<BufReader<TcpStream>>,
}

impl Client {
    pub fn new(addr: &str) -> Self {
        Self { addr: addr.to_string(), stream: None }
    }

    /// POSTs a form to Moodle's REST endpoint and returns the body.
    pub async fn rest(&mut self, form: &str) -> HttpResult<Vec<u8>> {
        let path = "/webservice/rest/server.php";
        self.timed(&format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\n\
             Content-Length: {}\r\n\r\n{form}",
            form.len()
        ))
        .await
    }

    /// GETs `path` with a bearer token (the audit API) and returns the body.
    pub async fn get_bearer(&mut self, path: &str, token: &str) -> HttpResult<Vec<u8>> {
        self.timed(&format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\r\n")).await
    }

    /// `exchange` within `REQUEST_TIMEOUT_MS`; after a failure the connection is dropped, so
    /// the next request starts on a fresh one.
    async fn timed(&mut self, request: &str) -> HttpResult<Vec<u8>> {
        let timeout = Duration::from_millis(REQUEST_TIMEOUT_MS);
        let outcome = match tokio::time::timeout(timeout, self.exchange(request)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(format!("no answer within {REQUEST_TIMEOUT_MS} ms")),
        };
        if outcome.is_err() {
            self.stream = None;
        }
        outcome
    }

    /// Sends one request on the keep-alive connection (opening it when needed) and reads the
    /// answer; anything but 200 is an error with its body.
    async fn exchange(&mut self, request: &str) -> HttpResult<Vec<u8>> {
        if self.stream.is_none() {
            let stream = TcpStream::connect(&self.addr).await.map_err(|e| format!("connect {}: {e}", self.addr))?;
            stream.set_nodelay(true).map_err(|e| e.to_string())?;
            self.stream = Some(BufReader::new(stream));
        }
        let stream = self.stream.as_mut().expect("connected above");
        stream.get_mut().write_all(request.as_bytes()).await.map_err(|e| format!("send: {e}"))?;
        let (status, body, close) = read_response(stream).await?;
        if close {
            self.stream = None;
        }
        if status != 200 {
            return Err(format!("HTTP {status}: {}", String::from_utf8_lossy(&body)));
        }
        Ok(body)
    }
}

/// GETs `path` on a fresh connection and returns the status (None when nothing answers).
pub async fn get_status(addr: &str, path: &str) -> Option<u16> {
    let attempt = async {
        let stream = TcpStream::connect(addr).await.ok()?;
        let mut stream = BufReader::new(stream);
        let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
        stream.get_mut().write_all(request.as_bytes()).await.ok()?;
        read_response(&mut stream).await.ok().map(|(status, _, _)| status)
    };
    tokio::time::timeout(Duration::from_millis(2_000), attempt).await.ok().flatten()
}

/// Reads one response: status, body (Content-Length or chunked), whether the server closes.
async fn read_response(stream: &mut BufReader<TcpStream>) -> HttpResult<(u16, Vec<u8>, bool)> {
    let mut line = String::new();
    stream.read_line(&mut line).await.map_err(|e| format!("read status: {e}"))?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {line:?}"))?;
    let (mut length, mut chunked, mut close) = (None, false, false);
    for _ in 0..HEADER_LINES_MAX {
        line.clear();
        stream.read_line(&mut line).await.map_err(|e| format!("read header: {e}"))?;
        let header = line.trim_end();
        if header.is_empty() {
            let body = if chunked {
                read_chunked(stream).await?
            } else {
                let mut body = vec![0; length.unwrap_or(0)];
                stream.read_exact(&mut body).await.map_err(|e| format!("read body: {e}"))?;
                body
            };
            return Ok((status, body, close));
        }
        let Some((name, value)) = header.split_once(':') else { continue };
        let (name, value) = (name.trim().to_ascii_lowercase(), value.trim().to_ascii_lowercase());
        match name.as_str() {
            "content-length" => length = value.parse().ok(),
            "transfer-encoding" => chunked = value.contains("chunked"),
            "connection" => close = value == "close",
            _ => {}
        }
    }
    Err(format!("more than {HEADER_LINES_MAX} header lines"))
}

async fn read_chunked(stream: &mut BufReader<TcpStream>) -> HttpResult<Vec<u8>> {
    let mut body = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        stream.read_line(&mut line).await.map_err(|e| format!("read chunk size: {e}"))?;
        let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
            .map_err(|_| format!("bad chunk size {line:?}"))?;
        let start = body.len();
        body.resize(start + size + 2, 0);
        stream.read_exact(&mut body[start..]).await.map_err(|e| format!("read chunk: {e}"))?;
        body.truncate(start + size);
        if size == 0 {
            return Ok(body);
        }
    }
}
