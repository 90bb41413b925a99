//! The rotation decision of self-regenerating sessions (SEMANTICS Part 3): a
//! pure function of the times, the policy and the lifecycle state the store
//! reported for a presented sid. The Lua scripts carry out the step chosen
//! here, re-checking the state it was chosen on.

/// Rotation settings, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Age of a sid after which it is replaced.
    pub interval: u64,
    /// Grace after a rotation during which the old sid forwards to the new
    /// (the scripts compare the successor's creation second with
    /// `now - grace`: the grace is measured from the rotation).
    pub grace: u64,
    /// Idle time under which a successor counts as adopted by the client.
    pub inactive: u64,
}

/// The lifecycle state of a presented session key, as a script found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// Stored and not rotated.
    Live,
    /// Rotated, its successor live and within grace: the operation acted on
    /// the successor.
    Forwarding,
    /// Rotated, its successor live, grace over: a judgment is due. `idle` is
    /// the old sid's idle seconds (since the rotation), `successor_idle` the
    /// successor's (since its last use through its own sid).
    Superseded { idle: u64, successor_idle: u64 },
    /// Rotated into a successor that is gone or itself rotated, or judged:
    /// the sid is dead for good.
    Ended,
    /// Nothing stored.
    Gone,
}

/// The step `try_renew` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decision {
    /// Younger than the interval: keep the sid (load and touch only).
    Keep,
    /// Due (or not known yet to be rotated): rotate in one script.
    Rotate,
    /// In grace: the request is served by the successor, whose sid goes out.
    Follow,
    /// Past grace, the client adopted the successor: end the presented sid.
    Destroy,
    /// Past grace, the successor never reached the client: move its data to
    /// a fresh sid and point the presented sid there.
    Reissue,
    /// The presented sid is dead (chain moved past it, or judged before).
    Refuse,
    /// Unknown to the store: a newborn session with a fresh sid.
    Newborn,
}

/// Decide what `try_renew` does for a presented session created at
/// `created`, at time `now`, given what the store reported (`None`: nothing
/// read yet).
pub fn decide(policy: Policy, now: u64, created: u64, stored: Option<Stored>) -> Decision {
    let due = now.saturating_sub(created) >= policy.interval;
    match stored {
        None | Some(Stored::Live) if due => Decision::Rotate,
        None | Some(Stored::Live) => Decision::Keep,
        Some(Stored::Forwarding) => Decision::Follow,
        Some(Stored::Superseded {
            idle,
            successor_idle,
        }) => {
            if successor_idle <= policy.inactive && successor_idle < idle {
                Decision::Destroy
            } else {
                Decision::Reissue
            }
        }
        Some(Stored::Ended) => Decision::Refuse,
        Some(Stored::Gone) => Decision::Newborn,
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

    fn superseded(idle: u64, successor_idle: u64) -> Option<Stored> {
        Some(Stored::Superseded {
            idle,
            successor_idle,
        })
    }

    #[test]
    fn young_sids_are_kept() {
        assert_eq!(decide(POLICY, 1599, 1000, None), Decision::Keep);
        assert_eq!(
            decide(POLICY, 1599, 1000, Some(Stored::Live)),
            Decision::Keep
        );
    }

    #[test]
    fn due_sids_rotate_before_anything_is_read() {
        assert_eq!(decide(POLICY, 1600, 1000, None), Decision::Rotate);
        assert_eq!(
            decide(POLICY, 9000, 1000, Some(Stored::Live)),
            Decision::Rotate
        );
    }

    #[test]
    fn a_clock_behind_the_sid_keeps_it() {
        assert_eq!(decide(POLICY, 10, 1000, None), Decision::Keep);
    }

    #[test]
    fn forwarding_sids_follow_their_successor_whatever_their_age() {
        assert_eq!(
            decide(POLICY, 1000, 1000, Some(Stored::Forwarding)),
            Decision::Follow
        );
        assert_eq!(
            decide(POLICY, 9000, 1000, Some(Stored::Forwarding)),
            Decision::Follow
        );
    }

    #[test]
    fn after_grace_an_adopted_successor_ends_the_old_sid() {
        assert_eq!(
            decide(POLICY, 3000, 1000, superseded(400, 10)),
            Decision::Destroy
        );
        assert_eq!(
            decide(POLICY, 3000, 1000, superseded(400, 60)),
            Decision::Destroy
        );
    }

    #[test]
    fn after_grace_an_unused_successor_is_reissued() {
        assert_eq!(
            decide(POLICY, 3000, 1000, superseded(400, 61)),
            Decision::Reissue
        );
        // Never used through its own sid: as idle as the old one.
        assert_eq!(
            decide(POLICY, 3000, 1000, superseded(5, 5)),
            Decision::Reissue
        );
        // Used, but the old sid was used even more recently.
        assert_eq!(
            decide(POLICY, 3000, 1000, superseded(20, 30)),
            Decision::Reissue
        );
    }

    #[test]
    fn dead_sids_are_refused_and_unknown_ones_are_newborn() {
        assert_eq!(
            decide(POLICY, 1000, 1000, Some(Stored::Ended)),
            Decision::Refuse
        );
        assert_eq!(
            decide(POLICY, 9000, 1000, Some(Stored::Ended)),
            Decision::Refuse
        );
        assert_eq!(
            decide(POLICY, 9000, 1000, Some(Stored::Gone)),
            Decision::Newborn
        );
    }
}
