//! Bearer tokens as clients send them, through `JwtValidator::validate` and `explain` (the
//! report of `auth check`), against an own issuer (RS256, inline JWKS, sessions) and two
//! custom JWT providers with `data:` JWKS (EdDSA with an audience, ES256 without).
//!
//! The input is the token text. The seeds are real tokens signed with the fixed keys of
//! `conflux_fuzz::jwt`, valid at the validator's pinned clock, so mutations start from
//! tokens that pass every check and explore each way of failing one.
//!
//! Beyond "no panic":
//! - `validate` and `explain` agree: same acceptance, same identity, same error code;
//! - a report's steps are all passed except possibly the last, which failed exactly when
//!   the token was rejected; the report prints;
//! - an accepted token names a configured issuer in `iss`, has an `exp` not past the
//!   leeway, a non-empty `sub`, and `tokenIdentifier` is `iss|sub`;
//! - a rejected token is never an internal error.

#![no_main]

use conflux_auth::StepOutcome;
use conflux_common::{ErrorCode, UserIdentity};
use conflux_fuzz::jwt::{self, CUSTOM_ISSUER, ES_ISSUER, NOW_SECS, OWN_ISSUER};
use conflux_fuzz::{block_on, text};
use libfuzzer_sys::fuzz_target;

fn check_accepted(identity: &UserIdentity) {
    let issuer = identity.issuer.trim_end_matches('/');
    assert!(
        [OWN_ISSUER, CUSTOM_ISSUER, ES_ISSUER].contains(&issuer),
        "accepted a token of an unconfigured issuer: {issuer}"
    );
    assert!(!identity.subject.is_empty(), "accepted an empty `sub`");
    assert_eq!(
        identity.token_identifier,
        format!("{}|{}", identity.issuer, identity.subject)
    );
    let exp = identity.expires_at_secs.unwrap_or(0);
    assert!(
        exp + jwt::leeway().as_secs() >= NOW_SECS,
        "accepted a token that expired at {exp}"
    );
}

fuzz_target!(|data: &[u8]| {
    let token = text(data);
    let validator = jwt::validator();
    let validated = block_on(validator.validate(&token));
    let report = block_on(validator.explain(&token));
    let printed = report.to_string();
    if conflux_fuzz::verbose() {
        eprintln!("{printed}");
    }

    match (&validated, &report.outcome) {
        (Ok(identity), Ok(explained)) => {
            assert_eq!(identity, explained, "validate and explain disagree");
            check_accepted(identity);
            assert!(report.failed_step().is_none());
            assert!(report
                .steps
                .iter()
                .all(|s| s.outcome == StepOutcome::Passed));
        }
        (Err(err), Err(explained)) => {
            assert_eq!(
                err.code(),
                explained.code(),
                "validate and explain disagree"
            );
            assert_ne!(
                err.code(),
                ErrorCode::Internal,
                "a bad token is never internal: {err}"
            );
            let failed = report
                .failed_step()
                .unwrap_or_else(|| panic!("a rejection with no failed step: {err}"));
            assert_eq!(
                Some(failed),
                report.steps.last(),
                "checks ran after the failed one"
            );
        }
        (validated, explained) => {
            panic!("validate says {validated:?} but explain says {explained:?}")
        }
    }
});
