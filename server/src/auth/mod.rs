//! Authentication: local accounts (argon2id), sessions (tower-sessions in the database),
//! personal API tokens, sign-in rate limiting, and the first admin account.

pub mod bootstrap;
pub mod oidc;
pub mod password;
pub mod rate_limit;
pub mod session;
pub mod token;

pub use rate_limit::FailureLimiter;

/// Whether `a` equals `b`, in time that depends on the length only (for secrets and tokens
/// compared with what a client sent).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
