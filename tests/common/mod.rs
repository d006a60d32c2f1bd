//! Test fixture: runs the real `beacon` binary on 127.0.0.1:0 and talks HTTP to it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The address in beacon's first line: `beacon listening on http://ADDR`, or the same words in a
/// JSON object's message.
pub fn listen_addr(line: &str) -> String {
    line.split("http://")
        .nth(1)
        .and_then(|rest| {
            rest.split(|c: char| c.is_whitespace() || c == '"' || c == ',')
                .next()
        })
        .unwrap_or_else(|| panic!("no listen line from beacon: {line:?}"))
        .to_string()
}

pub struct Beacon {
    child: Option<Child>,
    pub addr: SocketAddr,
    /// The line `serve` printed when it listened.
    pub ready_line: String,
    pub data_dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    pub agent: ureq::Agent,
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_beacon")
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

impl Beacon {
    /// Starts `beacon serve` with `args` (plus listen and data dir) and `env`.
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> Beacon {
        let tmp = tempfile::tempdir().unwrap();
        let data_dir = tmp.path().join("data");
        let mut b = Self::start_in(&data_dir, args, env);
        b._tmp = Some(tmp);
        b
    }

    /// Like `start`, writing into an existing data directory.
    pub fn start_in(data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Beacon {
        Self::start_logging(data_dir, args, env, None)
    }

    /// Like `start_in`, with the server's standard error written to `log` (else the test's).
    pub fn start_logging(
        data_dir: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        log: Option<&Path>,
    ) -> Beacon {
        let mut cmd = Command::new(bin());
        cmd.arg("serve")
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(match log {
                Some(path) => Stdio::from(std::fs::File::create(path).unwrap()),
                None => Stdio::inherit(),
            });
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("beacon binary runs");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let addr = listen_addr(&line).parse().unwrap();
        Beacon {
            child: Some(child),
            addr,
            ready_line: line.trim().to_string(),
            data_dir: data_dir.to_path_buf(),
            _tmp: None,
            agent: agent(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// GET `path`: (status, headers, body).
    pub fn get(
        &self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (u16, ureq::http::HeaderMap, String) {
        let mut req = self.agent.get(&self.url(path));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let mut resp = req.call().unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = String::from_utf8_lossy(&resp.body_mut().read_to_vec().unwrap()).into_owned();
        (status, headers, body)
    }

    /// The value of one metric line, e.g. `beacon_events_accepted_total{shard="0"}`; 0 if absent.
    pub fn metric(&self, series: &str) -> f64 {
        let (_, _, text) = self.get("/metrics", &[]);
        text.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
            .unwrap_or(0.0)
    }

    /// Sends raw bytes on a fresh connection and returns what the server answered until it
    /// closed the connection or 2 s passed.
    pub fn raw(&self, bytes: &[u8]) -> String {
        let mut s = TcpStream::connect(self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        s.write_all(bytes).unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    /// SIGTERM, then wait for the exit status (at most 30 s).
    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn terminate(&mut self) -> ExitStatus {
        let child = self.child.as_mut().unwrap();
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "beacon did not stop within 30 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `beacon tail` on this server's data directory, parsed.
    pub fn tail(&self) -> Vec<serde_json::Value> {
        tail(&self.data_dir)
    }
}

/// Sends `/event` requests from `clients` threads until `stop`, returning the message ids of
/// every 200 (requests cut by a crash count as unanswered).
pub fn hammer(url: &str, clients: usize, stop: &std::sync::atomic::AtomicBool) -> Vec<String> {
    use std::sync::atomic::Ordering;
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..clients)
            .map(|c| {
                s.spawn(move || {
                    let agent = agent();
                    let mut ids = Vec::new();
                    let mut i = c;
                    while !stop.load(Ordering::Relaxed) {
                        i += clients;
                        let Ok(mut resp) = agent
                            .get(&format!("{url}/event/{}", 1_000_000 + i % 1000))
                            .call()
                        else {
                            continue;
                        };
                        if resp.status() != 200 {
                            continue;
                        }
                        let Ok(body) = resp.body_mut().read_to_string() else {
                            continue;
                        };
                        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
                        ids.push(v["messageId"].as_str().unwrap().to_string());
                    }
                    ids
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    })
}

/// Loads `b` with 16 `/event` clients and `kill -9`s it 1.5 s in, while requests are in
/// flight (no flush, no goodbye); the message ids answered 200 before it died.
pub fn answered_until_kill_9(b: &Beacon) -> Vec<String> {
    let stop = std::sync::atomic::AtomicBool::new(false);
    let url = b.url("");
    let ids = std::thread::scope(|s| {
        let load = s.spawn(|| hammer(&url, 16, &stop));
        std::thread::sleep(Duration::from_millis(1500));
        // SAFETY: signalling our own child.
        unsafe { libc::kill(b.pid() as i32, libc::SIGKILL) };
        std::thread::sleep(Duration::from_millis(100));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        load.join().unwrap()
    });
    assert!(
        ids.len() > 100,
        "only {} answers before the kill",
        ids.len()
    );
    ids
}

pub fn tail(dir: &Path) -> Vec<serde_json::Value> {
    let out = Command::new(bin()).arg("tail").arg(dir).output().unwrap();
    assert!(
        out.status.success(),
        "tail failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "tail reported problems: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

impl Drop for Beacon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A size-limited filesystem (tmpfs) mounted for one test; unmounted when dropped.
pub struct SmallDisk(pub std::path::PathBuf);

impl SmallDisk {
    pub fn mount(at: &std::path::Path, size: &str) -> SmallDisk {
        std::fs::create_dir_all(at).unwrap();
        run_mount(&["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"], at);
        SmallDisk(at.to_path_buf())
    }

    pub fn grow(&self, size: &str) {
        run_mount(&["-o", &format!("remount,size={size}")], &self.0);
    }
}

/// `mount ARGS AT`, which must succeed.
pub fn run_mount(args: &[&str], at: &std::path::Path) {
    let out = std::process::Command::new("mount")
        .args(args)
        .arg(at)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "mount {args:?} {} failed (the disk-full test needs root, as scripts/test has): {}",
        at.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}
