//! The command line: `berth serve` (the default) and `berth user create|reset-password|list`.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand, ValueEnum};

use crate::{
    auth::password::{generate_password, hash_password},
    config::Config,
    store::{NewUser, Store, StoreError},
};

/// Berth: a self-hosted container platform.
///
/// Configuration comes from defaults, then berth.toml (or --config), then BERTH_* environment
/// variables (nested keys with `__`, e.g. BERTH_OIDC__CLIENT_ID; any key with a _FILE suffix
/// is read from that file).
#[derive(Debug, Parser)]
#[command(name = "berth", version, about)]
pub struct Cli {
    /// Configuration file (TOML). Default: ./berth.toml when it exists.
    #[arg(long, global = true, env = "BERTH_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run Berth: portal and API on `listen` (default 127.0.0.1:8080) with the roles configured.
    /// On first start with an empty database it creates the first admin and prints a one-time
    /// password.
    Serve,
    /// Manage user accounts.
    #[command(subcommand)]
    User(UserCommand),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RoleArg {
    Admin,
    Customer,
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user with a generated one-time password (printed once).
    Create {
        #[arg(long)]
        email: String,
        /// Display name. Default: the part of the email before '@'.
        #[arg(long)]
        name: Option<String>,
        #[arg(long, value_enum, default_value = "customer")]
        role: RoleArg,
    },
    /// Replace a user's password with a generated one-time password (printed once) and sign
    /// them out everywhere.
    ResetPassword {
        #[arg(long)]
        email: String,
    },
    /// List users.
    List,
}

/// Runs a `user` subcommand against the configured database.
///
/// # Errors
/// Invalid email, unknown user, store failures.
pub async fn run_user_command(config: &Config, cmd: UserCommand) -> anyhow::Result<()> {
    if config.database_url().starts_with("sqlite:") {
        std::fs::create_dir_all(&config.data_dir)?;
    }
    let store = Store::connect(&config.database_url(), 2)
        .await
        .context("cannot open the database")?;
    match cmd {
        UserCommand::Create { email, name, role } => {
            let email = app::model::normalize_email(&email);
            app::model::validate_email(&email).map_err(|e| anyhow::anyhow!(e.message))?;
            let password = generate_password();
            let name = name.unwrap_or_else(|| email.split('@').next().unwrap_or("").to_owned());
            let role = match role {
                RoleArg::Admin => "admin",
                RoleArg::Customer => "customer",
            };
            let created = store
                .users()
                .create(NewUser {
                    email: email.clone(),
                    display_name: name,
                    role: role.into(),
                    password_hash: Some(hash_password(password.clone()).await?),
                    must_change_password: true,
                    oidc_issuer: None,
                    oidc_subject: None,
                })
                .await;
            match created {
                Ok(_) => {}
                Err(StoreError::Conflict(_)) => bail!("a user with email {email} exists already"),
                Err(e) => return Err(e.into()),
            }
            println!("created {role} {email}");
            println!("one-time password: {password}");
        }
        UserCommand::ResetPassword { email } => {
            let email = app::model::normalize_email(&email);
            let Some(user) = store.users().by_email(&email).await? else {
                bail!("no user with email {email}");
            };
            let password = generate_password();
            store
                .users()
                .set_password(&user.id, &hash_password(password.clone()).await?, true)
                .await?;
            let n = store.sessions().delete_for_user(&user.id).await?;
            println!("password of {email} reset; {n} session(s) signed out");
            println!("one-time password: {password}");
        }
        UserCommand::List => {
            println!("{:<36}  {:<9}  EMAIL", "ID", "ROLE");
            for u in store.users().list().await? {
                println!("{:<36}  {:<9}  {}", u.id, u.role, u.email);
            }
        }
    }
    store.close().await;
    Ok(())
}
