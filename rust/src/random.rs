//! Randomness from the operating system's CSPRNG, read in buffered blocks.
//!
//! A block is read with `getrandom` and handed out in slices, each slice
//! zeroed once used. A forked child must never hand out what its parent
//! also hands out (pre-fork servers), so a `pthread_atfork` child handler
//! bumps a fork generation and every buffer filled before the fork is thrown
//! away. There is no userspace generator that a fork could duplicate.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};

const BLOCK: usize = 4096;

static FORK_GENERATION: AtomicU64 = AtomicU64::new(0);

struct Pool {
    block: [u8; BLOCK],
    used: usize,
    generation: u64,
}

thread_local! {
    static POOL: RefCell<Pool> = const {
        RefCell::new(Pool { block: [0; BLOCK], used: BLOCK, generation: 0 })
    };
}

#[cfg(unix)]
fn watch_forks() {
    use std::sync::Once;
    static WATCH: Once = Once::new();
    extern "C" fn forked_child() {
        FORK_GENERATION.fetch_add(1, Ordering::SeqCst);
    }
    WATCH.call_once(|| {
        // SAFETY: registers a handler that only touches an atomic, which is
        // async-signal-safe as the child side of fork requires.
        let rc = unsafe { libc::pthread_atfork(None, None, Some(forked_child)) };
        assert_eq!(rc, 0, "pthread_atfork failed");
    });
}

#[cfg(not(unix))]
fn watch_forks() {}

/// Fill `out` with bytes from the OS CSPRNG.
///
/// # Panics
/// When the operating system refuses randomness: there is no safe fallback.
pub fn fill(out: &mut [u8]) {
    watch_forks();
    if out.len() > BLOCK / 4 {
        getrandom::fill(out).expect("the OS CSPRNG failed");
        return;
    }
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        let generation = FORK_GENERATION.load(Ordering::SeqCst);
        if pool.generation != generation || pool.used + out.len() > BLOCK {
            getrandom::fill(&mut pool.block).expect("the OS CSPRNG failed");
            pool.used = 0;
            pool.generation = generation;
        }
        let start = pool.used;
        let end = start + out.len();
        out.copy_from_slice(&pool.block[start..end]);
        pool.block[start..end].fill(0);
        pool.used = end;
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_draws_differ() {
        let (mut a, mut b) = ([0u8; 32], [0u8; 32]);
        fill(&mut a);
        fill(&mut b);
        assert_ne!(a, b);
        assert_ne!(a, [0u8; 32]);
    }

    #[test]
    fn large_draws_bypass_the_pool() {
        let mut big = vec![0u8; BLOCK];
        fill(&mut big);
        assert!(big.iter().any(|&b| b != 0));
    }

    #[test]
    fn many_draws_cross_block_boundaries() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1000 {
            let mut a = [0u8; 32];
            fill(&mut a);
            assert!(seen.insert(a));
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_forked_child_never_repeats_its_parent() {
        let mut warm = [0u8; 32];
        fill(&mut warm); // the parent's pool now holds unread bytes
        let mut pipe = [0i32; 2];
        // SAFETY: plain pipe/fork/read/write/waitpid; the child only calls
        // `fill`, writes and exits.
        unsafe {
            assert_eq!(libc::pipe(pipe.as_mut_ptr()), 0);
            let pid = libc::fork();
            assert!(pid >= 0);
            if pid == 0 {
                let mut child = [0u8; 32];
                fill(&mut child);
                libc::write(pipe[1], child.as_ptr().cast(), 32);
                libc::_exit(0);
            }
            let mut parent = [0u8; 32];
            fill(&mut parent);
            let mut child = [0u8; 32];
            assert_eq!(libc::read(pipe[0], child.as_mut_ptr().cast(), 32), 32);
            let mut status = 0;
            libc::waitpid(pid, &mut status, 0);
            assert_ne!(parent, child);
        }
    }
}
