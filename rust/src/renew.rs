//! The rotation decision of self-regenerating sessions: a pure function of
//! the times, the policy and what the store reported. The Lua scripts carry
//! out the step chosen here, re-checking the state it was chosen on.

/// Rotation settings, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Age of a sid after which it is replaced.
    pub interval: u64,
    /// Grace after a rotation during which the old sid is served by the new.
    pub grace: u64,
    /// Idle time under which a new session counts as adopted by the client.
    pub inactive: u64,
}

/// What the store said about the successor a rotated session points to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Successor {
    /// Creation second carried by the successor's sid: the rotation moment.
    pub created: u64,
    /// `None` until the successor has been read; then whether it exists.
    pub state: Option<SuccessorState>,
}

/// The successor session as read from the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SuccessorState {
    /// Gone (expired or destroyed).
    Missing,
    /// Stored, and itself already rotated away.
    Superseded,
    /// Stored and current; idle seconds before this request touched it.
    Live { idle: u64 },
}

/// The step to take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Younger than the interval: keep the sid (touch only).
    Keep,
    /// Due and never rotated: rotate into a new sid.
    Rotate,
    /// Rotated before: read the successor, then decide again.
    ReadSuccessor,
    /// Within the grace period: serve the request from the successor.
    Follow,
    /// The client has moved on (or the successor was replaced): destroy the
    /// presented session and refuse it.
    Destroy,
    /// The successor never reached the client: destroy it, rotate again.
    Reissue,
}

/// Decide what `try_renew` does for a presented session created at
/// `created` and idle `idle` seconds before this request, at time `now`.
pub fn decide(
    policy: Policy,
    now: u64,
    created: u64,
    idle: u64,
    successor: Option<Successor>,
) -> Decision {
    if now.saturating_sub(created) < policy.interval {
        return Decision::Keep;
    }
    let Some(successor) = successor else {
        return Decision::Rotate;
    };
    let Some(state) = successor.state else {
        return Decision::ReadSuccessor;
    };
    let in_grace = now.saturating_sub(successor.created) <= policy.grace;
    match state {
        SuccessorState::Superseded => Decision::Destroy,
        SuccessorState::Missing => Decision::Reissue,
        SuccessorState::Live { .. } if in_grace => Decision::Follow,
        SuccessorState::Live { idle: new_idle } => {
            if new_idle <= policy.inactive && new_idle < idle {
                Decision::Destroy
            } else {
                Decision::Reissue
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: Policy = Policy {
        interval: 600,
        grace: 120,
        inactive: 60,
    };

    fn successor(created: u64, state: Option<SuccessorState>) -> Option<Successor> {
        Some(Successor { created, state })
    }

    #[test]
    fn young_sids_are_kept() {
        assert_eq!(decide(POLICY, 1599, 1000, 0, None), Decision::Keep);
        assert_eq!(decide(POLICY, 1600, 1000, 0, None), Decision::Rotate);
    }

    #[test]
    fn a_clock_behind_the_sid_keeps_it() {
        assert_eq!(decide(POLICY, 10, 1000, 0, None), Decision::Keep);
    }

    #[test]
    fn a_rotated_sid_reads_its_successor_first() {
        assert_eq!(
            decide(POLICY, 2000, 1000, 5, successor(1990, None)),
            Decision::ReadSuccessor
        );
    }

    #[test]
    fn grace_is_measured_from_the_rotation() {
        // Rotated late (at 1900, not at 1600): still in grace at 2020.
        let live = Some(SuccessorState::Live { idle: 0 });
        assert_eq!(
            decide(POLICY, 2020, 1000, 300, successor(1900, live)),
            Decision::Follow
        );
        assert_eq!(
            decide(POLICY, 2021, 1000, 300, successor(1900, live)),
            Decision::Destroy
        );
    }

    #[test]
    fn after_grace_an_adopted_successor_kills_the_old_sid() {
        let active = Some(SuccessorState::Live { idle: 10 });
        assert_eq!(
            decide(POLICY, 3000, 1000, 400, successor(1600, active)),
            Decision::Destroy
        );
    }

    #[test]
    fn after_grace_an_unused_successor_is_reissued() {
        let stale = Some(SuccessorState::Live { idle: 61 });
        assert_eq!(
            decide(POLICY, 3000, 1000, 400, successor(1600, stale)),
            Decision::Reissue
        );
        // Used recently, but the old sid was used even more recently.
        let both = Some(SuccessorState::Live { idle: 30 });
        assert_eq!(
            decide(POLICY, 3000, 1000, 20, successor(1600, both)),
            Decision::Reissue
        );
    }

    #[test]
    fn only_the_immediate_predecessor_is_honoured() {
        let replaced = Some(SuccessorState::Superseded);
        assert_eq!(
            decide(POLICY, 1650, 1000, 0, successor(1640, replaced)),
            Decision::Destroy
        );
    }

    #[test]
    fn a_vanished_successor_is_reissued() {
        let gone = Some(SuccessorState::Missing);
        assert_eq!(
            decide(POLICY, 1650, 1000, 0, successor(1640, gone)),
            Decision::Reissue
        );
    }
}
