//! Authentication: local accounts (argon2id), sessions (tower-sessions in the database),
//! personal API tokens, sign-in rate limiting, and the first admin account.

pub mod bootstrap;
pub mod oidc;
pub mod password;
pub mod rate_limit;
pub mod session;
pub mod token;

pub use rate_limit::FailureLimiter;
