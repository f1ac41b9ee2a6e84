//! `auth check <token>`: what the token says and which check accepted or rejected it.
//!
//! Why: "my token is rejected" is the most common auth support question, and the answer is
//! always one specific check (wrong `aud`, expired, unknown `kid`). A [`ValidationReport`]
//! shows the decoded header and claims, clearly marked as unverified, and every check the
//! validator ran with its outcome, in the order it ran them.

use std::fmt;

use conflux_common::{Error, UserIdentity};
use serde_json::Value as Json;

use crate::validation::identity::rfc3339;

/// One check of token validation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// Size, three base64url segments, JSON header and payload.
    Decode,
    /// The token's `iss` names a configured provider.
    Issuer,
    /// The token's `aud` contains the provider's application id.
    Audience,
    /// The header's `alg` is configured for the provider.
    Algorithm,
    /// A key of the provider's key set fits the token's `kid` and `alg`.
    Key,
    /// The signature verifies with that key.
    Signature,
    /// `exp` is present and has not passed.
    Expiry,
    /// `nbf`, if present, has passed.
    NotBefore,
    /// `iat`, if present, is not in the future.
    IssuedAt,
    /// `sub` is present.
    Subject,
    /// For our own tokens: the session still exists.
    Session,
}

impl Check {
    /// The check's name as printed.
    pub fn name(self) -> &'static str {
        match self {
            Check::Decode => "decode",
            Check::Issuer => "issuer",
            Check::Audience => "audience",
            Check::Algorithm => "algorithm",
            Check::Key => "key",
            Check::Signature => "signature",
            Check::Expiry => "expiry",
            Check::NotBefore => "not before",
            Check::IssuedAt => "issued at",
            Check::Subject => "subject",
            Check::Session => "session",
        }
    }
}

/// Whether a check passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepOutcome {
    /// The check passed.
    Passed,
    /// The check failed; validation stopped here.
    Failed,
}

/// One check and what it found.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidationStep {
    /// Which check.
    pub check: Check,
    /// Passed or failed.
    pub outcome: StepOutcome,
    /// What was found, or exactly what to fix.
    pub detail: String,
}

/// Records the steps of one validation when a report is wanted; costs nothing otherwise.
pub(crate) struct Trace {
    steps: Option<Vec<ValidationStep>>,
}

impl Trace {
    pub(crate) fn off() -> Trace {
        Trace { steps: None }
    }

    pub(crate) fn on() -> Trace {
        Trace {
            steps: Some(Vec::new()),
        }
    }

    /// Record the outcome of `check`; the detail of a pass is only computed when tracing.
    pub(crate) fn record<T>(
        &mut self,
        check: Check,
        result: conflux_common::Result<T>,
        passed: impl FnOnce(&T) -> String,
    ) -> conflux_common::Result<T> {
        if let Some(steps) = &mut self.steps {
            let (outcome, detail) = match &result {
                Ok(value) => (StepOutcome::Passed, passed(value)),
                Err(err) => (
                    StepOutcome::Failed,
                    format!("{} ({})", err.detail().unwrap_or(err.message()), err.code()),
                ),
            };
            steps.push(ValidationStep {
                check,
                outcome,
                detail,
            });
        }
        result
    }

    /// Record that `check` failed with `err`, and hand the error back.
    pub(crate) fn fail(&mut self, check: Check, err: Error) -> Error {
        self.record(check, Err::<(), _>(err), |_| String::new())
            .err()
            .unwrap_or_else(|| Error::internal("a failed check recorded no error"))
    }

    pub(crate) fn into_steps(self) -> Vec<ValidationStep> {
        self.steps.unwrap_or_default()
    }
}

/// The result of `auth check <token>`.
#[derive(Clone, Debug)]
pub struct ValidationReport {
    /// The decoded header, NOT verified (`None` when it does not decode; a string when it
    /// is text but not JSON).
    pub header: Option<Json>,
    /// The decoded claims, NOT verified (same conventions as `header`).
    pub claims: Option<Json>,
    /// The checks that ran, in order; the last one failed if the token was rejected.
    pub steps: Vec<ValidationStep>,
    /// The identity functions would see, or the error clients would get.
    pub outcome: Result<UserIdentity, Error>,
    /// The validator's clock when the report was made (seconds since the epoch).
    pub now_secs: u64,
}

impl ValidationReport {
    /// Whether the token was accepted.
    pub fn accepted(&self) -> bool {
        self.outcome.is_ok()
    }

    /// The check that rejected the token, if one did.
    pub fn failed_step(&self) -> Option<&ValidationStep> {
        self.steps
            .iter()
            .find(|step| step.outcome == StepOutcome::Failed)
    }
}

fn write_json_block(f: &mut fmt::Formatter<'_>, title: &str, value: &Option<Json>) -> fmt::Result {
    writeln!(f, "{title} (decoded, NOT verified):")?;
    match value {
        None => writeln!(f, "  (not decodable)"),
        Some(value) => {
            let pretty = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
            for line in pretty.lines() {
                writeln!(f, "  {line}")?;
            }
            Ok(())
        }
    }
}

fn relative(seconds_from_now: i128) -> String {
    match seconds_from_now {
        0 => "now".to_owned(),
        s if s > 0 => format!("in {s} s"),
        s => format!("{} s ago", -s),
    }
}

impl fmt::Display for ValidationReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_json_block(f, "Header", &self.header)?;
        write_json_block(f, "Claims", &self.claims)?;
        if let Some(claims) = self.claims.as_ref().and_then(Json::as_object) {
            for name in ["iat", "nbf", "exp"] {
                if let Some(secs) = claims.get(name).and_then(Json::as_i64) {
                    writeln!(
                        f,
                        "  {name} = {} ({})",
                        rfc3339(secs),
                        relative(i128::from(secs) - i128::from(self.now_secs))
                    )?;
                }
            }
        }
        writeln!(f, "Checks:")?;
        let width = self
            .steps
            .iter()
            .map(|step| step.check.name().len())
            .max()
            .unwrap_or(0);
        for step in &self.steps {
            let mark = match step.outcome {
                StepOutcome::Passed => "PASS",
                StepOutcome::Failed => "FAIL",
            };
            writeln!(f, "  {mark}  {:width$}  {}", step.check.name(), step.detail)?;
        }
        match &self.outcome {
            Ok(identity) => {
                writeln!(f, "Result: ACCEPTED as `{}`", identity.token_identifier)?;
                let pretty = serde_json::to_string_pretty(&identity.to_json()).unwrap_or_default();
                writeln!(f, "Identity seen by functions:")?;
                for line in pretty.lines() {
                    writeln!(f, "  {line}")?;
                }
                Ok(())
            }
            Err(err) => {
                writeln!(f, "Result: REJECTED with {}", err.code())?;
                writeln!(f, "  production clients see: {}", err.client_message(false))?;
                writeln!(f, "  dev clients see:        {}", err.client_message(true))
            }
        }
    }
}
