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
    about = "Alt text for the images you already posted to the fediverse"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the web app (and, unless FEDIALT_WORKER=false, a worker).
    Serve,
    /// Run only a worker.
    Worker,
    /// Apply database migrations and exit.
    Migrate,
    /// Create an admin account; the password comes from FEDIALT_ADMIN_PASSWORD or a prompt.
    CreateAdmin {
        #[arg(long)]
        username: String,
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
                tracing::info!(port = app.port(), "fedialt is listening");
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
        let db = Db::connect(&url, 1).await?;
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
            println!("admin {} created; sign in at /login", username.as_str());
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
