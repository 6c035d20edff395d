//! Replays the worked curl session of docs/API.md against the real server binary, with tokens
//! made by `token create`, and compares every answer with the documented JSON.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use enrol_ledger::store::Backend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::on_both_backends;
use crate::support::*;

const DOC: &str = include_str!("../../docs/API.md");

pub struct Server(pub Child);
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn binary(url: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_enrol-ledger"));
    command.env("DATABASE_URL", url).env("RUST_LOG", "warn").env("SIGNING_KEY", crate::support::signing_key_for(url));
    command
}

pub fn create_token(url: &str, service: &str) -> String {
    create_token_with(url, &["--service", service])
}

fn create_token_with(url: &str, args: &[&str]) -> String {
    let output = binary(url).args(["token", "create"]).args(args).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap().lines().last().unwrap().to_owned()
}

/// The (curl arguments, expected answer) pairs of the doc, in order.
fn steps() -> Vec<(Vec<String>, String)> {
    let mut steps = Vec::new();
    let mut lines = DOC.lines().peekable();
    while let Some(line) = lines.next() {
        if line != "```sh" {
            continue;
        }
        let command = lines.next().unwrap().to_owned();
        assert_eq!(lines.next(), Some("```"));
        assert_eq!(lines.next(), Some("```json"), "every curl is followed by its answer");
        let expected = lines.next().unwrap().to_owned();
        steps.push((data_args(&command), expected));
    }
    steps
}

/// The `-d` values of a curl line, quotes removed: what curl joins with `&` as the body.
pub fn data_args(command: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    for c in command.chars() {
        match c {
            '\'' => quoted = !quoted,
            ' ' if !quoted => words.push(std::mem::take(&mut word)),
            c => word.push(c),
        }
    }
    words.push(word);
    words.windows(2).filter(|w| w[0] == "-d").map(|w| w[1].clone()).collect()
}

pub async fn post(port: u16, body: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let request = format!(
        "POST /webservice/rest/server.php HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_owned()
}

async fn documented_curl_session_replays(backend: Backend) {
    let test = TestDb::new(backend).await;
    let url = test.url.clone();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let tokens: Vec<(String, String)> =
        ["ledger_admin", "enrol_semco", "ledger_lms"].iter().map(|s| (s.to_string(), create_token(&url, s))).collect();
    let _server = Server(
        binary(&url).args(["serve", "--listen", &format!("127.0.0.1:{port}")]).stdout(Stdio::null()).spawn().unwrap(),
    );
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let steps = steps();
    assert_eq!(steps.len(), 10);
    for (args, expected) in steps {
        let body = args
            .iter()
            .map(|a| a.replace("$ADMIN", &tokens[0].1).replace("$SEMCO", &tokens[1].1).replace("$LMS", &tokens[2].1))
            .collect::<Vec<_>>()
            .join("&");
        assert_eq!(post(port, &body).await, expected, "{body}");
    }

    // IP restrictions against the real client address (loopback).
    let site_info =
        |token: &str| format!("wstoken={token}&wsfunction=core_webservice_get_site_info&moodlewsrestformat=json");
    let local = create_token_with(&url, &["--service", "ledger_audit", "--ip", "10.0.0.0/8, 127.0.0.1/32"]);
    let answer = post(port, &site_info(&local)).await;
    assert!(answer.contains(&format!(r#""siteurl":"http:\/\/127.0.0.1:{port}""#)), "{answer}");
    let remote = create_token_with(&url, &["--service", "ledger_audit", "--ip", "10.1.2.3"]);
    let answer = post(port, &site_info(&remote)).await;
    assert!(answer.contains(r#""errorcode":"accessexception""#), "{answer}");
    // A token that expires later works now; a past --valid-until is refused by the CLI.
    let later = create_token_with(&url, &["--service", "ledger_audit", "--valid-until", "2999-01-01T00:00:00Z"]);
    assert!(post(port, &site_info(&later)).await.contains("\"functions\""));
    let past = binary(&url)
        .args(["token", "create", "--service", "ledger_audit", "--valid-until", "2001-01-01T00:00:00Z"])
        .output()
        .unwrap();
    assert!(!past.status.success());
    let unknown = binary(&url).args(["token", "create", "--service", "nope"]).output().unwrap();
    assert!(!unknown.status.success());
}

on_both_backends!(documented_curl_session_replays);
