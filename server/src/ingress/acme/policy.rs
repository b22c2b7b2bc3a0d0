//! The certificate manager's policy, apart from its I/O: when a certificate is renewed, how
//! long a failed attempt waits, how a failure is classified and how a slot is described.

use crate::store::CertificateRecord;

/// One day, ms.
pub(super) const DAY_MS: i64 = 86_400_000;

/// Why an attempt failed, whether the CA asked to slow down, and whether it only refused a
/// nonce.
pub(super) struct Failure {
    pub(super) message: String,
    pub(super) rate_limited: bool,
    /// `urn:ietf:params:acme:error:badNonce` still came back after instant-acme's own three
    /// tries of one request. RFC 8555 §6.5 has the client simply try again, so the order is
    /// placed again at once ([`BAD_NONCE_ORDERS`]) rather than waiting for the next retry.
    pub(super) bad_nonce: bool,
}

/// How many orders one pass places for a hostname while the CA keeps answering `badNonce`.
pub(super) const BAD_NONCE_ORDERS: usize = 3;

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Self {
        let message = e.to_string();
        Self {
            rate_limited: message.contains("rateLimited"),
            bad_nonce: message.contains("urn:ietf:params:acme:error:badNonce"),
            message,
        }
    }
}

/// When a certificate valid from `not_before_ms` to `not_after_ms` is renewed:
/// `not_after − min(30 days, lifetime / 3)`.
pub fn renew_at(not_before_ms: i64, not_after_ms: i64) -> i64 {
    let lifetime = (not_after_ms - not_before_ms).max(0);
    not_after_ms - (30 * DAY_MS).min(lifetime / 3)
}

/// Delay before the next attempt after `attempts` earlier failures: 1 min doubling up to
/// 6 h; at least 1 h when the CA answered `rateLimited` (RFC 8555 §6.7).
pub fn retry_delay_ms(attempts: i64, rate_limited: bool) -> i64 {
    let exponential = 60_000_i64.saturating_mul(1 << attempts.clamp(0, 20));
    let delay = exponential.min(6 * 3_600_000);
    if rate_limited {
        delay.max(3_600_000)
    } else {
        delay
    }
}

/// A certificate slot as the portal shows it.
pub fn describe(slot: &CertificateRecord, now_ms: i64) -> &'static str {
    match (&slot.cert_pem, slot.not_after_ms) {
        (Some(_), Some(t)) if t <= now_ms => "expired",
        (Some(_), _) if !slot.last_error.is_empty() => "renewal_failing",
        (Some(_), _) => "issued",
        (None, _) if !slot.last_error.is_empty() => "failed",
        (None, _) => "pending",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_is_thirty_days_before_expiry_or_a_third_of_a_short_lifetime() {
        assert_eq!(renew_at(0, 90 * DAY_MS), 60 * DAY_MS);
        assert_eq!(renew_at(0, 6 * DAY_MS), 4 * DAY_MS);
    }

    #[test]
    fn a_refused_nonce_and_a_rate_limit_are_told_apart() {
        let f = Failure::from(
            "API error: JWS has an invalid anti-replay nonce: x (urn:ietf:params:acme:error:badNonce)",
        );
        assert!(f.bad_nonce && !f.rate_limited);
        let f = Failure::from("API error: too many (urn:ietf:params:acme:error:rateLimited)");
        assert!(f.rate_limited && !f.bad_nonce);
    }

    #[test]
    fn retries_back_off_and_respect_rate_limits() {
        assert_eq!(retry_delay_ms(0, false), 60_000);
        assert_eq!(retry_delay_ms(1, false), 120_000);
        assert_eq!(retry_delay_ms(30, false), 6 * 3_600_000);
        assert_eq!(retry_delay_ms(0, true), 3_600_000);
    }
}
