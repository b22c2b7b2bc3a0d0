//! Berth, the self-hosted container platform: the `berth` binary's library.
//! Modules follow ARCHITECTURE.md: `config`, `store`, `auth`, `platform` (the services behind
//! the portal and API), `http`, and `application` (wiring).

pub mod application;
pub mod auth;
pub mod backups;
pub mod builds;
pub mod cli;
pub mod config;
pub mod http;
pub mod ingress;
pub mod jobs;
pub mod metrics;
pub mod orchestrator;
pub mod platform;
pub mod runtime;
pub mod secrets;
pub mod store;
pub mod telemetry;
pub mod webhooks;

pub use application::Application;
