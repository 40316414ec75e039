//! An open-loop HTTP/1.1 load generator, for latency at a fixed request rate
//! (`benches/redirect.sh` runs it; `cargo bench` alone runs nothing here).
//!
//! Why not oha or wrk: on a 2-core machine the client gets one core, and there oha's
//! rate limiter (a tokio timer, millisecond ticks) sends requests in bursts and falls
//! behind at tens of thousands of requests per second, so its latency correction
//! counts its own delay; wrk is closed-loop and cannot hold a rate at all. This one
//! is a single thread that spins on the clock (it owns its core) and sends request
//! `k` at `start + k / rate` on any idle keep-alive connection, so it holds the rate
//! to the microsecond. Latency is measured from when a request was *due*, not when it
//! was sent, so a server that stalls is charged for every request that waited behind
//! it (no coordinated omission). The run also reports how late sends were, so a
//! client that could not keep up is visible rather than blamed on the server.
//!
//! ```text
//! cargo bench --bench openloop -- --url http://127.0.0.1:8080/v2/ --rate 40000 \
//!     [--duration 10] [--warmup 2] [--connections 32] [--expect 307]
//! ```
//! Prints one JSON object: target and achieved rate, counts, and latency percentiles
//! in microseconds (`latency_*` from the due time, `service_*` from the actual send).

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

struct Args {
    addr: SocketAddr,
    host: String,
    path: String,
    rate: f64,
    duration: Duration,
    warmup: Duration,
    connections: usize,
    expect: u16,
}

fn parse_args() -> Result<Option<Args>, String> {
    let mut url = None;
    let (mut rate, mut duration, mut warmup, mut connections, mut expect) =
        (None, 10.0, 2.0, 32usize, 307u16);
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--url" => url = Some(value()?),
            "--rate" => rate = Some(number(&arg, &value()?)?),
            "--duration" => duration = number(&arg, &value()?)?,
            "--warmup" => warmup = number(&arg, &value()?)?,
            "--connections" => connections = number(&arg, &value()?)? as usize,
            "--expect" => expect = number(&arg, &value()?)? as u16,
            // `cargo bench` passes --bench to every harness-less target.
            "--bench" => {}
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let Some(url) = url else { return Ok(None) };
    let rate = rate.ok_or("--rate is required with --url")?;
    if !(rate > 0.0 && duration > 0.0 && warmup >= 0.0 && connections > 0) {
        return Err("--rate, --duration and --connections must be positive".into());
    }
    let rest = url
        .strip_prefix("http://")
        .ok_or("--url must start with http://")?;
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let addr = host
        .to_socket_addrs()
        .map_err(|e| format!("--url host {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("--url host {host} has no address"))?;
    Ok(Some(Args {
        addr,
        host: host.to_string(),
        path: if path.is_empty() { "/" } else { path }.to_string(),
        rate,
        duration: Duration::from_secs_f64(duration),
        warmup: Duration::from_secs_f64(warmup),
        connections,
        expect,
    }))
}

fn number(flag: &str, text: &str) -> Result<f64, String> {
    text.parse::<f64>()
        .ok()
        .filter(|n| n.is_finite())
        .ok_or_else(|| format!("{flag}: {text:?} is not a number"))
}

/// One keep-alive connection with at most one request outstanding.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    /// (due, sent) of the outstanding request.
    pending: Option<(Instant, Instant)>,
}

enum Parsed {
    Incomplete,
    /// A whole response of this many bytes with this status; `close` when the
    /// server said it will close the connection after it.
    Done {
        len: usize,
        status: u16,
        close: bool,
    },
    Bad(String),
}

/// Whether `buf` starts with a whole HTTP/1.1 response (Content-Length framed).
fn parse(buf: &[u8]) -> Parsed {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Parsed::Incomplete;
    };
    let Ok(head) = std::str::from_utf8(&buf[..end]) else {
        return Parsed::Bad("response head is not UTF-8".into());
    };
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse::<u16>().ok());
    let Some(status) = status else {
        return Parsed::Bad(format!("bad status line in {head:?}"));
    };
    let mut length = None;
    let mut close = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if name.eq_ignore_ascii_case("transfer-encoding") {
            return Parsed::Bad("chunked responses are not supported".into());
        }
        if name.eq_ignore_ascii_case("content-length") {
            length = value.trim().parse::<usize>().ok();
        }
        if name.eq_ignore_ascii_case("connection") && value.trim().eq_ignore_ascii_case("close") {
            close = true;
        }
    }
    let Some(length) = length else {
        return Parsed::Bad(format!("no Content-Length in {head:?}"));
    };
    let len = end + 4 + length;
    if buf.len() < len {
        Parsed::Incomplete
    } else {
        Parsed::Done { len, status, close }
    }
}

struct Stats {
    latency: Histogram<u64>,
    service: Histogram<u64>,
    lag: Histogram<u64>,
    /// Time between turns of the client's own loop: long ones mean the client was
    /// not running (preempted, or the machine paused), not that the server was slow.
    stalls: Histogram<u64>,
    completed: u64,
    errors: u64,
    unexpected: u64,
}

impl Stats {
    fn new() -> Result<Self, String> {
        let h = || Histogram::new_with_bounds(1, 120_000_000_000, 3).map_err(|e| e.to_string());
        Ok(Self {
            latency: h()?,
            service: h()?,
            lag: h()?,
            stalls: h()?,
            completed: 0,
            errors: 0,
            unexpected: 0,
        })
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn connect(poll: &Poll, addr: SocketAddr, token: usize) -> Result<Conn, String> {
    // Connect blocking, then hand the socket to mio: a run starts with every
    // connection open, so no request waits on a handshake.
    let std = std::net::TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    std.set_nodelay(true).map_err(|e| e.to_string())?;
    std.set_nonblocking(true).map_err(|e| e.to_string())?;
    let mut stream = TcpStream::from_std(std);
    poll.registry()
        .register(&mut stream, Token(token), Interest::READABLE)
        .map_err(|e| e.to_string())?;
    Ok(Conn {
        stream,
        buf: Vec::with_capacity(4096),
        pending: None,
    })
}

fn run(args: &Args) -> Result<String, String> {
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: ferry-openloop\r\n\r\n",
        args.path, args.host
    );
    let mut poll = Poll::new().map_err(|e| e.to_string())?;
    let mut events = Events::with_capacity(1024);
    let mut conns = (0..args.connections)
        .map(|i| connect(&poll, args.addr, i))
        .collect::<Result<Vec<_>, _>>()?;
    let mut idle: VecDeque<usize> = (0..conns.len()).collect();
    let mut stats = Stats::new()?;

    let interval = 1.0 / args.rate;
    let start = Instant::now() + Duration::from_millis(10);
    let measure_from = start + args.warmup;
    let stop = measure_from + args.duration;
    let total = ((args.warmup + args.duration).as_secs_f64() * args.rate) as u64;
    let due = |k: u64| start + Duration::from_secs_f64(k as f64 * interval);
    let mut next = 0u64;
    let mut measured_sent = 0u64;
    // Stop waiting for stragglers this long after the last request was due.
    let drain_deadline = stop + Duration::from_secs(5);

    let mut last_turn = Instant::now();
    loop {
        let now = Instant::now();
        if now >= measure_from && now < stop {
            stats.stalls.saturating_record(nanos(now - last_turn));
        }
        last_turn = now;
        while next < total {
            let when = due(next);
            if when > now {
                break;
            }
            let Some(c) = idle.pop_front() else { break };
            let conn = &mut conns[c];
            let mut written = 0;
            while written < request.len() {
                match conn.stream.write(&request.as_bytes()[written..]) {
                    Ok(n) => written += n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => std::hint::spin_loop(),
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => return Err(format!("write: {e}")),
                }
            }
            let sent = Instant::now();
            conn.pending = Some((when, sent));
            if when >= measure_from {
                stats.lag.saturating_record(nanos(sent - when));
                measured_sent += 1;
            }
            next += 1;
        }
        if next >= total && idle.len() == conns.len() {
            break;
        }
        if now > drain_deadline {
            stats.errors += (conns.len() - idle.len()) as u64;
            break;
        }
        poll.poll(&mut events, Some(Duration::ZERO))
            .map_err(|e| format!("poll: {e}"))?;
        for event in events.iter() {
            let c = event.token().0;
            let mut closed = false;
            let mut chunk = [0u8; 8192];
            loop {
                match conns[c].stream.read(&mut chunk) {
                    Ok(0) => {
                        closed = true;
                        break;
                    }
                    Ok(n) => conns[c].buf.extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => {
                        closed = true;
                        break;
                    }
                }
            }
            let done = Instant::now();
            match parse(&conns[c].buf) {
                Parsed::Incomplete => {}
                Parsed::Done { len, status, close } => {
                    conns[c].buf.drain(..len);
                    if let Some((when, sent)) = conns[c].pending.take() {
                        if when >= measure_from {
                            stats.completed += 1;
                            stats.latency.saturating_record(nanos(done - when));
                            stats.service.saturating_record(nanos(done - sent));
                            if status != args.expect {
                                stats.unexpected += 1;
                            }
                        }
                    }
                    if close {
                        closed = true;
                    } else if !closed {
                        idle.push_back(c);
                    }
                }
                Parsed::Bad(why) => return Err(why),
            }
            if closed {
                // The server closed the connection (or said it would): count what was
                // outstanding and open a new one in its place.
                if conns[c].pending.take().is_some() {
                    stats.errors += 1;
                }
                let _ = poll.registry().deregister(&mut conns[c].stream);
                conns[c] = connect(&poll, args.addr, c)?;
                idle.retain(|&i| i != c);
                idle.push_back(c);
            }
        }
    }

    let elapsed = args.duration.as_secs_f64();
    let us = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    Ok(format!(
        concat!(
            "{{\"target_rate\": {:.0}, \"achieved_rate\": {:.0}, \"sent\": {}, \"completed\": {}, ",
            "\"errors\": {}, \"unexpected_status\": {}, ",
            "\"latency_p50_us\": {:.1}, \"latency_p90_us\": {:.1}, \"latency_p99_us\": {:.1}, ",
            "\"latency_p999_us\": {:.1}, \"latency_max_us\": {:.1}, ",
            "\"service_p50_us\": {:.1}, \"service_p99_us\": {:.1}, ",
            "\"send_lag_p99_us\": {:.1}, \"send_lag_max_us\": {:.1}, ",
            "\"client_stalls_over_100us\": {}, \"client_stall_max_us\": {:.1}}}"
        ),
        args.rate,
        stats.completed as f64 / elapsed,
        measured_sent,
        stats.completed,
        stats.errors,
        stats.unexpected,
        us(&stats.latency, 0.5),
        us(&stats.latency, 0.9),
        us(&stats.latency, 0.99),
        us(&stats.latency, 0.999),
        stats.latency.max() as f64 / 1000.0,
        us(&stats.service, 0.5),
        us(&stats.service, 0.99),
        us(&stats.lag, 0.99),
        stats.lag.max() as f64 / 1000.0,
        stats.stalls.count_between(100_000, u64::MAX),
        stats.stalls.max() as f64 / 1000.0,
    ))
}

fn main() -> ExitCode {
    match parse_args() {
        Ok(None) => {
            eprintln!("openloop: nothing to do without --url (see benches/redirect.sh)");
            ExitCode::SUCCESS
        }
        Ok(Some(args)) => match run(&args) {
            Ok(json) => {
                println!("{json}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("openloop: {e}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("openloop: {e}");
            ExitCode::from(2)
        }
    }
}
