//! `berth`: parse the command line and configuration, initialise logging, then serve or run
//! a management command.

use berth::{
    application::{raise_open_files_limit, shutdown_signal, Application},
    cli::{Cli, Command},
    config::Config,
    telemetry,
};
use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("berth: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    telemetry::init(config.log_format);
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(config).await,
        Command::User(cmd) => berth::cli::run_user_command(&config, cmd).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "berth stopped with an error");
            eprintln!("berth: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let roles: Vec<_> = config
        .roles
        .iter()
        .map(|r| format!("{r:?}").to_lowercase())
        .collect();
    match raise_open_files_limit() {
        Ok(limit) => tracing::debug!(?limit, "open files limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open files limit"),
    }
    let app = Application::build(config).await?;
    if let Some(admin) = &app.first_admin {
        // Printed once, on the start that created the account; never logged.
        println!();
        println!("  Berth created the first administrator account:");
        println!("    email:              {}", admin.email);
        println!("    one-time password:  {}", admin.password);
        println!("  You will be asked to choose a new password after signing in.");
        println!();
    }
    tracing::info!(listen = %app.local_addr(), roles = roles.join(","), "Berth is serving");
    println!("Berth portal: http://{}", app.local_addr());
    app.run_until_stopped(shutdown_signal()).await
}
