//! Account recovery when a second factor is lost: slow and human-reviewed (R82, R85).
//!
//! A case holds the user's evidence (sealed), waits a mandatory period during which every
//! channel on record is told and can cancel it, and needs reviewer approval: one reviewer,
//! or two **different** reviewers for high-value accounts (R79). Nobody may review their
//! own case. Reviewers never see or set a password; approval only resets what the lost
//! factor protected: sessions and refresh families revoked, API keys suspended, second
//! factors removed, withdrawals held. Approval decisions are a pure function here so the
//! store applies exactly this rule inside its transaction.

use serde::Serialize;

use crate::clock::Timestamp;
use crate::ids::UserId;

/// Longest evidence text accepted, in bytes.
pub const MAX_EVIDENCE_BYTES: usize = 4000;

/// Where a case stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseState {
    /// Waiting for the period to pass and for reviewers.
    Open,
    /// Approved and carried out.
    Executed,
    /// Rejected by a reviewer.
    Rejected,
    /// Cancelled from a notice link.
    Cancelled,
}

impl CaseState {
    /// Storage form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Executed => "executed",
            Self::Rejected => "rejected",
            Self::Cancelled => "cancelled",
        }
    }

    /// Parses the storage form.
    pub fn from_stored(s: &str) -> Option<Self> {
        match s {
            "open" => Some(Self::Open),
            "executed" => Some(Self::Executed),
            "rejected" => Some(Self::Rejected),
            "cancelled" => Some(Self::Cancelled),
            _ => None,
        }
    }
}

/// A recovery case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryCase {
    /// Its id.
    pub id: String,
    /// The account to recover.
    pub user_id: UserId,
    /// State.
    pub state: CaseState,
    /// The user's evidence, sealed (base64url of the envelope).
    pub evidence_sealed: String,
    /// Opened at.
    pub created_at: Timestamp,
    /// No approval counts before this instant.
    pub execute_after: Timestamp,
    /// 1, or 2 for high-value accounts.
    pub required_approvals: u8,
    /// The first approving reviewer.
    pub first_reviewer: Option<UserId>,
    /// The reviewer whose decision closed the case.
    pub decided_by: Option<UserId>,
    /// When it was closed.
    pub decided_at: Option<Timestamp>,
}

/// What an approval does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApprovalDecision {
    /// The case is not open.
    NotOpen,
    /// Reviewers may not decide on their own account.
    OwnCase,
    /// The waiting period has not passed; nothing recorded.
    TooEarly(Timestamp),
    /// This reviewer already approved; a different one is needed.
    SameReviewer,
    /// Recorded; another reviewer must approve.
    Recorded,
    /// The last approval: carry the recovery out.
    Execute,
}

/// Decides what `reviewer`'s approval of `case` does at `now`.
pub fn decide_approval(case: &RecoveryCase, reviewer: UserId, now: Timestamp) -> ApprovalDecision {
    if case.state != CaseState::Open {
        return ApprovalDecision::NotOpen;
    }
    if reviewer == case.user_id {
        return ApprovalDecision::OwnCase;
    }
    if now < case.execute_after {
        return ApprovalDecision::TooEarly(case.execute_after);
    }
    match (case.required_approvals, case.first_reviewer) {
        (n, None) if n >= 2 => ApprovalDecision::Recorded,
        (_, Some(first)) if first == reviewer => ApprovalDecision::SameReviewer,
        _ => ApprovalDecision::Execute,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::clock::Span;
    use crate::rng::SeededRng;

    const T0: Timestamp = Timestamp::from_secs(1_800_000_000);

    fn case(required: u8) -> (RecoveryCase, UserId, UserId) {
        let rng = SeededRng::new(9);
        let user = UserId::generate(T0, &rng);
        let r1 = UserId::generate(T0, &rng);
        let r2 = UserId::generate(T0, &rng);
        let c = RecoveryCase {
            id: "c".into(),
            user_id: user,
            state: CaseState::Open,
            evidence_sealed: String::new(),
            created_at: T0,
            execute_after: T0.plus(Span::hours(72)),
            required_approvals: required,
            first_reviewer: None,
            decided_by: None,
            decided_at: None,
        };
        (c, r1, r2)
    }

    #[test]
    fn one_reviewer_after_the_wait() {
        let (c, r1, _) = case(1);
        let after = T0.plus(Span::hours(72));
        assert_eq!(decide_approval(&c, r1, after.minus(Span::secs(1))), ApprovalDecision::TooEarly(after));
        assert_eq!(decide_approval(&c, r1, after), ApprovalDecision::Execute);
        assert_eq!(decide_approval(&c, c.user_id, after), ApprovalDecision::OwnCase);
    }

    #[test]
    fn high_value_needs_two_different_reviewers() {
        let (mut c, r1, r2) = case(2);
        let after = T0.plus(Span::hours(73));
        assert_eq!(decide_approval(&c, r1, after), ApprovalDecision::Recorded);
        c.first_reviewer = Some(r1);
        assert_eq!(decide_approval(&c, r1, after), ApprovalDecision::SameReviewer);
        assert_eq!(decide_approval(&c, r2, after), ApprovalDecision::Execute);
        c.state = CaseState::Cancelled;
        assert_eq!(decide_approval(&c, r2, after), ApprovalDecision::NotOpen);
    }
}
