//! Test helpers: the real `portcullis` binary on free loopback ports with a
//! temporary data folder, waited for by polling (never by sleeping).

pub mod engines;

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// Password of the `admin` account of every test server.
pub const ADMIN_PASSWORD: &str = "test-admin-password";

/// A port that was free a moment ago on loopback, and not handed out before
/// in this process: the kernel may give the same free port to two binds in a
/// row, and a test that asks for two ports (HTTP and HTTPS), or two tests
/// running at once, would then start a server on one port twice.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
        let port = l.local_addr().expect("local addr").port();
        drop(l);
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// Polls `cond` every 10 ms until it holds or `limit` passes.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// How to start a [`TestServer`].
#[derive(Debug, Clone)]
pub struct Options {
    /// Number of HTTP ports.
    pub http_ports: usize,
    /// Whether to pass the ports on the command line (else they are stored in config.json first).
    pub ports_on_command_line: bool,
    /// Extra arguments to `serve`.
    pub extra_args: Vec<String>,
    /// Whether the server keeps its start-up code resident (`--keep-code-pages`):
    /// the default here, so that the many servers of the suite do not drop
    /// the binary's cached pages under one another.
    pub keep_code_pages: bool,
    /// Extra environment variables of the server process.
    pub env: Vec<(String, String)>,
    /// Whether the temporary folder is open to other users (mode 0755, not
    /// 0700), for a server that runs as another account (`--user`). The data
    /// folder itself is then left for the server to create.
    pub open_dir: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            http_ports: 1,
            ports_on_command_line: true,
            extra_args: Vec::new(),
            keep_code_pages: true,
            env: Vec::new(),
            open_dir: false,
        }
    }
}

/// The real binary, running.
pub struct TestServer {
    /// Path of the binary.
    pub bin: PathBuf,
    /// The data folder (deleted with the server unless kept).
    pub dir: tempfile::TempDir,
    /// HTTP ports.
    pub http_ports: Vec<u16>,
    /// HTTPS port.
    pub https_port: u16,
    /// Options it was started with.
    pub options: Options,
    /// Source address of [`TestServer::client`]'s connections.
    pub source: std::net::IpAddr,
    child: Option<Child>,
    starts: usize,
}

impl TestServer {
    /// Starts a server with one HTTP port and one HTTPS port.
    pub fn start(bin: &Path) -> Result<Self> {
        Self::start_with(bin, Options::default())
    }

    /// Starts a server with `options`.
    pub fn start_with(bin: &Path, options: Options) -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("portcullis-test-").tempdir()?;
        if options.open_dir {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
        }
        // Distinct ports: free_port can hand one out twice (it is free again once probed).
        let mut ports: Vec<u16> = Vec::new();
        while ports.len() < options.http_ports + 1 {
            let p = free_port();
            if !ports.contains(&p) {
                ports.push(p);
            }
        }
        let https_port = ports.pop().unwrap_or_default();
        let http_ports = ports;
        let mut s = Self {
            bin: bin.to_path_buf(),
            dir,
            http_ports,
            https_port,
            options,
            source: std::net::IpAddr::from([127, 0, 0, 1]),
            child: None,
            starts: 0,
        };
        std::fs::write(s.dir.path().join("admin-password.in"), ADMIN_PASSWORD)?;
        if !s.options.ports_on_command_line {
            let config = serde_json::json!({
                "version": 1,
                "webserver": {"http_ports": s.http_ports, "https_port": s.https_port}
            });
            std::fs::create_dir_all(s.data_dir())?;
            std::fs::write(s.data_dir().join("config.json"), serde_json::to_vec_pretty(&config)?)?;
        }
        s.spawn()?;
        Ok(s)
    }

    /// The data folder.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The server's log (stderr) of its latest start.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("server-{}.log", self.starts)))
            .unwrap_or_default()
    }

    /// Command-line arguments of `serve`.
    pub fn serve_args(&self) -> Vec<String> {
        let mut args = vec![
            "serve".to_string(),
            "--data-dir".into(),
            self.data_dir().display().to_string(),
            "--admin-password-file".into(),
            self.dir.path().join("admin-password.in").display().to_string(),
            "--listen".into(),
            "127.0.0.1".into(),
        ];
        if self.options.ports_on_command_line {
            for p in &self.http_ports {
                args.push("--http-port".into());
                args.push(p.to_string());
            }
            args.push("--https-port".into());
            args.push(self.https_port.to_string());
        }
        if self.options.keep_code_pages {
            args.push("--keep-code-pages".into());
        }
        args.extend(self.options.extra_args.iter().cloned());
        args
    }

    fn spawn(&mut self) -> Result<()> {
        self.starts += 1;
        let log = std::fs::File::create(self.dir.path().join(format!("server-{}.log", self.starts)))?;
        let child = Command::new(&self.bin)
            .args(self.serve_args())
            .env_remove("PORTCULLIS_ADMIN_PASSWORD")
            .env("PORTCULLIS_LOG", "info,portcullis=debug")
            .envs(self.options.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting the portcullis binary")?;
        self.child = Some(child);
        self.wait_ready()
    }

    /// Waits until the first HTTP port (or the HTTPS port) answers /healthz.
    pub fn wait_ready(&mut self) -> Result<()> {
        let port = self.http_ports.first().copied().unwrap_or(self.https_port);
        let ready = wait_until(Duration::from_secs(30), || {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(_)) = child.try_wait()
            {
                return true;
            }
            raw_get(port, "/healthz").is_some_and(|r| r.starts_with("HTTP/1.1 200"))
        });
        if let Some(child) = self.child.as_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            bail!("the server exited ({status}) during start:\n{}", self.log());
        }
        if !ready {
            bail!("the server did not answer within 30 s:\n{}", self.log());
        }
        Ok(())
    }

    /// Kills the server with SIGKILL and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends SIGTERM and waits for the exit; returns the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        let mut c = self.child.take()?;
        let _ = Command::new("kill").arg("-TERM").arg(c.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = c.try_wait() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends `signal` (a name `kill` knows: HUP, TERM, ...) to the server.
    pub fn signal(&self, signal: &str) -> Result<()> {
        let pid = self.pid().context("the server is not running")?;
        let status = Command::new("kill").arg(format!("-{signal}")).arg(pid.to_string()).status()?;
        if !status.success() {
            bail!("kill -{signal} {pid} failed");
        }
        Ok(())
    }

    /// Whether the server process has exited (its status is collected).
    pub fn exited(&mut self) -> bool {
        self.child.as_mut().is_none_or(|c| matches!(c.try_wait(), Ok(Some(_))))
    }

    /// Starts the binary again on the same data folder and ports.
    pub fn restart(&mut self) -> Result<()> {
        self.kill();
        self.spawn()
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// `http://127.0.0.1:<first HTTP port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.http_ports[0])
    }

    /// `https://127.0.0.1:<HTTPS port><path>`.
    pub fn https_url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.https_port)
    }

    /// A client that accepts the self-signed factory certificate.
    pub fn client(&self) -> reqwest::blocking::Client {
        reqwest::blocking::Client::builder()
            .local_address(self.source)
            .tls_danger_accept_invalid_certs(true)
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client")
    }

    /// Sends `method path` with admin credentials and a JSON body; returns status and JSON.
    pub fn admin(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.request_as("admin", ADMIN_PASSWORD, method, path, body)
    }

    /// Sends `method path` as `user` with a JSON body; returns status and JSON (Null if none).
    pub fn request_as(
        &self,
        user: &str,
        password: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.client().request(method, self.url(path)).basic_auth(user, Some(password));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

impl TestServer {
    /// Posts a multipart form as admin; returns status and JSON.
    pub fn upload(&self, path: &str, fields: &[(&str, Vec<u8>)]) -> (u16, Value) {
        let mut form = reqwest::blocking::multipart::Form::new();
        for (name, bytes) in fields {
            form = form.part(
                name.to_string(),
                reqwest::blocking::multipart::Part::bytes(bytes.clone()).file_name(name.to_string()),
            );
        }
        let resp = self
            .client()
            .post(self.url(path))
            .basic_auth("admin", Some(ADMIN_PASSWORD))
            .multipart(form)
            .send()
            .expect("upload");
        let status = resp.status().as_u16();
        (status, resp.json().unwrap_or(Value::Null))
    }

    /// GETs `path` as admin and returns status, content type and body text.
    pub fn admin_text(&self, path: &str) -> (u16, String, String) {
        let resp =
            self.client().get(self.url(path)).basic_auth("admin", Some(ADMIN_PASSWORD)).send().expect("get");
        let status = resp.status().as_u16();
        let ct = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        (status, ct, resp.text().unwrap_or_default())
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A minimal HTTP/1.1 GET on 127.0.0.1:port with a 2 s limit; the whole answer, or None.
pub fn raw_get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    use std::io::Write;
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

/// HTTP status `curl` gets from loopback source address `source` (bound with
/// `--interface`, so one test can act as several clients); `extra` are curl
/// options such as `-u user:password` or `-H header`. 0 when the connection
/// is refused or closed without an answer.
pub fn curl_status(source: &str, url: &str, extra: &[&str]) -> u16 {
    let mut args =
        vec!["-sk", "--interface", source, "--max-time", "10", "-o", "/dev/null", "-w", "%{http_code}"];
    args.extend_from_slice(extra);
    args.push(url);
    let (_, out, _) = run("curl", &args);
    out.trim().parse().unwrap_or(0)
}

/// Runs a command to its end: exit code, standard output, standard error.
pub fn run(cmd: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {cmd}: {e}"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A two-level test CA (root, then intermediate) made with the real `openssl`.
pub struct TestCa {
    /// Folder holding the CA files.
    pub dir: PathBuf,
}

impl TestCa {
    /// Creates a root (P-384) and an intermediate (RSA 2048) in `dir`.
    pub fn new(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let ca = Self { dir: dir.to_path_buf() };
        let p = |n: &str| ca.path(n);
        std::fs::write(
            p("ca.ext"),
            "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\n",
        )?;
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-384",
            "-nodes",
            "-keyout",
            &p("root.key"),
            "-out",
            &p("root.pem"),
            "-days",
            "3650",
            "-subj",
            "/CN=portcullis test root",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ])?;
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &p("inter.key"),
            "-out",
            &p("inter.csr"),
            "-subj",
            "/CN=portcullis test intermediate",
        ])?;
        openssl(&[
            "x509",
            "-req",
            "-in",
            &p("inter.csr"),
            "-CA",
            &p("root.pem"),
            "-CAkey",
            &p("root.key"),
            "-CAcreateserial",
            "-days",
            "3000",
            "-extfile",
            &p("ca.ext"),
            "-out",
            &p("inter.pem"),
        ])?;
        Ok(ca)
    }

    /// Path of `name` in the CA folder, as a string.
    pub fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    /// Signs a CSR file (copying its extensions, SAN included); returns the path of leaf + intermediate.
    pub fn sign_csr(&self, csr_pem: &str, name: &str, days: u32) -> Result<String> {
        let csr = self.path(&format!("{name}.csr"));
        std::fs::write(&csr, csr_pem)?;
        let leaf = self.path(&format!("{name}.leaf.pem"));
        openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &self.path("inter.pem"),
            "-CAkey",
            &self.path("inter.key"),
            "-CAcreateserial",
            "-days",
            &days.to_string(),
            "-copy_extensions",
            "copy",
            "-out",
            &leaf,
        ])?;
        let chain = self.path(&format!("{name}.chain.pem"));
        std::fs::write(
            &chain,
            format!(
                "{}{}",
                std::fs::read_to_string(&leaf)?,
                std::fs::read_to_string(self.path("inter.pem"))?
            ),
        )?;
        Ok(chain)
    }

    /// Issues a leaf for `cn` with a new key (`rsa:2048`, `ec` P-256 …); returns (chain path, key path).
    pub fn issue(&self, cn: &str, name: &str, newkey: &[&str]) -> Result<(String, String)> {
        let key = self.path(&format!("{name}.key"));
        let csr = self.path(&format!("{name}.req"));
        let mut args = vec!["req", "-newkey"];
        args.extend_from_slice(newkey);
        let subj = format!("/CN={cn}");
        let san = format!("subjectAltName=DNS:{cn}");
        args.extend_from_slice(&["-nodes", "-keyout", &key, "-out", &csr, "-subj", &subj, "-addext", &san]);
        openssl(&args)?;
        let chain = self.sign_csr(&std::fs::read_to_string(&csr)?, name, 398)?;
        Ok((chain, key))
    }
}

/// Runs `openssl` with `args`, failing with its output if it fails.
pub fn openssl(args: &[&str]) -> Result<String> {
    let out = Command::new("openssl").args(args).stdin(Stdio::null()).output().context("running openssl")?;
    if !out.status.success() {
        bail!("openssl {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
