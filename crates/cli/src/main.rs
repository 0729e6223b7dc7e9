//! The `portcullis` binary: `serve`, and offline commands on a data folder
//! for provisioning (users, configuration).

mod privileges;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use portcullis::auth::{self, Group, UsersFile};
use portcullis::runtime::{Actor, CertificateChange};
use portcullis::store::{self, Store, USERS_FILE};
use portcullis_core::config::Config;

/// Default data folder.
const DEFAULT_DATA_DIR: &str = "/var/lib/portcullis";

/// The web server of a network device.
#[derive(Parser)]
#[command(name = "portcullis", about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct DataDir {
    /// Data folder (configuration, accounts, certificates).
    #[arg(long, env = "PORTCULLIS_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Manage accounts offline (the server must not be running on the folder).
    #[command(subcommand)]
    User(UserCommand),
    /// Manage API tokens offline (the server must not be running on the folder, except to list).
    #[command(subcommand)]
    Token(TokenCommand),
    /// Show, check or reset the stored configuration offline.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Manage the device's certificate offline (provisioning).
    #[command(subcommand)]
    Cert(CertCommand),
}

#[derive(Subcommand)]
enum CertCommand {
    /// Show the certificate in use.
    Show {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        data: DataDir,
    },
    /// Generate a new key, a self-signed certificate and a certificate request.
    Generate {
        /// Common name: the DNS name (or IP address) browsers use for this device.
        #[arg(long)]
        cn: String,
        /// Country (2 letters).
        #[arg(long)]
        country: Option<String>,
        /// State or province.
        #[arg(long)]
        state: Option<String>,
        /// Locality (city).
        #[arg(long)]
        locality: Option<String>,
        /// Organization.
        #[arg(long)]
        organization: Option<String>,
        /// Organizational unit.
        #[arg(long)]
        organizational_unit: Option<String>,
        /// E-mail address.
        #[arg(long)]
        email: Option<String>,
        /// Key type: rsa2048 or ecdsa-p256.
        #[arg(long, default_value = "rsa2048")]
        key_type: String,
        /// Validity in days (at most 3650).
        #[arg(long, default_value_t = 3650)]
        validity_days: u32,
        #[command(flatten)]
        data: DataDir,
    },
    /// Import a certificate with its key, or (without --key) a CA-signed
    /// certificate for the pending request's key.
    Import {
        /// PEM file with the certificate chain (may hold the key too).
        #[arg(long)]
        cert: PathBuf,
        /// PEM file with the private key.
        #[arg(long)]
        key: Option<PathBuf>,
        /// File holding the key's passphrase (first line).
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
        #[command(flatten)]
        data: DataDir,
    },
    /// Write the individual certificate chain and its private key (PEM).
    Export {
        /// File to write (mode 0600); default: stdout.
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        data: DataDir,
    },
    /// Write the pending certificate request (PEM).
    Csr {
        /// File to write; default: stdout.
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        data: DataDir,
    },
    /// Delete the individual certificate: back to the factory certificate.
    Delete {
        #[command(flatten)]
        data: DataDir,
    },
    /// Show or set the ACME settings; the server enrols by itself when ACME is
    /// switched on (and renews), using its own listeners for the challenges.
    Acme(AcmeArgs),
}

#[derive(Args)]
struct ServeArgs {
    #[command(flatten)]
    data: DataDir,
    /// HTTP port for this run, instead of the configured ones (repeatable; switches HTTP on).
    #[arg(long = "http-port", value_name = "PORT")]
    http_ports: Vec<u16>,
    /// HTTPS port for this run, instead of the configured one (switches HTTPS on).
    #[arg(long, value_name = "PORT")]
    https_port: Option<u16>,
    /// File holding the password of the `admin` account created on the first start
    /// (else PORTCULLIS_ADMIN_PASSWORD, else one is generated into the data folder).
    #[arg(long, value_name = "FILE")]
    admin_password_file: Option<PathBuf>,
    /// Folder to serve at `/` (the UI and API keep /admin/ and /api/).
    #[arg(long, value_name = "DIR")]
    webroot: Option<PathBuf>,
    /// Address to listen on (repeatable; default: every IPv6 and IPv4 address),
    /// for the ports whose settings name no address: a port's own addresses win.
    #[arg(long = "listen", value_name = "ADDRESS")]
    listen: Vec<IpAddr>,
    /// First delay before a failed notification is tried again, in milliseconds (then ×4 each time).
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    notify_retry_ms: u64,
    /// How often, in seconds, ACME renewals and certificate expiry are checked.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    certificate_check_seconds: u64,
    /// Keep the code that ran at start-up resident (by default its pages go
    /// back to the kernel once the server is up, and return when used).
    #[arg(long)]
    keep_code_pages: bool,
    /// Seconds to wait for the data folder's lock when another process holds
    /// it (a predecessor still exiting); then the start fails.
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    lock_wait_seconds: u64,
    /// Log filter: a level, or `target=level` pairs, e.g. `info` or `warn,portcullis=debug`.
    #[arg(long, env = "PORTCULLIS_LOG", default_value = "info")]
    log: String,
    /// Run as this unprivileged account (start as root): it must own the data
    /// folder (created for it when missing); only the right to bind ports
    /// below 1024 is kept.
    #[arg(long, value_name = "NAME")]
    user: Option<String>,
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create an account.
    Add {
        /// User name.
        name: String,
        /// Group: `admins` or `users`.
        #[arg(long, default_value = "users")]
        group: String,
        #[command(flatten)]
        password: PasswordSource,
        #[command(flatten)]
        data: DataDir,
    },
    /// Set an account's password.
    Passwd {
        /// User name.
        name: String,
        #[command(flatten)]
        password: PasswordSource,
        #[command(flatten)]
        data: DataDir,
    },
    /// Delete an account (never the last admin).
    Delete {
        /// User name.
        name: String,
        #[command(flatten)]
        data: DataDir,
    },
    /// List the accounts.
    List {
        #[command(flatten)]
        data: DataDir,
    },
    /// Remove an account's second factor (two-step verification), for an
    /// owner who lost it and its recovery codes: its password alone logs in again.
    #[command(name = "second-factor-reset")]
    SecondFactorReset {
        /// User name.
        name: String,
        #[command(flatten)]
        data: DataDir,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Make a token; its secret is printed once (standard output) and never again.
    Create {
        /// Token name: 1-64 letters, digits, '.', '_' or '-'.
        name: String,
        /// `read-only`, `operator` or `administrator` (never wider than the account's rights).
        #[arg(long)]
        scope: String,
        /// The account it belongs to; default: the only member of `admins`.
        #[arg(long)]
        account: Option<String>,
        /// Days until it expires by itself (1-3650); default: never.
        #[arg(long, value_name = "N")]
        expires_in_days: Option<u32>,
        /// An address or network it may be used from (repeatable); default: any.
        #[arg(long = "allowed-source", value_name = "ADDRESS")]
        allowed_sources: Vec<String>,
        #[command(flatten)]
        data: DataDir,
    },
    /// List the tokens (never a secret).
    List {
        #[command(flatten)]
        data: DataDir,
    },
    /// Revoke a token.
    Revoke {
        /// Token name.
        name: String,
        #[command(flatten)]
        data: DataDir,
    },
}

#[derive(Args)]
struct PasswordSource {
    /// File holding the password (first line); else PORTCULLIS_PASSWORD; else one is generated and printed.
    #[arg(long, value_name = "FILE")]
    password_file: Option<PathBuf>,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the stored configuration (or factory settings if none is stored).
    Show {
        /// Print the factory settings instead.
        #[arg(long)]
        factory: bool,
        #[command(flatten)]
        data: DataDir,
    },
    /// Check a configuration file (default: the stored one); exit 1 if it is not valid.
    Check {
        /// File to check instead of the stored configuration.
        file: Option<PathBuf>,
        #[command(flatten)]
        data: DataDir,
    },
    /// Store factory settings (the previous file is kept as config.json.bak).
    FactoryReset {
        #[command(flatten)]
        data: DataDir,
    },
    /// Print one stored setting as JSON (secrets are never printed); works
    /// while a server runs.
    Get {
        /// The setting's path in the API's JSON: `http_ports`,
        /// `intrusion_detection.notification_threshold`, `access_control.enabled`, ...
        key: String,
        #[command(flatten)]
        data: DataDir,
    },
    /// Change one setting and store it, checked as the API checks it; the
    /// server must not be running on the folder (it uses it at its next start).
    Set {
        /// The setting's path in the API's JSON (as for `get`).
        key: String,
        /// The value: JSON when it parses as JSON (numbers, true/false, null,
        /// lists, objects), else a string. It may start with `-` (`-1`).
        #[arg(allow_hyphen_values = true)]
        value: String,
        #[command(flatten)]
        data: DataDir,
    },
    /// Write a backup: the stored configuration with its secrets, the
    /// accounts with their password hashes and, if asked for, the individual
    /// certificate with its key, encrypted with a passphrase (age, scrypt).
    Export {
        /// File to write (mode 0600).
        #[arg(long, value_name = "FILE")]
        output: PathBuf,
        /// Include the individual certificate and its private key (only to
        /// restore this device: another must not take its identity).
        #[arg(long)]
        include_certificate: bool,
        #[command(flatten)]
        passphrase: BackupPassphrase,
        #[command(flatten)]
        data: DataDir,
    },
    /// Import a backup and store it: checked whole first (a wrong
    /// passphrase, a damaged or newer file change nothing); the server must
    /// not be running on the folder.
    Import {
        /// The backup file.
        file: PathBuf,
        /// Install the backup's certificate and key (else the device keeps its own).
        #[arg(long)]
        include_certificate: bool,
        #[command(flatten)]
        passphrase: BackupPassphrase,
        #[command(flatten)]
        data: DataDir,
    },
}

/// Where a backup's passphrase comes from: never the command line itself,
/// which other users of the machine can read in the process list.
#[derive(Args)]
struct BackupPassphrase {
    /// File holding the passphrase (first line); else PORTCULLIS_BACKUP_PASSPHRASE.
    #[arg(long, value_name = "PATH")]
    passphrase_file: Option<PathBuf>,
}

#[cfg(feature = "backup")]
impl BackupPassphrase {
    fn read(&self) -> Result<String> {
        match &self.passphrase_file {
            Some(f) => read_secret_file(f),
            None => match std::env::var("PORTCULLIS_BACKUP_PASSPHRASE") {
                Ok(p) if !p.is_empty() => Ok(p),
                _ => bail!(
                    "give the backup's passphrase with --passphrase-file PATH or PORTCULLIS_BACKUP_PASSPHRASE"
                ),
            },
        }
    }
}

/// A command line that names something that does not exist (exit status 2,
/// as for clap's own usage errors).
#[derive(Debug)]
struct UsageError(String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

fn main() -> ExitCode {
    // `--version` names the build's features and crypto provider. Leaked once:
    // clap keeps a 'static text.
    let version: &'static str = Box::leak(portcullis::build_info::summary().into_boxed_str());
    let cli = match Cli::from_arg_matches(&Cli::command().version(version).get_matches()) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let result = match cli.command {
        Command::Serve(args) => serve(args),
        Command::User(cmd) => user(cmd),
        Command::Token(cmd) => token(cmd),
        Command::Config(cmd) => config(cmd),
        Command::Cert(cmd) => cert(cmd),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("portcullis: {}", one_line(&e));
            if e.is::<UsageError>() { ExitCode::from(2) } else { ExitCode::FAILURE }
        }
    }
}

/// The error and its causes on one line, each said once: many messages
/// already hold their cause (`open DATA/.lock: Not a directory`), which
/// anyhow's `{:#}` would repeat after them.
fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

fn read_secret_file(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let line = text.lines().next().unwrap_or("").to_string();
    if line.is_empty() {
        bail!("{} is empty", path.display());
    }
    Ok(line)
}

fn serve(args: ServeArgs) -> Result<ExitCode> {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    // Targets, not EnvFilter: the same `level` / `target=level` lists
    // without a regular-expression engine in the binary.
    let filter = log_filter(&args.log)?;
    tracing_subscriber::registry()
        // Colours only on a terminal: a log file or the journal gets plain text.
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
        )
        .with(filter)
        .init();
    // Read while still root: the file may be a secret only root can read.
    let admin_password = args.admin_password_file.as_deref().map(read_secret_file).transpose()?;
    // Before the first thread starts (capabilities are per thread).
    if let Some(name) = &args.user {
        let account = privileges::account(name)?;
        privileges::prepare_data_dir(&args.data.data_dir, &account)?;
        privileges::become_account(&account)?;
        tracing::info!(user = %name, "running as {name}; of root's rights only binding ports below 1024 is kept");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        // Before start: a SIGHUP during start-up is a reload once up, not the end.
        let signals = portcullis::service::Signals::install()?;
        let server = portcullis::ServerBuilder::new(&args.data.data_dir)
            .port_overrides(portcullis::PortOverrides {
                http_ports: (!args.http_ports.is_empty()).then_some(args.http_ports),
                https_port: args.https_port,
            })
            .admin_password(admin_password)
            .bind_addresses(args.listen)
            .webroot(args.webroot)
            .lock_wait(std::time::Duration::from_secs(args.lock_wait_seconds))
            .notify_first_retry(std::time::Duration::from_millis(args.notify_retry_ms))
            .certificate_checks(
                std::time::Duration::from_secs(args.certificate_check_seconds.max(1)),
                std::time::Duration::from_secs(args.certificate_check_seconds.max(1)),
            )
            .start()
            .await?;
        let listeners = server.runtime().open_listeners().await;
        for l in listeners {
            tracing::info!(port = l.port, tls = l.tls, "ready");
        }
        if !args.keep_code_pages {
            portcullis::trim_startup_code();
        }
        server.run(signals).await;
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The `--log` filter, with rustls capped at `error` unless it names rustls:
/// every warning rustls logs on a server is about what a peer sent (an IP
/// address as SNI, an illegal name, a warning alert), so any client could
/// write one line per handshake (736 lines from one scan); a failed
/// handshake is logged at debug by the listener instead.
fn log_filter(text: &str) -> Result<tracing_subscriber::filter::Targets> {
    let filter = text
        .parse::<tracing_subscriber::filter::Targets>()
        // The parse error's text already names its cause: no chain, or it reads twice.
        .map_err(|e| {
            anyhow::anyhow!("invalid --log filter {text:?}: {e} (e.g. info or warn,portcullis=debug)")
        })?;
    if filter.iter().any(|(target, _)| target == "rustls" || target.starts_with("rustls::")) {
        return Ok(filter);
    }
    Ok(filter.with_target("rustls", tracing_subscriber::filter::LevelFilter::ERROR))
}

/// Runs `change` on the data folder's runtime, offline (no server may run
/// on it: the folder is locked), so that the command takes the change path
/// the API takes; the events it records are written before returning.
fn offline<T, F, Fut>(data: &DataDir, change: F) -> Result<T>
where
    F: FnOnce(std::sync::Arc<portcullis::Runtime>) -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let device = portcullis::OfflineDevice::open(&data.data_dir)?;
        let result = change(device.runtime().clone()).await;
        device.close();
        result
    })
}

/// A refused change, said once.
fn apply_error(e: portcullis::runtime::ApplyError) -> anyhow::Error {
    match e {
        portcullis::runtime::ApplyError::Invalid(v) => anyhow::anyhow!("{}", v.message),
        other => anyhow::anyhow!("{other}"),
    }
}

fn open_locked(data: &DataDir) -> Result<(Store, store::DataLock)> {
    let store = Store::open(&data.data_dir)?;
    let lock = store.lock()?;
    Ok((store, lock))
}

fn load_users(store: &Store) -> Result<UsersFile> {
    match store.read(USERS_FILE)? {
        Some(bytes) => serde_json::from_slice(&bytes).context("the accounts file is unreadable"),
        None => Ok(UsersFile::default()),
    }
}

fn new_password(source: &PasswordSource) -> Result<(String, bool)> {
    let password = match &source.password_file {
        Some(f) => read_secret_file(f)?,
        None => match std::env::var("PORTCULLIS_PASSWORD") {
            Ok(p) => p,
            Err(_) => return Ok((auth::generate_password(), true)),
        },
    };
    auth::validate_password(&password).map_err(|e| anyhow::anyhow!("{}", e.message))?;
    Ok((password, false))
}

fn user(cmd: UserCommand) -> Result<ExitCode> {
    match cmd {
        UserCommand::Add { name, group, password, data } => {
            let group: Group = group
                .parse()
                .map_err(|e: portcullis_core::ValidationError| anyhow::anyhow!("{}", e.message))?;
            offline(&data, |rt| async move {
                if rt.auth().users().users.contains_key(&name) {
                    bail!("the user \"{name}\" exists already; use `portcullis user passwd`");
                }
                let (password, generated) = new_password(&password)?;
                rt.save_user(&name, Some(group), Some(password.clone()), &Actor::default())
                    .await
                    .map_err(apply_error)?;
                if generated {
                    println!("{password}");
                }
                eprintln!("created user \"{name}\" in group {group:?}");
                Ok(())
            })?;
        }
        UserCommand::Passwd { name, password, data } => {
            offline(&data, |rt| async move {
                if !rt.auth().users().users.contains_key(&name) {
                    bail!("there is no user \"{name}\"");
                }
                let (password, generated) = new_password(&password)?;
                rt.save_user(&name, None, Some(password.clone()), &Actor::default())
                    .await
                    .map_err(apply_error)?;
                if generated {
                    println!("{password}");
                }
                eprintln!("password of \"{name}\" changed");
                Ok(())
            })?;
        }
        UserCommand::Delete { name, data } => {
            offline(&data, |rt| async move {
                rt.delete_user(&name, &Actor::default()).await.map_err(apply_error)?;
                eprintln!("deleted user \"{name}\"");
                Ok(())
            })?;
        }
        #[cfg(feature = "totp")]
        UserCommand::SecondFactorReset { name, data } => {
            offline(&data, |rt| async move {
                rt.reset_second_factor(&name, &Actor::default()).await.map_err(apply_error)?;
                eprintln!("second factor of \"{name}\" reset: its password alone logs in again");
                Ok(())
            })?;
        }
        // In the help of every build, so that a script learns why it cannot work here.
        #[cfg(not(feature = "totp"))]
        UserCommand::SecondFactorReset { .. } => {
            bail!("this build of portcullis does not include the \"totp\" feature")
        }
        UserCommand::List { data } => {
            let store = Store::open(&data.data_dir)?;
            for u in load_users(&store)?.users.values() {
                let group = if u.group == Group::Admins { "admins" } else { "users" };
                // A third column only for an account with a second factor:
                // the lines of the others stay as scripts know them.
                let factor = if u.second_factor.is_some() { "\tsecond-factor" } else { "" };
                println!("{}\t{group}{factor}", u.name);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn token(cmd: TokenCommand) -> Result<ExitCode> {
    match cmd {
        TokenCommand::Create { name, scope, account, expires_in_days, allowed_sources, data } => {
            let scope: portcullis_core::tokens::TokenScope = scope
                .parse()
                .map_err(|e: portcullis_core::ValidationError| anyhow::anyhow!("{}", e.message))?;
            offline(&data, |rt| async move {
                let account = match account {
                    Some(a) => a,
                    None => {
                        let users = rt.auth().users();
                        let mut admins = users.users.values().filter(|u| u.group == Group::Admins);
                        match (admins.next(), admins.next()) {
                            (Some(only), None) => only.name.clone(),
                            _ => bail!("name the account the token belongs to with --account"),
                        }
                    }
                };
                let input = portcullis::tokens::NewToken {
                    name: name.clone(),
                    scope,
                    account: Some(account.clone()),
                    expires_at: None,
                    expires_in_days,
                    allowed_sources,
                };
                let (secret, _) =
                    rt.create_token(input, None, &Actor::default()).await.map_err(apply_error)?;
                println!("{secret}");
                eprintln!(
                    "made the token \"{name}\" for \"{account}\" ({}); its secret is shown this once",
                    scope.as_str()
                );
                Ok(())
            })?;
        }
        TokenCommand::List { data } => {
            let store = Store::open(&data.data_dir)?;
            let fmt = |t: Option<time::OffsetDateTime>| {
                t.and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
                    .unwrap_or_else(|| "-".into())
            };
            for t in load_users(&store)?.tokens.values() {
                let sources = t.allowed_sources.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(",");
                println!(
                    "{}\t{}\t{}\tcreated {}\tlast used {}\texpires {}\tsources {}",
                    t.name,
                    t.account,
                    t.scope.as_str(),
                    fmt(Some(t.created)),
                    fmt(t.last_used),
                    fmt(t.expires_at),
                    if sources.is_empty() { "any".to_string() } else { sources },
                );
            }
        }
        TokenCommand::Revoke { name, data } => {
            offline(&data, |rt| async move {
                rt.revoke_token(&name, &Actor::default()).await.map_err(apply_error)?;
                eprintln!("revoked the token \"{name}\"");
                Ok(())
            })?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn config(cmd: ConfigCommand) -> Result<ExitCode> {
    match cmd {
        ConfigCommand::Show { factory, data } => {
            let config = if factory {
                Config::default()
            } else {
                let store = Store::open(&data.data_dir)?;
                match store.read(store::CONFIG_FILE)? {
                    Some(bytes) => {
                        store::parse_config(&bytes).map_err(|e| anyhow::anyhow!("config.json: {e}"))?.config
                    }
                    None => {
                        eprintln!("no configuration stored; showing factory settings");
                        Config::default()
                    }
                }
            };
            // Secrets never leave through a read of the configuration.
            print!("{}", config.redacted().to_file_text());
        }
        ConfigCommand::Check { file, data } => {
            let path = file.unwrap_or_else(|| data.data_dir.join(store::CONFIG_FILE));
            let bytes = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
            match store::parse_config(&bytes) {
                Ok(parsed) => {
                    for key in parsed.unknown_keys {
                        eprintln!("warning: unknown key \"{key}\" is ignored");
                    }
                    println!("{}: valid", path.display());
                }
                Err(e) => {
                    eprintln!("portcullis: {}: {e}", path.display());
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
        ConfigCommand::Get { key, data } => config_get(&key, &data)?,
        ConfigCommand::Set { key, value, data } => config_set(key, &value, &data)?,
        #[cfg(feature = "backup")]
        ConfigCommand::Export { output, include_certificate, passphrase, data } => {
            config_export(&output, include_certificate, &passphrase, &data)?
        }
        #[cfg(feature = "backup")]
        ConfigCommand::Import { file, include_certificate, passphrase, data } => {
            config_import(&file, include_certificate, &passphrase, &data)?
        }
        // The commands stay in the help of every build, so that a script
        // that runs them learns why they cannot work here.
        #[cfg(not(feature = "backup"))]
        ConfigCommand::Export { .. } | ConfigCommand::Import { .. } => {
            bail!("this build of portcullis does not include the \"backup\" feature")
        }
        ConfigCommand::FactoryReset { data } => {
            offline(&data, |rt| async move {
                rt.store_factory_settings(&Actor::default()).await.map_err(apply_error)?;
                eprintln!(
                    "factory settings stored in {}",
                    rt.data_folder().path(store::CONFIG_FILE).display()
                );
                Ok(())
            })?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The stored configuration (factory settings when none is stored).
fn stored_config(data: &DataDir) -> Result<Config> {
    let store = Store::open(&data.data_dir)?;
    Ok(match store.read(store::CONFIG_FILE)? {
        Some(bytes) => store::parse_config(&bytes).map_err(|e| anyhow::anyhow!("config.json: {e}"))?.config,
        None => Config::default(),
    })
}

/// `config get KEY`: the stored value, as JSON on one line.
fn config_get(key: &str, data: &DataDir) -> Result<()> {
    use portcullis_core::setting_key::{SettingError, SettingKey};
    let config = stored_config(data)?;
    let value = SettingKey::parse(key).and_then(|k| k.get(&config)).map_err(|e| match e {
        SettingError::UnknownKey(_) => anyhow::Error::new(UsageError(e.to_string())),
        other => anyhow::anyhow!("{other}"),
    })?;
    println!("{}", serde_json::to_string(&value)?);
    Ok(())
}

/// `config set KEY VALUE`: the runtime's Set for the setting's section, then
/// Store (offline there is no running state to keep apart from the stored one).
fn config_set(key: String, value: &str, data: &DataDir) -> Result<()> {
    // JSON when it is JSON (a key given twice refused, as the API refuses
    // it); anything else is the string itself (`config set x admin@example.com`).
    let value = match serde_json::from_str::<serde_json::Value>(value) {
        Ok(_) => portcullis_core::config::strict_json(value.as_bytes())
            .map_err(|e| anyhow::anyhow!("{key}: {}: {}", e.code, e.message))?,
        Err(_) => serde_json::Value::String(value.to_string()),
    };
    offline(data, |rt| async move {
        let refused = |e: portcullis::runtime::ApplyError| match e {
            portcullis::runtime::ApplyError::Invalid(v) => {
                let words = portcullis_core::config::for_people(&v.message).unwrap_or(v.message);
                let field = if v.field.is_empty() { key.clone() } else { v.field };
                anyhow::anyhow!("{field}: {}: {words}", v.code)
            }
            portcullis::runtime::ApplyError::UnknownSetting(m) => anyhow::Error::new(UsageError(m)),
            other => apply_error(other),
        };
        let actor = Actor::default();
        rt.set_setting(&key, value, &actor).await.map_err(refused)?;
        // What is now set, read as `get` reads it: a secret is not echoed.
        let shown = portcullis_core::setting_key::SettingKey::parse(&key)
            .and_then(|k| k.get(&rt.running()))
            .map_or_else(|_| "(a secret, not shown)".to_string(), |v| v.to_string());
        if rt.status().unsaved_changes {
            rt.store(&actor).await.map_err(refused)?;
            eprintln!("{key} = {shown}: stored; a server started on this folder uses it");
        } else {
            eprintln!("{key} = {shown}: unchanged");
        }
        Ok(())
    })
}

/// A refused backup, on one line with its code (as the API answers it).
#[cfg(feature = "backup")]
fn backup_error(e: portcullis::backup::BackupError) -> anyhow::Error {
    match e {
        portcullis::backup::BackupError::Invalid(v) => {
            let words = portcullis_core::config::for_people(&v.message).unwrap_or(v.message);
            anyhow::anyhow!("{}: {}: {words}; nothing was changed", v.field, v.code)
        }
        other => anyhow::anyhow!("{}: {other}", other.code()),
    }
}

/// `config export`: the folder's backup, encrypted, written mode 0600.
#[cfg(feature = "backup")]
fn config_export(
    output: &Path,
    include_certificate: bool,
    passphrase: &BackupPassphrase,
    data: &DataDir,
) -> Result<()> {
    let passphrase = passphrase.read()?;
    portcullis::backup::check_passphrase(&passphrase).map_err(backup_error)?;
    let (file, info) = offline(data, |rt| async move {
        rt.export_backup(passphrase, include_certificate, &Actor::default()).await.map_err(backup_error)
    })?;
    write_bytes(output, &file)?;
    eprintln!(
        "backup of {} written to {}{}",
        info.host_name,
        output.display(),
        if info.includes_certificate {
            " (with the certificate and its private key)"
        } else if include_certificate {
            " (no individual certificate to include: the factory certificate's key never leaves the device)"
        } else {
            ""
        }
    );
    Ok(())
}

/// `config import FILE`: the backup checked whole, applied through the
/// runtime's import, then stored (offline nothing runs to keep apart).
#[cfg(feature = "backup")]
fn config_import(
    file: &Path,
    include_certificate: bool,
    passphrase: &BackupPassphrase,
    data: &DataDir,
) -> Result<()> {
    use std::io::Read as _;
    let passphrase = passphrase.read()?;
    let mut bytes = Vec::new();
    std::fs::File::open(file)
        .and_then(|f| f.take(portcullis::backup::MAX_BACKUP_BYTES as u64 + 1).read_to_end(&mut bytes))
        .with_context(|| format!("cannot read {}", file.display()))?;
    let checked = portcullis::backup::open(&bytes, &passphrase)
        .and_then(|b| b.checked(time_now()))
        .map_err(backup_error)?;
    offline(data, |rt| async move {
        let actor = Actor::default();
        let outcome =
            rt.import_backup(checked, include_certificate, false, &actor, None).await.map_err(apply_error)?;
        if rt.status().unsaved_changes {
            rt.store(&actor).await.map_err(apply_error)?;
        }
        for key in &outcome.unknown_keys {
            eprintln!("warning: unknown key \"{key}\" of the backup is ignored");
        }
        let certificate = match outcome.certificate {
            portcullis::backup::CertificateImport::None => "none in the backup",
            portcullis::backup::CertificateImport::Unchanged => "unchanged",
            portcullis::backup::CertificateImport::Installed => "installed",
            portcullis::backup::CertificateImport::Skipped => {
                "skipped (the device keeps its own; --include-certificate installs the backup's)"
            }
        };
        eprintln!(
            "imported the backup of {} made {}: settings {}, {} account(s), certificate {certificate}; stored",
            outcome.backup.host_name,
            outcome.backup.created,
            if outcome.changed_sections.is_empty() {
                "unchanged".to_string()
            } else {
                format!("changed ({})", outcome.changed_sections.join(", "))
            },
            outcome.users.len(),
        );
        Ok(())
    })
}

/// Writes a secret file (mode 0600) with `bytes`.
#[cfg(feature = "backup")]
fn write_bytes(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(bytes).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

fn write_out(out: Option<&Path>, text: &str, secret: bool) -> Result<()> {
    match out {
        None => print!("{text}"),
        Some(path) => {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(if secret { 0o600 } else { 0o644 })
                .open(path)
                .with_context(|| format!("cannot write {}", path.display()))?;
            f.write_all(text.as_bytes())?;
        }
    }
    Ok(())
}

fn print_view(view: &portcullis::certs::CertificateView, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(view)?);
        return Ok(());
    }
    let c = &view.certificate;
    println!("in use:        {:?}", view.source);
    println!("subject:       {}", c.subject);
    println!("issuer:        {}", c.issuer);
    println!("valid:         {} .. {} ({} days left)", c.not_before, c.not_after, c.days_until_expiry);
    println!("serial:        {}", c.serial);
    println!("SHA-256:       {}", c.fingerprint_sha256);
    println!(
        "key:           {} {} bits{}",
        c.key_type,
        c.key_bits,
        c.curve.as_deref().map(|k| format!(" ({k})")).unwrap_or_default()
    );
    println!("names:         {}", c.subject_alt_names.join(", "));
    println!("chain length:  {}", c.chain_length);
    println!("CSR pending:   {}", view.csr_pending);
    for w in &view.warnings {
        println!("warning:       {w}");
    }
    Ok(())
}

fn cert_error(e: portcullis::certs::CertStoreError) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

fn cert(cmd: CertCommand) -> Result<ExitCode> {
    use portcullis::certs::CertStore;
    let now = time_now();
    match cmd {
        CertCommand::Show { json, data } => {
            // Read-only: works while a server runs on the folder.
            let store = Store::open(&data.data_dir)?;
            print_view(&CertStore::new(store).view(now, Vec::new()).map_err(cert_error)?, json)?;
        }
        CertCommand::Generate {
            cn,
            country,
            state,
            locality,
            organization,
            organizational_unit,
            email,
            key_type,
            validity_days,
            data,
        } => {
            let key_type = match key_type.as_str() {
                "rsa2048" => portcullis_cert::KeyType::Rsa2048,
                "ecdsa-p256" => portcullis_cert::KeyType::EcdsaP256,
                other => bail!("unknown key type \"{other}\"; use rsa2048 or ecdsa-p256"),
            };
            let mut req = portcullis_cert::GenerateRequest::new(cn);
            req.country = country;
            req.state = state;
            req.locality = locality;
            req.organization = organization;
            req.organizational_unit = organizational_unit;
            req.email = email;
            req.key_type = key_type;
            req.validity_days = validity_days;
            let view = offline(&data, |rt| async move {
                rt.change_certificate(CertificateChange::Generate(req), &Actor::default())
                    .await
                    .map_err(cert_error)
            })?;
            print_view(&view, false)?;
        }
        CertCommand::Import { cert, key, passphrase_file, data } => {
            let cert_bytes =
                std::fs::read(&cert).with_context(|| format!("cannot read {}", cert.display()))?;
            let key_bytes = key
                .as_ref()
                .map(|k| std::fs::read(k).with_context(|| format!("cannot read {}", k.display())))
                .transpose()?;
            let passphrase = passphrase_file.as_deref().map(read_secret_file).transpose()?;
            let has_key_in_cert = String::from_utf8_lossy(&cert_bytes).contains("PRIVATE KEY-----");
            let change = if key_bytes.is_some() || has_key_in_cert {
                CertificateChange::Upload { certificate: cert_bytes, private_key: key_bytes, passphrase }
            } else {
                CertificateChange::UploadCertificate(cert_bytes)
            };
            let view = offline(&data, |rt| async move {
                rt.change_certificate(change, &Actor::default()).await.map_err(cert_error)
            })?;
            print_view(&view, false)?;
        }
        CertCommand::Export { out, data } => {
            let (store, _lock) = open_locked(&data)?;
            write_out(out.as_deref(), &CertStore::new(store).export().map_err(cert_error)?, true)?;
        }
        CertCommand::Csr { out, data } => {
            let (store, _lock) = open_locked(&data)?;
            write_out(out.as_deref(), &CertStore::new(store).request_pem().map_err(cert_error)?, false)?;
        }
        CertCommand::Delete { data } => {
            offline(&data, |rt| async move {
                rt.change_certificate(CertificateChange::Delete, &Actor::default()).await.map_err(cert_error)
            })?;
            eprintln!("individual certificate deleted; the factory certificate is in use");
        }
        CertCommand::Acme(args) => {
            #[cfg(not(feature = "acme"))]
            {
                let _ = args;
                bail!("this build of portcullis does not include the \"acme\" feature");
            }
            #[cfg(feature = "acme")]
            acme_command(args)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The options of `cert acme` (parsed in every build, so that a build
/// without ACME says so rather than calling the command unknown).
#[derive(Args)]
#[cfg_attr(not(feature = "acme"), allow(dead_code))]
struct AcmeArgs {
    /// Switch ACME on or off.
    #[arg(long)]
    enabled: Option<bool>,
    /// ACME directory URL (https).
    #[arg(long)]
    directory_url: Option<String>,
    /// Contact e-mail (repeatable).
    #[arg(long)]
    contact: Vec<String>,
    /// DNS name or IP address to certify (repeatable).
    #[arg(long)]
    identifier: Vec<String>,
    /// Challenge: http-01 or tls-alpn-01.
    #[arg(long)]
    challenge: Option<String>,
    /// Key type: rsa2048 or ecdsa-p256.
    #[arg(long)]
    key_type: Option<String>,
    /// External Account Binding key id.
    #[arg(long)]
    eab_key_id: Option<String>,
    /// File holding the EAB HMAC key (base64url).
    #[arg(long)]
    eab_hmac_key_file: Option<PathBuf>,
    /// PEM file of a CA to trust for the ACME server.
    #[arg(long)]
    ca_bundle: Option<PathBuf>,
    #[command(flatten)]
    data: DataDir,
}

/// `cert acme`: shows the ACME settings, or changes them first.
#[cfg(feature = "acme")]
fn acme_command(args: AcmeArgs) -> Result<()> {
    let AcmeArgs {
        enabled,
        directory_url,
        contact,
        identifier,
        challenge,
        key_type,
        eab_key_id,
        eab_hmac_key_file,
        ca_bundle,
        data,
    } = args;
    {
        {
            let changes = enabled.is_some()
                || directory_url.is_some()
                || !contact.is_empty()
                || !identifier.is_empty()
                || challenge.is_some()
                || key_type.is_some()
                || eab_key_id.is_some()
                || eab_hmac_key_file.is_some()
                || ca_bundle.is_some();
            let store = Store::open(&data.data_dir)?;
            let mut file: serde_json::Value = store
                .read(portcullis::acme::ACME_FILE)?
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or_else(|| serde_json::json!({"settings": {}, "status": {}}));
            if changes {
                let s = &mut file["settings"];
                let mut set = |k: &str, v: serde_json::Value| s[k] = v;
                if let Some(v) = enabled {
                    set("enabled", v.into());
                }
                if let Some(v) = directory_url {
                    set("directory_url", v.into());
                }
                if !contact.is_empty() {
                    set("contact", contact.into());
                }
                if !identifier.is_empty() {
                    set("identifiers", identifier.into());
                }
                if let Some(v) = challenge {
                    set("challenge", v.into());
                }
                if let Some(v) = key_type {
                    set("key_type", v.into());
                }
                if let Some(v) = eab_key_id {
                    set("eab_key_id", v.into());
                }
                if let Some(f) = eab_hmac_key_file {
                    set("eab_hmac_key", read_secret_file(&f)?.into());
                }
                if let Some(f) = ca_bundle {
                    set(
                        "ca_bundle_pem",
                        std::fs::read_to_string(&f)
                            .with_context(|| format!("cannot read {}", f.display()))?
                            .into(),
                    );
                }
                let settings: portcullis_core::acme::AcmeSettings =
                    portcullis_core::config::Input::from_value(file["settings"].clone())
                        .map_err(|e| anyhow::anyhow!("{}: {}", e.field, e.message))?;
                let view = offline(&data, |rt| async move {
                    rt.set_acme_settings(settings, &Actor::default()).await.map_err(|e| match e {
                        portcullis::runtime::ApplyError::Invalid(v) => {
                            anyhow::anyhow!("{}: {}", v.field, v.message)
                        }
                        other => apply_error(other),
                    })
                })?;
                file["settings"] = serde_json::to_value(&view.settings)?;
                file["status"] = serde_json::to_value(&view.status)?;
            }
            let settings: portcullis_core::acme::AcmeSettings =
                serde_json::from_value(file["settings"].clone()).unwrap_or_default();
            let view = serde_json::json!({"settings": settings.redacted(), "status": file["status"]});
            println!("{}", serde_json::to_string_pretty(&view)?);
        }
    }
    Ok(())
}

fn time_now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}
