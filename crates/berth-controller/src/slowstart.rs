//! Slow-start batching of Pod creations and deletions, as Kubernetes' ReplicaSet controller does
//! it: batches of 1, 2, 4, … Pods, at most [`BURST`] Pods per reconcile, and between two batches a
//! look at the owner to decide whether to go on. A huge or mistaken replica count therefore costs
//! one Pod before the first error shows, and a scale-down or deletion stops the work within one
//! batch. Pure and clock-free; the controller does the API calls.

/// Most Pods created or deleted in one reconcile (the ReplicaSet controller's `burstReplicas`);
/// the rest waits for the next reconcile, so one service cannot starve the others.
pub const BURST: usize = 500;

/// The sizes of successive batches for `total` operations: 1, 2, 4, … until `total` is reached.
#[derive(Debug, Clone)]
pub struct Batches {
    left: usize,
    next: usize,
}

impl Batches {
    /// Batches for `total` operations, capped at [`BURST`].
    pub fn new(total: usize) -> Self {
        Batches {
            left: total.min(BURST),
            next: 1,
        }
    }
}

impl Iterator for Batches {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        if self.left == 0 {
            return None;
        }
        let size = self.next.min(self.left);
        self.left -= size;
        self.next = self.next.saturating_mul(2);
        Some(size)
    }
}

/// What matters of the owning ModelService when deciding whether to go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// `metadata.uid` (a service deleted and created again under the same name differs).
    pub uid: Option<String>,
    /// `metadata.generation` (any spec change, scaling included, moves it).
    pub generation: Option<i64>,
    /// `spec.replicas`.
    pub replicas: i32,
    /// Whether `metadata.deletionTimestamp` is set.
    pub deleting: bool,
}

/// Whether to run the next batch, given the owner as the reconcile started and as it is now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing changed: go on.
    Continue,
    /// The owner is gone or being deleted: stop, and undo what may have escaped the garbage
    /// collector.
    Gone,
    /// The spec changed (scaled, new template): stop; the next reconcile plans afresh.
    Changed,
}

/// Compares the owner the batches were planned for with a fresh read (`None`: not found).
pub fn verdict(planned: &Owner, now: Option<&Owner>) -> Verdict {
    match now {
        None => Verdict::Gone,
        Some(o) if o.deleting || o.uid != planned.uid => Verdict::Gone,
        Some(o) if o.generation != planned.generation || o.replicas != planned.replicas => {
            Verdict::Changed
        }
        Some(_) => Verdict::Continue,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizes(total: usize) -> Vec<usize> {
        Batches::new(total).collect()
    }

    #[test]
    fn batches_double_from_one() {
        assert_eq!(sizes(0), Vec::<usize>::new());
        assert_eq!(sizes(1), vec![1]);
        assert_eq!(sizes(3), vec![1, 2]);
        assert_eq!(sizes(10), vec![1, 2, 4, 3]);
        assert_eq!(sizes(16), vec![1, 2, 4, 8, 1]);
    }

    #[test]
    fn one_reconcile_does_at_most_a_burst() {
        let huge = sizes(1_000_000_000);
        assert_eq!(huge.iter().sum::<usize>(), BURST);
        assert_eq!(huge, vec![1, 2, 4, 8, 16, 32, 64, 128, 245]);
        assert_eq!(sizes(BURST).iter().sum::<usize>(), BURST);
    }

    fn owner() -> Owner {
        Owner {
            uid: Some("u1".into()),
            generation: Some(3),
            replicas: 1_000_000,
            deleting: false,
        }
    }

    #[test]
    fn an_unchanged_owner_lets_the_batches_go_on() {
        assert_eq!(verdict(&owner(), Some(&owner())), Verdict::Continue);
    }

    #[test]
    fn a_deleted_or_replaced_owner_stops_them() {
        assert_eq!(verdict(&owner(), None), Verdict::Gone);
        let deleting = Owner {
            deleting: true,
            ..owner()
        };
        assert_eq!(verdict(&owner(), Some(&deleting)), Verdict::Gone);
        let other = Owner {
            uid: Some("u2".into()),
            generation: Some(1),
            ..owner()
        };
        assert_eq!(verdict(&owner(), Some(&other)), Verdict::Gone);
    }

    #[test]
    fn a_scaled_or_edited_owner_stops_them() {
        let scaled = Owner {
            replicas: 0,
            ..owner()
        };
        assert_eq!(verdict(&owner(), Some(&scaled)), Verdict::Changed);
        let edited = Owner {
            generation: Some(4),
            ..owner()
        };
        assert_eq!(verdict(&owner(), Some(&edited)), Verdict::Changed);
    }
}
