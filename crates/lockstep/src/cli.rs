//! Command-line interface.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::{admin, config, demo, serve};

/// Lockstep keeps every session and credential in step with the directory.
#[derive(Debug, Parser)]
#[command(name = "lockstep", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server on the embedded store.
    Serve(ServeArgs),
    /// Walk through directory event → policy → session impact against an
    /// in-process server on a temporary directory, timing each step.
    Demo,
    /// Manage API clients.
    Clients {
        #[command(subcommand)]
        command: ClientsCommand,
    },
    /// Inspect the audit trail.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Manage the generated admin token.
    AdminToken {
        #[command(subcommand)]
        command: AdminTokenCommand,
    },
    /// What a directory change reached: the policy's decision, every session
    /// it revoked, shortened, suspended or re-checked, and what still lives.
    Reach(ReachArgs),
    /// Manage the keys JWT access tokens are signed with.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Import an HR file (CSV with a header, or JSON Lines) into a file
    /// source of a running server. The file is the whole truth of the
    /// source: rows that disappeared since the last import are deactivated.
    /// Exits 3 when the circuit breaker holds the import.
    Import(ImportArgs),
    /// Directory sources of a running server: status and approval of what
    /// a circuit breaker holds.
    Sources {
        #[command(subcommand)]
        command: SourcesCommand,
    },
}

/// Where the server is and how to authenticate to it.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// The server.
    #[arg(long, env = "LOCKSTEP_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// The admin token, or a client secret with the needed scope.
    #[arg(long, env = "LOCKSTEP_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// Arguments of `lockstep import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The file source to import into (a `[[source]]` with kind = "file").
    #[arg(long)]
    pub source: String,
    /// The file: `.csv` (header row: externalId,userName,email,displayName,active[,kind,ownerExternalId])
    /// or `.jsonl` (one object per line with the same keys).
    pub file: PathBuf,
    /// Print the plan (creates, updates, deactivations and the live
    /// sessions each would cut) and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Subcommand)]
enum SourcesCommand {
    /// Each source's mode, state, last sync, staleness, counts and held
    /// changes (needs the audit scope).
    List {
        #[command(flatten)]
        server: ServerArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Apply exactly what the source's circuit breaker holds (needs the
    /// scim scope).
    Approve {
        /// The source's name.
        name: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Start signing with a new key; the old one stays published until the
    /// tokens it signed have expired. A running server picks it up within
    /// seconds.
    Rotate {
        #[command(flatten)]
        data: DataDirArg,
        /// The server's configuration file (for `[tokens] access_token_ttl`,
        /// which decides how long the old key stays published).
        #[arg(long, env = "LOCKSTEP_CONFIG")]
        config: Option<PathBuf>,
    },
    /// List the keys, newest first.
    List {
        #[command(flatten)]
        data: DataDirArg,
    },
}

/// Arguments of `lockstep reach`.
#[derive(Debug, Args)]
pub struct ReachArgs {
    /// The directory event's position (an audit record's `directory_event`).
    pub position: u64,
    /// Read this data directory directly (works while a server runs on it)
    /// instead of asking a server.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// The server to ask.
    #[arg(long, env = "LOCKSTEP_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Its admin token, or a client secret with the `audit` scope.
    #[arg(long, env = "LOCKSTEP_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Settings of `serve`; each is also an environment variable and a key of
/// the TOML config file (flag > environment > file > default).
#[derive(Debug, Args, Clone, Default)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "LOCKSTEP_LISTEN")]
    pub listen: Option<String>,
    /// Data directory holding directory.db and sessions.db [default: ./lockstep-data].
    #[arg(long, env = "LOCKSTEP_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// TOML configuration file.
    #[arg(long, env = "LOCKSTEP_CONFIG")]
    pub config: Option<PathBuf>,
    /// Public base URL used in SCIM `meta.location` [default: from the Host header].
    #[arg(long, env = "LOCKSTEP_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Commit durability: `full` (survives power loss) or `normal` (survives a crash) [default: full].
    #[arg(long, env = "LOCKSTEP_DURABILITY")]
    pub durability: Option<String>,
    /// Largest request body in bytes [default: 1048576].
    #[arg(long, env = "LOCKSTEP_BODY_LIMIT")]
    pub body_limit: Option<usize>,
    /// Session lifetime when a request names none [default: 15m].
    #[arg(long, env = "LOCKSTEP_SESSION_DEFAULT_TTL")]
    pub session_default_ttl: Option<String>,
    /// Longest session lifetime a request may ask for [default: 12h].
    #[arg(long, env = "LOCKSTEP_SESSION_MAX_TTL")]
    pub session_max_ttl: Option<String>,
    /// Log format: `text` or `json` [default: text].
    #[arg(long, env = "LOCKSTEP_LOG_FORMAT")]
    pub log_format: Option<String>,
}

#[derive(Debug, Args)]
struct DataDirArg {
    /// Data directory [default: ./lockstep-data].
    #[arg(long, env = "LOCKSTEP_DATA_DIR", default_value = "./lockstep-data")]
    data_dir: PathBuf,
}

#[derive(Debug, Subcommand)]
enum ClientsCommand {
    /// Create an API client; prints its id and secret once.
    Create {
        /// Label, e.g. `okta-prod`.
        #[arg(long)]
        name: String,
        /// Scope to grant (repeat): scim, sessions, introspect, audit.
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        #[command(flatten)]
        data: DataDirArg,
    },
    /// List API clients (never their secrets).
    List {
        #[command(flatten)]
        data: DataDirArg,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Verify the tamper-evident audit chain; exits 1 on a break.
    Verify {
        #[command(flatten)]
        data: DataDirArg,
    },
}

#[derive(Debug, Subcommand)]
enum AdminTokenCommand {
    /// Generate a new admin token (the old one stops working after a restart
    /// of a running server); prints it once.
    Rotate {
        #[command(flatten)]
        data: DataDirArg,
    },
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => {
            let settings = config::Settings::resolve(&args)?;
            serve::run(settings)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo => demo::run(),
        Command::Clients { command: ClientsCommand::Create { name, scopes, data } } => {
            admin::create_client(&data.data_dir, &name, &scopes)
        }
        Command::Clients { command: ClientsCommand::List { data } } => admin::list_clients(&data.data_dir),
        Command::Audit { command: AuditCommand::Verify { data } } => admin::verify_audit(&data.data_dir),
        Command::AdminToken { command: AdminTokenCommand::Rotate { data } } => {
            admin::rotate_admin_token(&data.data_dir)
        }
        Command::Reach(args) => crate::reach::run(&args),
        Command::Keys { command: KeysCommand::Rotate { data, config } } => {
            let args = ServeArgs { config, ..ServeArgs::default() };
            let settings = config::Settings::resolve(&args)?;
            crate::keys::rotate(&data.data_dir, settings.tokens.access_token_ttl)
        }
        Command::Keys { command: KeysCommand::List { data } } => crate::keys::list(&data.data_dir),
        Command::Import(a) => {
            crate::sources::import(&a.server.url, a.server.token.as_deref(), &a.source, &a.file, a.dry_run)
        }
        Command::Sources { command: SourcesCommand::List { server, json } } => {
            crate::sources::list(&server.url, server.token.as_deref(), json)
        }
        Command::Sources { command: SourcesCommand::Approve { name, server } } => {
            crate::sources::approve(&server.url, server.token.as_deref(), &name)
        }
    }
}
