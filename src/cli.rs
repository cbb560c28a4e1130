//! The command line: serve (the default), worker, migrate, create-admin.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::Config;
use crate::domain::{Email, NewPassword, Username};
use crate::startup::Application;
use crate::store::{self, users::NewUser, Db};

#[derive(Parser, Debug)]
#[command(
    name = "fedialt",
    version,
    about = "Alt text for the images you already posted to the fediverse",
    after_help = "With no command, fedialt runs `serve`: the web app at http://127.0.0.1:8080 \
                  (FEDIALT_BIND), on an SQLite file in ./data, using Redis at 127.0.0.1:6379 when \
                  it is running.\n\nConfiguration comes from environment variables or a .env file \
                  in the current folder; the README's Configuration section lists them all."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the web app (and, unless FEDIALT_WORKER=false, a worker); the default command.
    Serve,
    /// Run only a worker.
    Worker,
    /// Apply database migrations and exit.
    Migrate,
    /// Create an administrator account; the password comes from FEDIALT_ADMIN_PASSWORD or a prompt.
    #[command(
        after_help = "The password must be at least 12 characters long. It is read from \
                            FEDIALT_ADMIN_PASSWORD when set, else asked for twice in the terminal.\n\n\
                            Exit codes: 0 created; 1 the username is taken (or the database failed); \
                            2 a bad username, e-mail or password, or no password and no terminal to \
                            ask in."
    )]
    CreateAdmin {
        /// The name to sign in with: 2 to 40 letters, digits, '.', '_' or '-' (stored lowercase).
        #[arg(long)]
        username: String,
        /// The administrator's e-mail address, such as you@example.org.
        #[arg(long)]
        email: String,
    },
}

pub async fn run(cli: Cli, config: Config) -> ExitCode {
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(config, true).await,
        Command::Worker => serve(config, false).await,
        Command::Migrate => match store::migrate::run_pending(&prepare_database(&config)).await {
            Ok(n) => {
                println!("migrations applied: {n}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("error: {error}");
                ExitCode::FAILURE
            }
        },
        Command::CreateAdmin { username, email } => create_admin(config, &username, &email).await,
    }
}

/// The database URL, with the SQLite data dir made if needed.
fn prepare_database(config: &Config) -> String {
    let url = config.effective_database_url();
    if config.database_url.is_none() {
        let _ = crate::data_dir::prepare(&config.data_dir);
        if let Err(error) = crate::data_dir::private_sqlite(std::path::Path::new(&url)) {
            tracing::warn!(error = %error, "the SQLite file could not be made private");
        }
    }
    url
}

async fn serve(config: Config, web: bool) -> ExitCode {
    let result = if web {
        match Application::build(config).await {
            Ok(app) => {
                announce(&app).await;
                app.run_until_stopped().await.map_err(anyhow::Error::new)
            }
            Err(error) => Err(error),
        }
    } else {
        crate::startup::run_worker(config).await
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Says where to open fedialt and, on a fresh install, what to do first.
async fn announce(app: &Application) {
    let state = app.state();
    let url = state
        .config
        .public_url
        .as_str()
        .trim_end_matches('/')
        .to_owned();
    tracing::info!(url = %url, "fedialt is ready: open {url}");
    let no_users = match state.db.conn().await {
        Ok(mut conn) => store::users::count(&mut conn).await.ok() == Some(0),
        Err(_) => false,
    };
    if no_users {
        tracing::info!(
            "no user yet: create the first administrator with `cargo run -- create-admin --username admin \
             --email you@example.org` (or `fedialt create-admin …` with the built binary), then sign in \
             at {url}/login"
        );
    }
}

async fn create_admin(config: Config, username: &str, email: &str) -> ExitCode {
    let username = match Username::parse(username) {
        Ok(u) => u,
        Err(message) => {
            eprintln!("error: --username {message}");
            return ExitCode::from(2);
        }
    };
    let email = match Email::parse(email) {
        Ok(e) => e,
        Err(message) => {
            eprintln!("error: --email {message}");
            return ExitCode::from(2);
        }
    };
    let password = match std::env::var("FEDIALT_ADMIN_PASSWORD") {
        Ok(p) if !p.is_empty() => p,
        _ if std::io::stdin().is_terminal() => match prompt_password() {
            Ok(p) => p,
            Err(message) => {
                eprintln!("error: {message}");
                return ExitCode::from(2);
            }
        },
        _ => {
            eprintln!(
                "error: no password: set FEDIALT_ADMIN_PASSWORD, or run this in a terminal to be asked for one"
            );
            return ExitCode::from(2);
        }
    };
    let password = match NewPassword::parse(&password) {
        Ok(p) => p,
        Err(message) => {
            eprintln!("error: the password {message}");
            return ExitCode::from(2);
        }
    };
    let url = prepare_database(&config);
    if let Err(error) = store::migrate::run_pending(&url).await {
        eprintln!("error: {error}");
        return ExitCode::FAILURE;
    }
    let result = async {
        let db = Db::connect(&url, 1, config.db_timeout).await?;
        let hash = crate::auth::password::hash(password.into_secret())
            .await
            .map_err(|e| store::StoreError::Corrupt(e.to_string()))?;
        let mut conn = db.conn().await?;
        store::users::insert(
            &mut conn,
            &NewUser {
                username: username.as_str(),
                email: email.as_str(),
                password_hash: &hash,
                role: "admin",
                active: true,
                created_at: store::now(),
            },
        )
        .await
    }
    .await;
    match result {
        Ok(_) => {
            println!(
                "Created administrator '{}'. Sign in at {}/login",
                username.as_str(),
                config.public_url.as_str().trim_end_matches('/')
            );
            ExitCode::SUCCESS
        }
        Err(error) if error.is_unique_violation() => {
            eprintln!("error: the username {} is taken", username.as_str());
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

fn prompt_password() -> Result<String, String> {
    let first = rpassword::prompt_password("Password (12 characters or more): ")
        .map_err(|e| format!("could not read the password: {e}"))?;
    let second = rpassword::prompt_password("Password again: ")
        .map_err(|e| format!("could not read the password: {e}"))?;
    if first != second {
        return Err("the two passwords differ".into());
    }
    Ok(first)
}
