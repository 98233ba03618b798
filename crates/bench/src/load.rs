//! A keep-alive HTTP/1.1 load generator and summaries.

use std::fmt;
use std::time::{Duration, Instant};

use anyhow::Context;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// What to send.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// `http://host:port`.
    pub addr: String,
    /// Method.
    pub method: hyper::Method,
    /// Request paths, rotated.
    pub paths: Vec<String>,
    /// Content type of the bodies.
    pub content_type: String,
    /// Bearer token (empty: no `Authorization` header).
    pub bearer: String,
    /// Bodies, rotated (empty: no body).
    pub bodies: Vec<String>,
    /// Rotate bodies once per pass over `paths` rather than per request:
    /// every path gets bodies[0], then every path bodies[1], and so on (a
    /// PATCH that alternates a value is then a real change every time).
    pub body_per_pass: bool,
    /// Concurrent keep-alive connections.
    pub connections: usize,
    /// Unrecorded lead-in.
    pub warmup: Duration,
    /// Recorded time.
    pub duration: Duration,
}

/// Throughput and latency of one run.
#[derive(Debug, Clone)]
pub struct Stats {
    pub count: usize,
    pub rps: f64,
    pub p50: Duration,
    pub p99: Duration,
    pub errors: usize,
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:>9.0} req/s  (p50 {:.3} ms, p99 {:.3} ms, {} requests, {} errors)",
            self.rps,
            self.p50.as_secs_f64() * 1e3,
            self.p99.as_secs_f64() * 1e3,
            self.count,
            self.errors
        )
    }
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// p50/p99/mean/max of a set of timings.
pub fn summary(samples: &mut [Duration]) -> String {
    samples.sort();
    let mean = samples.iter().sum::<Duration>().as_secs_f64() / samples.len().max(1) as f64;
    format!(
        "p50 {:.2} ms, p99 {:.2} ms, mean {:.2} ms, max {:.2} ms (n={})",
        percentile(samples, 0.50).as_secs_f64() * 1e3,
        percentile(samples, 0.99).as_secs_f64() * 1e3,
        mean * 1e3,
        samples.last().map_or(0.0, |d| d.as_secs_f64() * 1e3),
        samples.len()
    )
}

/// p50/p99 (bucket upper bounds) and mean of the propagation histogram.
pub fn histogram(metrics: &str) -> anyhow::Result<String> {
    let name = "lockstep_revocation_propagation_seconds";
    let mut buckets = Vec::new();
    let mut sum = 0.0;
    let mut count = 0.0;
    for line in metrics.lines() {
        if let Some(rest) = line.strip_prefix(&format!("{name}_bucket{{le=\"")) {
            let (le, n) = rest.split_once("\"} ").context("bucket line")?;
            let le = if le == "+Inf" { f64::INFINITY } else { le.parse()? };
            buckets.push((le, n.trim().parse::<f64>()?));
        } else if let Some(v) = line.strip_prefix(&format!("{name}_sum ")) {
            sum = v.trim().parse()?;
        } else if let Some(v) = line.strip_prefix(&format!("{name}_count ")) {
            count = v.trim().parse()?;
        }
    }
    let quantile = |q: f64| buckets.iter().find(|(_, n)| *n >= q * count).map_or(f64::NAN, |(le, _)| *le);
    Ok(format!(
        "mean {:.3} ms, p50 <= {:.3} ms, p99 <= {:.3} ms (n={count}; quantiles are histogram bucket bounds)",
        sum / count.max(1.0) * 1e3,
        quantile(0.5) * 1e3,
        quantile(0.99) * 1e3
    ))
}

pub(crate) async fn connect(
    host: &str,
) -> anyhow::Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(host).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

/// What every connection sends, converted once and shared: cloning the
/// spec's strings per connection (200,000 create bodies x 64 connections)
/// cost the load generator more than the server it measured, and a body
/// copied per request is an allocation the server does not see.
struct Prepared {
    host: String,
    method: hyper::Method,
    paths: Vec<hyper::Uri>,
    bodies: Vec<Bytes>,
    body_per_pass: bool,
    connections: usize,
    headers: hyper::HeaderMap,
}

impl Prepared {
    fn new(spec: &LoadSpec) -> anyhow::Result<Self> {
        use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue};
        let host = spec.addr.trim_start_matches("http://").to_owned();
        let mut headers = hyper::HeaderMap::new();
        headers.insert(HOST, HeaderValue::from_str(&host)?);
        headers.insert(CONTENT_TYPE, HeaderValue::from_str(&spec.content_type)?);
        if !spec.bearer.is_empty() {
            headers.insert(AUTHORIZATION, HeaderValue::from_str(&format!("Bearer {}", spec.bearer))?);
        }
        let paths = spec.paths.iter().map(|p| p.parse()).collect::<Result<Vec<hyper::Uri>, _>>()?;
        anyhow::ensure!(!paths.is_empty(), "a load needs at least one path");
        Ok(Self {
            host,
            method: spec.method.clone(),
            paths,
            bodies: spec.bodies.iter().map(|b| Bytes::from(b.clone())).collect(),
            body_per_pass: spec.body_per_pass,
            connections: spec.connections,
            headers,
        })
    }

    /// Request `i` (the same `i` always yields the same path and body).
    fn request(&self, i: usize) -> anyhow::Result<Request<Full<Bytes>>> {
        let body = if self.bodies.is_empty() {
            Bytes::new()
        } else if self.body_per_pass {
            self.bodies[(i / self.paths.len()) % self.bodies.len()].clone()
        } else {
            self.bodies[i % self.bodies.len()].clone()
        };
        let mut req = Request::builder()
            .method(self.method.clone())
            .uri(self.paths[i % self.paths.len()].clone())
            .body(Full::new(body))?;
        *req.headers_mut() = self.headers.clone();
        Ok(req)
    }
}

/// Runs the load and returns its statistics.
pub async fn run_load(spec: LoadSpec) -> anyhow::Result<Stats> {
    let prepared = std::sync::Arc::new(Prepared::new(&spec)?);
    let start = Instant::now();
    let record_from = start + spec.warmup;
    let stop = record_from + spec.duration;
    let mut tasks = Vec::new();
    for c in 0..spec.connections {
        let load = prepared.clone();
        tasks.push(tokio::spawn(async move {
            let mut sender = connect(&load.host).await?;
            let mut latencies = Vec::with_capacity(200_000);
            let mut errors = 0usize;
            let mut i = c;
            loop {
                let now = Instant::now();
                if now >= stop {
                    break;
                }
                let req = load.request(i)?;
                // Stride by the connection count: no two connections ever
                // send the same (path, body) pair.
                i += load.connections;
                if sender.ready().await.is_err() {
                    // The server closed the connection (no keep-alive): reconnect.
                    sender = connect(&load.host).await?;
                }
                let sent = Instant::now();
                let resp = match sender.send_request(req).await {
                    Ok(resp) => resp,
                    Err(_) => {
                        sender = connect(&load.host).await?;
                        continue;
                    }
                };
                let ok = resp.status().is_success();
                resp.into_body().collect().await?;
                let done = Instant::now();
                if sent >= record_from && done <= stop {
                    latencies.push(done - sent);
                    if !ok {
                        errors += 1;
                    }
                }
            }
            anyhow::Ok((latencies, errors))
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await??;
        all.extend(l);
        errors += e;
    }
    all.sort();
    Ok(Stats {
        count: all.len(),
        rps: all.len() as f64 / spec.duration.as_secs_f64(),
        p50: percentile(&all, 0.5),
        p99: percentile(&all, 0.99),
        errors,
    })
}
