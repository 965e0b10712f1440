//! `strongroom operator …`: a running server's seal, over its HTTP API.
//!
//! HTTP/1.1 over TLS (`https://`: the system's roots, or the CA bundle in
//! `STRONGROOM_CA_FILE`, with a client certificate from
//! `STRONGROOM_CLIENT_CERT` / `STRONGROOM_CLIENT_KEY` for mutual TLS), or
//! plain to a loopback address; the share is read from standard input so
//! that it appears in no shell history or process list.

use std::io::{BufRead, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::Context;
use zeroize::Zeroizing;

use crate::Failure;
use crate::config::ConfigError;

const TIMEOUT: Duration = Duration::from_secs(30);

fn usage(key: &str, message: impl Into<String>) -> Failure {
    Failure::Config(ConfigError {
        key: key.into(),
        message: message.into(),
    })
}

/// Whether `addr` is `https://`, and its `host:port`.
fn authority(addr: &str) -> Result<(bool, &str), Failure> {
    let expected = || usage("--addr", "expected https://HOST:PORT or http://HOST:PORT");
    let (secure, rest) = match (addr.strip_prefix("https://"), addr.strip_prefix("http://")) {
        (Some(rest), _) => (true, rest),
        (None, Some(rest)) => (false, rest),
        (None, None) => return Err(expected()),
    };
    let host = rest.trim_end_matches('/');
    if host.is_empty() || host.contains('/') {
        return Err(expected());
    }
    // Keys, shares and tokens travel in these requests: plain HTTP only on
    // this machine.
    let name = host.rsplit_once(':').map_or(host, |(h, _)| h);
    if !secure && !tls::is_loopback_host(name) {
        return Err(usage(
            "--addr",
            "plain http:// to loopback addresses only (127.0.0.1, ::1, localhost); https:// \
             elsewhere",
        ));
    }
    Ok((secure, host))
}

/// The TLS the CLI speaks to the API with, from the environment.
fn client_tls() -> Result<tls::ClientTls, Failure> {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    let roots = match var("STRONGROOM_CA_FILE") {
        Some(f) => tls::Roots::Bundle(f.into()),
        None => tls::Roots::System,
    };
    let identity = match (var("STRONGROOM_CLIENT_CERT"), var("STRONGROOM_CLIENT_KEY")) {
        (Some(c), Some(k)) => Some(tls::Identity {
            cert_file: c.into(),
            key_file: k.into(),
        }),
        (None, None) => None,
        _ => {
            return Err(usage(
                "STRONGROOM_CLIENT_CERT",
                "set both STRONGROOM_CLIENT_CERT and STRONGROOM_CLIENT_KEY, or neither",
            ));
        }
    };
    tls::ClientTls::with_identity(&roots, identity.as_ref())
        .map_err(|e| usage("STRONGROOM_CA_FILE", e.to_string()))
}

/// Sends `out` and reads the whole answer (the server closes the
/// connection after it).
fn exchange(secure: bool, host: &str, out: &[u8]) -> Result<Vec<u8>, Failure> {
    let tcp = TcpStream::connect(host).with_context(|| format!("connecting to {host}"))?;
    tcp.set_read_timeout(Some(TIMEOUT))
        .context("setting a timeout")?;
    tcp.set_write_timeout(Some(TIMEOUT))
        .context("setting a timeout")?;
    let mut resp = Vec::new();
    if !secure {
        let mut tcp = tcp;
        tcp.write_all(out).context("sending the request")?;
        tcp.read_to_end(&mut resp).context("reading the response")?;
        return Ok(resp);
    }
    let name = host.rsplit_once(':').map_or(host, |(h, _)| h);
    let name = name.trim_start_matches('[').trim_end_matches(']');
    let server = tls::rustls::pki_types::ServerName::try_from(name.to_owned())
        .map_err(|_| usage("--addr", "not a host name or address"))?;
    let conn = tls::rustls::ClientConnection::new(client_tls()?.config(), server)
        .context("starting TLS")?;
    let mut stream = tls::rustls::StreamOwned::new(conn, tcp);
    stream.write_all(out).context("sending the request")?;
    match stream.read_to_end(&mut resp) {
        Ok(_) => {}
        // A server that closes without close_notify after a whole answer.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !resp.is_empty() => {}
        Err(e) => return Err(anyhow::Error::new(e).context("TLS with the server").into()),
    }
    Ok(resp)
}

/// One request; returns the status and the body. With a key file, the
/// request is signed.
/// The header with the first share holder's reset token.
const UNSEAL_TOKEN: &str = "X-Strongroom-Unseal-Token";

fn request(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<(u16, String), Failure> {
    signed_request(addr, method, path, body, None)
}

pub(crate) fn signed_request(
    addr: &str,
    method: &str,
    path_and_query: &str,
    body: Option<&str>,
    key: Option<&crate::apikey::KeyFile>,
) -> Result<(u16, String), Failure> {
    signed_request_with(addr, method, path_and_query, body, key, &[])
}

/// [`signed_request`] with extra headers (names and values already checked
/// to be printable ASCII without spaces).
fn signed_request_with(
    addr: &str,
    method: &str,
    path_and_query: &str,
    body: Option<&str>,
    key: Option<&crate::apikey::KeyFile>,
    headers: &[(&str, &str)],
) -> Result<(u16, String), Failure> {
    let (secure, host) = authority(addr)?;
    let path = path_and_query;
    let body = body.unwrap_or("");
    let mut extra = String::new();
    for (name, value) in headers {
        extra.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(k) = key {
        let (p, q) = path.split_once('?').unwrap_or((path, ""));
        let idempotency_key = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(api_http::IDEMPOTENCY_HEADER))
            .map(|(_, v)| *v);
        for (name, value) in k.headers(method, p, q, body.as_bytes(), idempotency_key)? {
            extra.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n{extra}\r\n",
        body.len()
    );
    let mut out = Zeroizing::new(head.into_bytes());
    out.extend_from_slice(body.as_bytes());
    let resp = String::from_utf8(exchange(secure, host, &out)?)
        .map_err(|_| Failure::Runtime(anyhow::anyhow!("not an HTTP response from {addr}")))?;
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((resp.as_str(), ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Failure::Runtime(anyhow::anyhow!("not an HTTP response from {addr}")))?;
    Ok((status, body.to_owned()))
}

fn show(status: u16, body: &str) -> Result<(), Failure> {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or(serde_json::Value::Null);
    if !(200..300).contains(&status) {
        let code = v["code"].as_str().unwrap_or("error");
        let message = v["message"].as_str().unwrap_or(body);
        return Err(Failure::Runtime(anyhow::anyhow!("{code}: {message}")));
    }
    match v["state"].as_str() {
        Some("sealed") => println!("sealed ({}/{} shares)", v["progress"], v["threshold"]),
        Some(state) => println!("{state}"),
        None => println!("ok"),
    }
    Ok(())
}

pub(crate) fn unseal(
    addr: &str,
    reset: bool,
    token: Option<&str>,
    key_file: Option<&std::path::Path>,
) -> Result<(), Failure> {
    if reset {
        const PATH: &str = "/v1/sys/unseal/reset";
        let (s, b) = match (key_file, token) {
            (Some(f), _) => {
                let key = crate::apikey::KeyFile::load(f)?;
                signed_request(addr, "POST", PATH, None, Some(&key))?
            }
            (None, Some(t)) => {
                if !t.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(usage("--token", "the reset token is hex"));
                }
                signed_request_with(addr, "POST", PATH, None, None, &[(UNSEAL_TOKEN, t)])?
            }
            (None, None) => {
                return Err(usage(
                    "--reset",
                    "give --token (printed with the first share) or --key-file",
                ));
            }
        };
        return show(s, &b);
    }
    let mut line = Zeroizing::new(String::new());
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the share from standard input")?;
    if line.trim().is_empty() {
        return Err(usage("share", "no share on standard input"));
    }
    let share = line.trim();
    // A share is `srshare1-` and hex: nothing to escape, no JSON value to copy it into.
    if !share
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(usage("share", "not an unseal share"));
    }
    let body = Zeroizing::new(format!("{{\"share\":\"{share}\"}}"));
    let (s, b) = request(addr, "POST", "/v1/sys/unseal", Some(&body))?;
    if let Some(t) = serde_json::from_str::<serde_json::Value>(&b)
        .ok()
        .and_then(|v| v["reset_token"].as_str().map(str::to_owned))
    {
        // To the first share's holder only (standard error): with it they
        // may start the round over (`--reset --token`).
        eprintln!("reset token (to start this round over): {t}");
    }
    show(s, &b)
}

/// Seals a running server, as the holder of an API key with the right to.
pub(crate) fn seal(addr: &str, key_file: &std::path::Path) -> Result<(), Failure> {
    let key = crate::apikey::KeyFile::load(key_file)?;
    let (s, b) = signed_request(addr, "POST", "/v1/sys/seal", None, Some(&key))?;
    if s == 204 {
        println!("sealed");
        return Ok(());
    }
    show(s, &b)
}

pub(crate) fn status(addr: &str) -> Result<(), Failure> {
    let (s, b) = request(addr, "GET", "/v1/sys/seal-status", None)?;
    show(s, &b)
}

/// `strongroom api`: one signed request; prints the status and the body.
pub(crate) fn api(
    addr: &str,
    key_file: &std::path::Path,
    method: &str,
    path: &str,
    body: Option<&str>,
    idempotency_key: Option<&str>,
) -> Result<(), Failure> {
    let key = crate::apikey::KeyFile::load(key_file)?;
    let mut headers = Vec::new();
    if let Some(k) = idempotency_key {
        if k.is_empty() || k.len() > 255 || !k.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(usage(
                "--idempotency-key",
                "1 to 255 printable ASCII characters, no spaces",
            ));
        }
        headers.push(("Idempotency-Key", k));
    }
    let method = method.to_ascii_uppercase();
    if !matches!(method.as_str(), "GET" | "POST" | "PUT" | "PATCH" | "DELETE") {
        return Err(usage("METHOD", "GET, POST, PUT, PATCH or DELETE"));
    }
    if !path.starts_with('/') {
        return Err(usage("PATH", "an absolute path such as /v1/me"));
    }
    let (s, b) = signed_request_with(addr, &method, path, body, Some(&key), &headers)?;
    println!("{s}");
    println!("{b}");
    if (200..300).contains(&s) {
        Ok(())
    } else {
        Err(Failure::Runtime(anyhow::anyhow!("HTTP {s}")))
    }
}
