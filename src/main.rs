//! The `banditore` command: serve, check-config, migrate, user, token, version, and what
//! operators run beside the service: backup, healthcheck, completions and man.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;

use banditore::app::Application;
use banditore::settings::{self, LogFormat, Problem};

/// mimalloc rather than the system's allocator: a fan-out builds and drops a message per
/// recipient on every core, where glibc's malloc spent a quarter of the process's time
/// (BENCHMARKS.md, "Near the mail server's ceiling").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_arena_eager_commit` and `mi_option_purge_delay` (its C header's
/// `mi_option_e`, version 3).
const MI_OPTION_ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn main() -> ExitCode {
    // Arenas committed on demand, and memory given back as soon as it is free: with mimalloc's
    // defaults the memory touched while starting up stays resident (an idle service at 55 MiB
    // instead of 41–46). Defaults only: an operator's MIMALLOC_* variables still win.
    for option in [MI_OPTION_ARENA_EAGER_COMMIT, MI_OPTION_PURGE_DELAY] {
        // SAFETY: sets a process-wide default before any thread is started; a plain value.
        unsafe { libmimalloc_sys::mi_option_set_default(option, 0) };
    }
    run()
}

#[derive(Parser)]
#[command(
    name = "banditore",
    version,
    about = "Incident notification broadcaster",
    after_long_help = "Exit status: 0 on success, 2 when the configuration has problems, 1 on any \
                       other failure. Documentation: the book in docs/ (docs/src/reference/\
                       command-line.md)."
)]
struct Cli {
    /// Deployment configuration, layered over the built-in defaults.
    #[arg(long, short, global = true, env = "BANDITORE_CONFIG")]
    config: Option<PathBuf>,
    /// Log format; overrides `log.format`.
    #[arg(long, global = true, value_enum)]
    log_format: Option<Format>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service.
    Serve,
    /// Validate the configuration and templates; print every problem; exit 2 if any.
    CheckConfig,
    /// Apply database migrations and exit.
    Migrate,
    /// Manage the people who use the web console.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage the API tokens kept in the store (those of the configuration are listed too).
    #[command(subcommand)]
    Token(TokenCommand),
    /// Print the signing secret (`whsec_…`) a webhook address's receiver verifies signatures
    /// with. It is derived from the deployment's key, never stored; showing it is audited.
    WebhookSecret {
        /// The address as saved: `https://…`, or with its preset, `slack+https://…`.
        address: String,
    },
    /// Print the version.
    Version,
    /// Copy the SQLite store to FILE, consistent while the service runs; FILE must not exist.
    Backup {
        /// Where to write the copy (a new file).
        file: PathBuf,
    },
    /// Ask the running service's /readyz; exit 0 when it answers 200 (for container health
    /// checks, where no HTTP client is installed).
    Healthcheck {
        /// host:port to ask instead of server.listen (an unspecified address means this host).
        #[arg(long)]
        address: Option<String>,
    },
    /// Print the completion script for a shell.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), as `man -l -` reads it.
    Man,
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user; the password is read from standard input (one line, 12+ characters).
    Add {
        username: String,
        /// admin, communicator, operator or viewer; repeat or separate with commas.
        #[arg(long = "role", required = true, value_delimiter = ',')]
        roles: Vec<String>,
    },
    /// Set a user's password (from standard input) and roles; their sessions end.
    Set {
        username: String,
        #[arg(long = "role", required = true, value_delimiter = ',')]
        roles: Vec<String>,
    },
    /// List the users and their roles.
    List,
    /// Forgive the failed console logins made so far under a user's name, on every replica at
    /// once (a client address's own count still runs its course).
    Unlock { username: String },
}

/// Every user and token command works while the service runs, on SQLite too.
#[derive(Subcommand)]
enum TokenCommand {
    /// Create a token and print its secret, once.
    Create {
        /// 1–64 ASCII letters, digits, `.`, `_` or `-`; not a configured token's name.
        #[arg(long)]
        name: String,
        /// ingest, viewer, operator, communicator or admin; repeat or separate with commas.
        #[arg(long = "role", required = true, value_delimiter = ',')]
        roles: Vec<String>,
    },
    /// List the tokens: name, roles, where from (config or store), created, revoked.
    List,
    /// Revoke a stored token: it stops working within 5 seconds on every replica.
    Revoke { name: String },
}

const EXIT_CONFIG: u8 = 2;

fn print_problems(problems: &[Problem]) {
    eprintln!("configuration has {} problem(s):", problems.len());
    for p in problems {
        eprintln!("  {p}");
    }
}

fn run() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "banditore",
                &mut std::io::stdout(),
            );
            ExitCode::SUCCESS
        }
        Command::Man => {
            match clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: cannot write the manual page: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Backup { ref file } => {
            outside_the_service(cli.config.as_deref(), |settings| backup(settings, file))
        }
        Command::Healthcheck { ref address } => {
            outside_the_service(cli.config.as_deref(), |settings| {
                healthcheck(settings, address.as_deref())
            })
        }
        Command::Version => {
            println!("banditore {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::CheckConfig => match settings::load_and_validate(
            cli.config.as_deref(),
            &banditore::channel::sections(),
        ) {
            Ok(v) => {
                for w in &v.warnings {
                    eprintln!("warning: {w}");
                }
                println!(
                    "configuration OK: {} token(s), {} subscriber(s) from config, email {}",
                    v.tokens.len(),
                    v.subscribers.len(),
                    if v.settings.channels.email.enabled {
                        "enabled"
                    } else {
                        "disabled"
                    }
                );
                ExitCode::SUCCESS
            }
            Err(problems) => {
                print_problems(&problems);
                ExitCode::from(EXIT_CONFIG)
            }
        },
        Command::Serve
        | Command::Migrate
        | Command::User(_)
        | Command::Token(_)
        | Command::WebhookSecret { .. } => {
            let validated = match settings::load_and_validate(
                cli.config.as_deref(),
                &banditore::channel::sections(),
            ) {
                Ok(v) => v,
                Err(problems) => {
                    print_problems(&problems);
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            // The repository's example secrets are public: a service started on them would take
            // anyone's signals and API calls.
            if matches!(cli.command, Command::Serve)
                && !validated.settings.example_secrets.is_empty()
            {
                print_problems(&validated.settings.example_secrets);
                eprintln!("the example secrets are public: give the service secrets of its own");
                return ExitCode::from(EXIT_CONFIG);
            }
            let format = match cli.log_format {
                Some(Format::Json) => LogFormat::Json,
                Some(Format::Text) => LogFormat::Text,
                None => validated.settings.log.format,
            };
            banditore::telemetry::init_logging(format, &validated.settings.log.level);
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let result = match cli.command {
                Command::Serve => runtime.block_on(serve(validated, cli.config.as_deref())),
                Command::User(cmd) => runtime.block_on(user(validated, cmd)),
                Command::Token(cmd) => runtime.block_on(token(validated, cmd)),
                Command::WebhookSecret { address } => {
                    runtime.block_on(webhook_secret(validated, &address))
                }
                _ => runtime.block_on(migrate(validated)),
            };
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = format!("{e:#}"), "stopped on error");
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

async fn serve(validated: settings::Validated, config: Option<&Path>) -> anyhow::Result<()> {
    for w in &validated.warnings {
        tracing::warn!(key = %w.path, "{}", w.message);
    }
    let mut app = Application::build(validated).await?;
    if let Some(first_run) = app.take_first_run() {
        show_first_run(&first_run, config);
    }
    let shutdown = CancellationToken::new();
    tokio::spawn(watch_signals(shutdown.clone()));
    app.run(shutdown).await
}

/// Shows the first start's tokens once, never through the log (which may be kept or shipped).
/// On a terminal or a plain pipe they go to standard output. Under systemd, whose output is the
/// journal ([`output_is_journal`]), they go to a file only the service's user can read, in its
/// state folder (`STATE_DIRECTORY`), and the log says where; without a state folder they are not
/// shown at all, and the log says how to make a token instead.
fn show_first_run(first: &banditore::tokens::FirstRun, config: Option<&Path>) {
    use std::io::Write as _;
    let journal = output_is_journal();
    let mut command = String::new();
    if let Some(user) = std::env::var("USER")
        .ok()
        .filter(|u| journal && !u.is_empty() && u != "root")
    {
        command.push_str(&format!("sudo -u {user} "));
    }
    command.push_str("banditore");
    if let Some(config) = config {
        let config = std::path::absolute(config).unwrap_or_else(|_| config.to_owned());
        command.push_str(&format!(" --config {}", config.display()));
    }
    let message = banditore::tokens::first_run_message(first, &command);
    if !journal {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(message.as_bytes());
        let _ = out.flush();
        return;
    }
    let folder = std::env::var_os("STATE_DIRECTORY")
        .and_then(|dirs| std::env::split_paths(&dirs).next())
        .filter(|d| !d.as_os_str().is_empty());
    let Some(folder) = folder else {
        tracing::warn!(
            "first start: two API tokens were made but are not shown, since standard output is \
             the journal and there is no state folder to write them to; revoke them with \
             `{command} token revoke admin` and `… ingest`, and make your own with \
             `{command} token create --name NAME --role ROLE`"
        );
        return;
    };
    let path = folder.join("first-start-tokens.txt");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options
        .open(&path)
        .and_then(|mut f| f.write_all(message.as_bytes()).and_then(|()| f.sync_all()))
    {
        Ok(()) => tracing::warn!(
            file = %path.display(),
            "first start: two API tokens were made and written to this file, readable by the \
             service's user only; read it, keep the tokens safe, then delete it"
        ),
        Err(e) => tracing::error!(
            file = %path.display(),
            error = %e,
            "first start: cannot write the two API tokens made; revoke them with \
             `{command} token revoke admin` and `… ingest`, and make your own with \
             `{command} token create --name NAME --role ROLE`"
        ),
    }
}

/// Whether this process runs with the journal as its output: systemd names the journal's stream
/// in `JOURNAL_STREAM` as `device:inode` when standard output or standard error is connected to
/// it, and the variable is inherited by everything a service starts, so it counts only when it
/// names one of this process's own streams. Standard output may then be the journal, or a file
/// or nothing: either way no place to show a secret.
#[cfg(unix)]
fn output_is_journal() -> bool {
    let Some((dev, ino)) = std::env::var("JOURNAL_STREAM").ok().and_then(|v| {
        let (dev, ino) = v.split_once(':')?;
        Some((dev.parse::<u64>().ok()?, ino.parse::<u64>().ok()?))
    }) else {
        return false;
    };
    [libc::STDOUT_FILENO, libc::STDERR_FILENO]
        .into_iter()
        .any(|fd| {
            // SAFETY: fstat writes into the zeroed struct it is given and reads nothing else.
            let mut stat: libc::stat = unsafe { std::mem::zeroed() };
            if unsafe { libc::fstat(fd, &mut stat) } != 0 {
                return false;
            }
            #[allow(clippy::unnecessary_cast)]
            let same = stat.st_dev as u64 == dev && stat.st_ino as u64 == ino;
            same
        })
}

#[cfg(not(unix))]
fn output_is_journal() -> bool {
    false
}

async fn migrate(validated: settings::Validated) -> anyhow::Result<()> {
    let store =
        banditore::store::open(&validated.settings.store, validated.store_password.as_ref())
            .await
            .context("opening the store")?;
    store.migrate().await.context("migrating")?;
    store.close().await;
    println!(
        "migrations applied to {}",
        settings::redact_url(&validated.settings.store.url)
    );
    Ok(())
}

async fn user(validated: settings::Validated, cmd: UserCommand) -> anyhow::Result<()> {
    use banditore::users::{check_password, check_roles, check_username, hash_password};
    let store = banditore::store::open_for_administration(
        &validated.settings.store,
        validated.store_password.as_ref(),
    )
    .await
    .context("opening the store")?;
    let parse_roles = |raw: &[String]| -> anyhow::Result<Vec<settings::Role>> {
        let roles = raw
            .iter()
            .map(|r| r.trim().to_ascii_lowercase().parse::<settings::Role>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(anyhow::Error::msg)?;
        check_roles(&roles)?;
        Ok(roles)
    };
    let read_password = || -> anyhow::Result<String> {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .context("reading the password from standard input")?;
        Ok(line.trim_end_matches(['\r', '\n']).to_owned())
    };
    let result = match cmd {
        UserCommand::Add { username, roles } => {
            check_username(&username)?;
            let roles = parse_roles(&roles)?;
            if let Some(other) = store
                .users()
                .await?
                .into_iter()
                .find(|u| u.username.eq_ignore_ascii_case(&username))
            {
                anyhow::bail!(
                    "user {} exists: names differing only in case would pass for each other",
                    other.username
                );
            }
            let password = read_password()?;
            check_password(&password, &username)?;
            let hash = hash_password(&password)?;
            let names: Vec<String> = roles.iter().map(|r| r.as_str().to_owned()).collect();
            if store
                .create_user(&username, &hash, &names, jiff::Timestamp::now())
                .await?
            {
                audit(
                    &*store,
                    "user.created",
                    serde_json::json!({"username": username, "roles": names}),
                )
                .await;
                println!("user {username} created ({})", names.join(", "));
                Ok(())
            } else {
                Err(anyhow::anyhow!(
                    "user {username} exists: use `banditore user set`"
                ))
            }
        }
        UserCommand::Set { username, roles } => {
            let roles = parse_roles(&roles)?;
            let password = read_password()?;
            check_password(&password, &username)?;
            let hash = hash_password(&password)?;
            let names: Vec<String> = roles.iter().map(|r| r.as_str().to_owned()).collect();
            if store.update_user(&username, &hash, &names).await? {
                audit(
                    &*store,
                    "user.changed",
                    serde_json::json!({"username": username, "roles": names, "password": true}),
                )
                .await;
                println!(
                    "user {username} updated ({}); their sessions ended",
                    names.join(", ")
                );
                Ok(())
            } else {
                Err(anyhow::anyhow!("no user {username}"))
            }
        }
        UserCommand::Unlock { username } => {
            if store.unlock_user(&username, jiff::Timestamp::now()).await? {
                audit(
                    &*store,
                    "user.unlocked",
                    serde_json::json!({"username": username}),
                )
                .await;
                println!("user {username} unlocked: earlier failed logins no longer count");
                Ok(())
            } else {
                Err(anyhow::anyhow!("no user {username}"))
            }
        }
        UserCommand::List => {
            for u in store.users().await? {
                let state = if u.disabled { " (disabled)" } else { "" };
                println!("{}\t{}{state}", u.username, u.roles.join(","));
            }
            Ok(())
        }
    };
    store.close().await;
    result
}

/// Writes what an administrator did from the command line in the audit log; a failure is
/// reported, the action stands.
async fn audit(
    store: &dyn banditore::store::Store,
    action: &'static str,
    detail: serde_json::Value,
) {
    let entry = banditore::store::NewAudit {
        actor: cli_actor(),
        action,
        incident_id: None,
        draft_id: None,
        detail,
        at: jiff::Timestamp::now(),
    };
    if let Err(e) = store.record_audit(&entry).await {
        eprintln!("warning: cannot write the audit log: {e}");
    }
}

/// Who acts from the command line, in the store and the audit log.
fn cli_actor() -> String {
    let who = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    format!("command line ({who})")
}

/// Prints a webhook address's signing secret, under the key the service signs with.
async fn webhook_secret(validated: settings::Validated, address: &str) -> anyhow::Result<()> {
    let rules = &validated.subscriber_rules.webhook;
    // A mistyped address is told before the store is opened.
    banditore::domain::subscriber::WebhookAddress::parse(address, rules)
        .map_err(anyhow::Error::msg)?;
    // A secret from another store's key, or from one made up now, verifies nothing: this command
    // never makes a store or a key, as the service does at its first start.
    let elsewhere = "run this command with the configuration the service runs with (--config)";
    let url = &validated.settings.store.url;
    if let Some(path) = url.strip_prefix("sqlite://")
        && !banditore::store::sqlite::database_path(url)?.exists()
    {
        anyhow::bail!("there is no store at {path}: {elsewhere}");
    }
    let store = banditore::store::open_for_administration(
        &validated.settings.store,
        validated.store_password.as_ref(),
    )
    .await
    .context("opening the store")?;
    let key = match &validated.secret_key {
        Some(configured) => configured.expose().to_owned(),
        None => match store.setting("unsubscribe_key").await? {
            Some(key) => key,
            None => {
                store.close().await;
                anyhow::bail!(
                    "the store has no key yet (the service makes it at its first start): {elsewhere}"
                );
            }
        },
    };
    let secret = banditore::channel::webhook::secret_for(key.as_bytes(), address, rules)
        .map_err(anyhow::Error::msg)?;
    let host = url::Url::parse(address.split_once('+').map_or(address, |(_, u)| u))
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned));
    audit(
        &*store,
        "webhook.secret_shown",
        serde_json::json!({ "host": host }),
    )
    .await;
    store.close().await;
    println!("{secret}");
    Ok(())
}

async fn token(validated: settings::Validated, cmd: TokenCommand) -> anyhow::Result<()> {
    use banditore::tokens;
    let store = banditore::store::open_for_administration(
        &validated.settings.store,
        validated.store_password.as_ref(),
    )
    .await
    .context("opening the store")?;
    let configured = |name: &str| validated.tokens.iter().any(|t| t.name == name);
    let result = match cmd {
        TokenCommand::Create { name, roles } => {
            tokens::check_name(&name)?;
            let roles = tokens::parse_roles(&roles)?;
            if configured(&name) {
                anyhow::bail!(tokens::TokenError::ConfigName(name));
            }
            let issued = tokens::issue(&name, &roles, &cli_actor());
            if store
                .create_token(&issued.token, jiff::Timestamp::now())
                .await?
            {
                audit(
                    &*store,
                    "token.created",
                    serde_json::json!({"name": name, "roles": issued.token.roles}),
                )
                .await;
                eprintln!(
                    "token {name} created ({}); it works within {} s on every replica. \
                     Its secret, shown only now:",
                    issued.token.roles.join(", "),
                    banditore::web::RELOAD_EVERY.as_secs()
                );
                println!("{}", issued.secret);
                Ok(())
            } else {
                Err(anyhow::anyhow!(
                    "a live token is named {name}: revoke it first, or choose another name"
                ))
            }
        }
        TokenCommand::List => {
            println!("NAME\tROLES\tFROM\tCREATED\tBY\tLAST USED\tREVOKED");
            for t in &validated.tokens {
                let roles: Vec<&str> = t.roles.iter().map(|r| r.as_str()).collect();
                println!("{}\t{}\tconfig\t-\t-\t-\t-", t.name, roles.join(","));
            }
            let stamp = |t: Option<jiff::Timestamp>| t.map_or("-".to_owned(), |t| t.to_string());
            for t in store.tokens().await? {
                let revoked = match (&t.revoked_at, &t.revoked_by) {
                    (Some(at), by) => format!("{at} by {}", by.as_deref().unwrap_or("?")),
                    _ => "-".to_owned(),
                };
                println!(
                    "{}\t{}\tstore\t{}\t{}\t{}\t{revoked}",
                    t.name,
                    t.roles.join(","),
                    t.created_at,
                    t.created_by,
                    stamp(t.last_used_at),
                );
            }
            Ok(())
        }
        TokenCommand::Revoke { name } => {
            if configured(&name) {
                Err(anyhow::anyhow!(
                    "{name} is a token of the configuration: remove it there and restart"
                ))
            } else if store
                .revoke_token(&name, &cli_actor(), jiff::Timestamp::now())
                .await?
            {
                audit(&*store, "token.revoked", serde_json::json!({"name": name})).await;
                println!(
                    "token {name} revoked: refused within {} s on every replica",
                    banditore::web::RELOAD_EVERY.as_secs()
                );
                Ok(())
            } else {
                Err(anyhow::anyhow!("no live token named {name}"))
            }
        }
    };
    store.close().await;
    result
}

/// SIGTERM or SIGINT starts a graceful shutdown; a second one exits at once.
async fn watch_signals(shutdown: CancellationToken) {
    #[cfg(unix)]
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM");
            return;
        }
    };
    for round in 0..2 {
        #[cfg(unix)]
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        if round == 0 {
            tracing::info!(
                "shutdown requested: finishing in-flight work (signal again to exit at once)"
            );
            shutdown.cancel();
        } else {
            tracing::warn!("second signal: exiting now");
            std::process::exit(130);
        }
    }
}

/// Runs a command that needs only the configuration's types, not its secrets or templates: an
/// operator's shell lacks the service's environment, and a backup must not depend on it.
fn outside_the_service(
    file: Option<&std::path::Path>,
    command: impl FnOnce(&settings::Settings) -> anyhow::Result<String>,
) -> ExitCode {
    let (loaded, problems) = settings::load(file);
    let Some(loaded) = loaded.filter(|_| problems.is_empty()) else {
        print_problems(&problems);
        return ExitCode::from(EXIT_CONFIG);
    };
    match command(&loaded) {
        Ok(said) => {
            println!("{said}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn backup(settings: &settings::Settings, file: &std::path::Path) -> anyhow::Result<String> {
    let store = &settings.store;
    if !store.is_sqlite() {
        anyhow::bail!(
            "the store is PostgreSQL ({}): back it up with pg_dump, or the server's base backups \
             and WAL archive (see the Backups page of the documentation)",
            settings::redact_url(&store.url)
        );
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let report = runtime.block_on(banditore::store::backup_sqlite(&store.url, file))?;
    Ok(format!(
        "backup of {} written to {}: {} bytes, {} incident(s), integrity checked",
        report.source.display(),
        file.display(),
        report.bytes,
        report.incidents
    ))
}

/// `GET /readyz` over plain HTTP/1.1 with a deadline, with nothing but the standard library.
fn healthcheck(settings: &settings::Settings, address: Option<&str>) -> anyhow::Result<String> {
    use std::io::{Read, Write};
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
    const DEADLINE: std::time::Duration = std::time::Duration::from_secs(5);
    let mut target: SocketAddr = match address {
        Some(a) => a
            .to_socket_addrs()
            .with_context(|| format!("`{a}` is not host:port"))?
            .next()
            .with_context(|| format!("`{a}` resolves to no address"))?,
        None => settings.server.listen,
    };
    if target.ip().is_unspecified() {
        target.set_ip(match target.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        });
    }
    let mut stream = std::net::TcpStream::connect_timeout(&target, DEADLINE)
        .with_context(|| format!("cannot connect to {target}"))?;
    stream.set_read_timeout(Some(DEADLINE))?;
    stream.set_write_timeout(Some(DEADLINE))?;
    write!(
        stream,
        "GET /readyz HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = Vec::new();
    stream
        .take(64 * 1024)
        .read_to_end(&mut answer)
        .with_context(|| format!("no answer from {target} within {DEADLINE:?}"))?;
    let answer = String::from_utf8_lossy(&answer);
    let status = answer.lines().next().unwrap_or_default();
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default().trim();
    if status.split(' ').nth(1) == Some("200") {
        Ok(format!("ready: http://{target}/readyz answered {status}"))
    } else {
        anyhow::bail!("not ready: http://{target}/readyz answered {status:?} {body}")
    }
}
