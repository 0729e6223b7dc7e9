//! The engines of the fleet tests (rsyslogd, the CrowdSec Local API with
//! cscli), started on free loopback ports with private configurations in
//! temporary folders and stopped (by their own PID) when dropped; shared by
//! portcullis-fleet's engine tests and the binary's. `scripts/install-test-deps`
//! installs them.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::free_port;

/// Longest wait for anything an engine does (start, receive, poll).
pub const LIMIT: Duration = Duration::from_secs(30);

/// A UDP port that was free a moment ago on loopback.
pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Fails unless `tool` is on the PATH (or in /usr/sbin).
pub fn need(tool: &str) -> Result<()> {
    let found = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p).chain([PathBuf::from("/usr/sbin")]).any(|d| d.join(tool).is_file())
        })
        .unwrap_or(false);
    if !found {
        bail!("{tool} is not installed: run scripts/install-test-deps");
    }
    Ok(())
}

/// A child process killed (by its own PID) when dropped.
pub struct Engine {
    /// The process.
    pub child: Child,
    /// Where its output goes.
    pub log: PathBuf,
}

impl Engine {
    /// Starts `cmd` with its output in `log`.
    pub fn spawn(cmd: &mut Command, log: PathBuf) -> Result<Self> {
        let out = std::fs::File::create(&log)?;
        let child =
            cmd.stdout(out.try_clone()?).stderr(out).stdin(Stdio::null()).spawn().context("spawn engine")?;
        Ok(Self { child, log })
    }

    /// Stops it (kill by its PID, then wait).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// What it wrote so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.stop();
    }
}

/// rsyslogd writing what it receives to `dir/received.log`, one line per
/// message: input, PRI, MSGID, structured data, MSG.
pub struct Rsyslog {
    /// The process.
    pub engine: Engine,
    /// Its folder.
    pub dir: PathBuf,
    conf: PathBuf,
}

impl Rsyslog {
    /// rsyslogd in `dir` with `inputs` (and `globals`), its inputs open.
    pub fn start(dir: &Path, inputs: &str, globals: &str) -> Result<Self> {
        need("rsyslogd")?;
        let conf = dir.join("rsyslog.conf");
        let work = dir.join("work");
        std::fs::create_dir_all(&work)?;
        std::fs::write(
            &conf,
            format!(
                "global(workDirectory=\"{work}\" {globals})\n\
                 template(name=\"line\" type=\"string\" string=\"%inputname% %pri% %msgid% %structured-data% %msg%\\n\")\n\
                 {inputs}\n\
                 *.* action(type=\"omfile\" file=\"{out}\" template=\"line\")\n",
                work = work.display(),
                out = dir.join("received.log").display()
            ),
        )?;
        let mut r = Self { engine: Self::spawn(dir, &conf)?, dir: dir.to_path_buf(), conf };
        r.wait_listening()?;
        Ok(r)
    }

    /// Starts rsyslogd with `conf`.
    pub fn spawn(dir: &Path, conf: &Path) -> Result<Engine> {
        let pid = dir.join("rsyslogd.pid");
        let _ = std::fs::remove_file(&pid);
        Engine::spawn(
            Command::new("rsyslogd").arg("-n").arg("-f").arg(conf).arg("-i").arg(&pid),
            dir.join(format!(
                "rsyslogd-{}.log",
                std::time::SystemTime::now().elapsed().map(|d| d.as_nanos()).unwrap_or(0)
            )),
        )
    }

    /// Waits for the pid file: rsyslogd writes it once its inputs are open.
    pub fn wait_listening(&mut self) -> Result<()> {
        let pid = self.dir.join("rsyslogd.pid");
        let deadline = std::time::Instant::now() + LIMIT;
        while !pid.exists() {
            if let Ok(Some(status)) = self.engine.child.try_wait() {
                bail!("rsyslogd exited ({status}): {}", self.engine.log());
            }
            if std::time::Instant::now() > deadline {
                bail!("rsyslogd did not start: {}", self.engine.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Stops it (kill by its PID, then wait).
    pub fn stop(&mut self) {
        self.engine.stop();
    }

    /// Starts it again with the same configuration, inputs open.
    pub fn restart(&mut self) -> Result<()> {
        self.engine = Self::spawn(&self.dir, &self.conf)?;
        self.wait_listening()
    }

    /// The lines received so far.
    pub fn received(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.join("received.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

/// rsyslog inputs for UDP and TCP on loopback ports.
pub fn udp_tcp_inputs(udp: u16, tcp: u16) -> String {
    format!(
        "module(load=\"imudp\")\nmodule(load=\"imtcp\")\n\
         input(type=\"imudp\" address=\"127.0.0.1\" port=\"{udp}\")\n\
         input(type=\"imtcp\" address=\"127.0.0.1\" port=\"{tcp}\")"
    )
}

/// A CrowdSec LAPI alone (`crowdsec -no-cs`) with sqlite in `dir`.
pub struct Lapi {
    /// The process.
    pub engine: Engine,
    /// Its folder.
    pub dir: PathBuf,
    /// Its loopback port.
    pub port: u16,
}

impl Lapi {
    /// A LAPI over HTTP in `dir`, ready, with a cscli login.
    pub fn start(dir: &Path) -> Result<Self> {
        Self::start_with(dir, false)
    }

    /// With `tls`, the LAPI serves HTTPS with `dir`'s cert.pem and key.pem.
    pub fn start_with(dir: &Path, tls: bool) -> Result<Self> {
        need("crowdsec")?;
        need("cscli")?;
        let port = free_port();
        for sub in ["data", "hub", "notifications"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        std::fs::copy("/etc/crowdsec/profiles.yaml", dir.join("profiles.yaml"))
            .context("crowdsec's profiles.yaml")?;
        std::fs::write(dir.join("simulation.yaml"), "simulation: false\n")?;
        let d = dir.display();
        std::fs::write(
            dir.join("config.yaml"),
            format!(
                "common:\n  daemonize: false\n  log_media: stdout\n  log_level: info\n  working_dir: .\n\
                 config_paths:\n  config_dir: {d}/\n  data_dir: {d}/data/\n  simulation_path: {d}/simulation.yaml\n  \
                 hub_dir: {d}/hub/\n  index_path: {d}/hub/.index.json\n  notification_dir: {d}/notifications/\n  \
                 plugin_dir: /usr/lib/crowdsec/plugins/\n\
                 cscli:\n  output: human\n\
                 db_config:\n  type: sqlite\n  db_path: {d}/data/crowdsec.db\n  use_wal: false\n  flush:\n    max_items: 5000\n    max_age: 7d\n\
                 api:\n  client:\n    insecure_skip_verify: false\n    credentials_path: {d}/local_api_credentials.yaml\n  \
                 server:\n    log_level: info\n    listen_uri: 127.0.0.1:{port}\n    profiles_path: {d}/profiles.yaml\n    \
                 trusted_ips:\n      - 127.0.0.1\n      - ::1\n{tls}\
                 prometheus:\n  enabled: false\n",
                tls = if tls {
                    format!("    tls:\n      cert_file: {d}/cert.pem\n      key_file: {d}/key.pem\n")
                } else {
                    String::new()
                }
            ),
        )?;
        let engine = Self::spawn(dir)?;
        let lapi = Self { engine, dir: dir.to_path_buf(), port };
        lapi.wait_ready()?;
        // cscli's own login, for `cscli decisions add`.
        lapi.cscli(&["machines", "add", "cli", "--auto", "-f", &format!("{d}/local_api_credentials.yaml")])?;
        Ok(lapi)
    }

    /// Starts `crowdsec -no-cs` on `dir`'s configuration.
    pub fn spawn(dir: &Path) -> Result<Engine> {
        Engine::spawn(
            Command::new("crowdsec").arg("-c").arg(dir.join("config.yaml")).arg("-no-cs").current_dir(dir),
            dir.join("crowdsec.log"),
        )
    }

    /// Waits until its port accepts connections.
    pub fn wait_ready(&self) -> Result<()> {
        let deadline = std::time::Instant::now() + LIMIT;
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if std::fs::read_to_string(&self.engine.log).unwrap_or_default().contains("level=fatal") {
                bail!("the LAPI failed: {}", self.engine.log());
            }
            if std::time::Instant::now() > deadline {
                bail!("the LAPI did not start: {}", self.engine.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Runs cscli on its configuration; stdout.
    pub fn cscli(&self, args: &[&str]) -> Result<String> {
        let out = Command::new("cscli").arg("-c").arg(self.dir.join("config.yaml")).args(args).output()?;
        if !out.status.success() {
            bail!("cscli {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Adds a bouncer `name`; its key.
    pub fn bouncer_key(&self, name: &str) -> Result<String> {
        self.cscli(&["bouncers", "add", name, "-o", "raw"])
    }
}
