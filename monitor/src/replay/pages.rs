//! Which pages of a mapped capture are resident while one thread or several
//! walk its records.
//!
//! A page fault per 4 KiB page costs as much as parsing the records in it,
//! so the pages are mapped a window at a time ahead of the walk, in one
//! call (`MADV_POPULATE_READ`); the pages behind the walk are dropped from
//! the process's resident set (`MADV_DONTNEED`; they stay in the page
//! cache, which is the kernel's to reclaim), so that resident memory follows
//! the window, not the capture. When several threads walk the same map
//! (the shards of `monitor check --threads N`, each over every record), a
//! window is populated once, by whichever walker reaches it first, and
//! pages are dropped only behind the slowest walker; a walker that gets
//! [`MAX_LEAD`] bytes ahead of the slowest waits for it, so that the pages
//! between them stay bounded however the threads are scheduled.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Condvar, Mutex,
    },
    time::Duration,
};

use memmap2::{Advice, Mmap, UncheckedAdvice};

/// The mapped pages are populated and dropped this many bytes at a time.
const WINDOW: usize = 8 << 20;
/// A walker publishes its position, and the pages are looked after, once
/// per this many bytes walked: rarely enough that the walkers do not share
/// a cache line on every record.
const STEP: usize = 1 << 20;
/// How far a walker may get ahead of the slowest one before it waits:
/// everything between them stays resident. Several scheduler slices of
/// walking, so that one thread descheduled for a while does not stop the
/// others at once.
pub(super) const MAX_LEAD: usize = 32 << 20;
/// A waiting walker looks again this often even if nobody woke it.
const RECHECK: Duration = Duration::from_millis(10);

/// One walker's position, on a cache line of its own.
#[repr(align(128))]
struct Slot(AtomicUsize);

/// The residency of one map, shared by the threads that walk it.
pub(super) struct Residency<'m> {
    map: &'m Mmap,
    page: usize,
    /// Each walker's position: everything before it has been read.
    /// `usize::MAX` once the walker finished (or gave up).
    walkers: Box<[Slot]>,
    /// Pages before this offset have been populated (or were walked past).
    populated: AtomicUsize,
    /// Pages before this offset have been dropped from the resident set.
    released: AtomicUsize,
    /// Set when the walks are to end early: another thread gave up.
    stop: AtomicBool,
    /// Walkers waiting for the slowest one.
    waiting: AtomicUsize,
    lock: Mutex<()>,
    moved: Condvar,
}

impl<'m> Residency<'m> {
    pub(super) fn new(map: &'m Mmap, walkers: usize) -> Residency<'m> {
        Residency {
            map,
            page: page_size(),
            walkers: (0..walkers.max(1)).map(|_| Slot(AtomicUsize::new(0))).collect(),
            populated: AtomicUsize::new(0),
            released: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            waiting: AtomicUsize::new(0),
            lock: Mutex::new(()),
            moved: Condvar::new(),
        }
    }

    /// The cursor of walker `me` (one of the `walkers` of [`Residency::new`]).
    pub(super) fn cursor(&self, me: usize) -> Cursor<'_, 'm> {
        Cursor { pages: self, me, next: 0 }
    }

    /// Ends every walk at its next step: another thread gave up.
    pub(super) fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.wake();
    }

    fn wake(&self) {
        if self.waiting.load(Ordering::SeqCst) > 0 {
            let _held = self.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.moved.notify_all();
        }
    }

    /// The position of the slowest walker still walking (`usize::MAX` if none is).
    fn slowest(&self) -> usize {
        self.walkers.iter().map(|s| s.0.load(Ordering::SeqCst)).min().unwrap_or(usize::MAX)
    }

    /// Populates the next window once `at` is within half a window of its
    /// start; the walker that gets there first does it for all.
    fn populate_for(&self, at: usize) {
        let len = self.map.len();
        loop {
            let done = self.populated.load(Ordering::Acquire);
            if done >= len || at + WINDOW / 2 < done {
                return;
            }
            // Pages already walked past were faulted in by the walk.
            let from = done.max(at / self.page * self.page);
            let n = WINDOW.min(len - from);
            if self.populated.compare_exchange(done, from + n, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                // Not every kernel has MADV_POPULATE_READ (5.14); faults do the same work.
                let _ = self.map.advise_range(Advice::PopulateRead, from, n);
                return;
            }
        }
    }

    /// Drops the pages before `upto` (rounded down to a page) once a window of
    /// them is waiting; `upto` is at or behind every walker.
    fn release_to(&self, upto: usize) {
        let upto = upto.min(self.map.len()) / self.page * self.page;
        let done = self.released.load(Ordering::Acquire);
        if upto < done + WINDOW {
            return;
        }
        if self.released.compare_exchange(done, upto, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            // SAFETY: the map is read-only and file-backed: a page dropped
            // here reads back from the file if it is touched again (a slice
            // into it held elsewhere still reads the same bytes, only
            // slower), and every walker has read past `upto`.
            let _ = unsafe { self.map.unchecked_advise_range(UncheckedAdvice::DontNeed, done, upto - done) };
        }
    }

    /// Waits until the slowest walker is within [`MAX_LEAD`] of `at`, or
    /// the walks are stopped.
    fn wait_for_slowest(&self, at: usize) {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let mut held = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        while !self.stop.load(Ordering::SeqCst) && self.slowest().saturating_add(MAX_LEAD) < at {
            held = match self.moved.wait_timeout(held, RECHECK) {
                Ok((held, _)) => held,
                Err(e) => e.into_inner().0,
            };
        }
        drop(held);
        self.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One walker's view of a [`Residency`]: told where the walk is after every
/// record, it looks after the pages once per [`STEP`] bytes. Dropping it
/// tells the others that this walker reads no more.
pub(super) struct Cursor<'r, 'm> {
    pages: &'r Residency<'m>,
    me: usize,
    /// The position at which to look after the pages again.
    next: usize,
}

impl Cursor<'_, '_> {
    /// The walk has read everything before `at`; `false` when it is to
    /// stop (another thread gave up).
    #[inline(always)]
    pub(super) fn reached(&mut self, at: usize) -> bool {
        at < self.next || self.step(at)
    }

    #[inline(never)]
    fn step(&mut self, at: usize) -> bool {
        let p = self.pages;
        p.walkers[self.me].0.store(at, Ordering::SeqCst);
        p.wake();
        if p.stop.load(Ordering::SeqCst) {
            return false;
        }
        p.populate_for(at);
        let slowest = p.slowest();
        p.release_to(slowest);
        if slowest.saturating_add(MAX_LEAD) < at {
            p.wait_for_slowest(at);
            if p.stop.load(Ordering::SeqCst) {
                return false;
            }
        }
        self.next = at.saturating_add(STEP);
        true
    }
}

impl Drop for Cursor<'_, '_> {
    fn drop(&mut self) {
        self.pages.walkers[self.me].0.store(usize::MAX, Ordering::SeqCst);
        self.pages.wake();
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 {
        n as usize
    } else {
        4096
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn map_of(len: usize) -> (tempfile::NamedTempFile, Mmap) {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(&vec![7u8; len]).unwrap();
        // SAFETY: a private temporary file nobody else writes.
        let map = unsafe { Mmap::map(f.as_file()) }.unwrap();
        (f, map)
    }

    /// Pages are dropped only behind the slowest walker, and a walker that
    /// finished no longer holds them back.
    #[test]
    fn pages_are_released_behind_the_slowest_walker_only() {
        let (_f, map) = map_of(4 * WINDOW);
        let pages = Residency::new(&map, 2);
        let mut slow = pages.cursor(0);
        let mut fast = pages.cursor(1);
        assert!(slow.reached(0));
        for at in (0..=3 * WINDOW).step_by(STEP) {
            assert!(fast.reached(at));
        }
        assert_eq!(pages.released.load(Ordering::SeqCst), 0, "the slow walker is still at 0");
        assert!(pages.populated.load(Ordering::SeqCst) >= 3 * WINDOW);
        assert!(slow.reached(2 * WINDOW));
        assert_eq!(pages.released.load(Ordering::SeqCst), 2 * WINDOW);
        drop(slow);
        assert!(fast.reached(3 * WINDOW + STEP));
        assert_eq!(pages.released.load(Ordering::SeqCst), 3 * WINDOW + STEP);
    }

    /// A walker too far ahead waits until the slowest catches up; a stop
    /// ends the wait and the walk.
    #[test]
    fn a_walker_too_far_ahead_waits_for_the_slowest() {
        let (_f, map) = map_of(2 * MAX_LEAD + 2 * STEP);
        let pages = Residency::new(&map, 2);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::scope(|s| {
            let mut slow = pages.cursor(0);
            assert!(slow.reached(0));
            s.spawn(|| {
                let mut fast = pages.cursor(1);
                let ahead = MAX_LEAD + 2 * STEP;
                assert!(fast.reached(ahead));
                tx.send(ahead).unwrap();
                assert!(!fast.reached(2 * MAX_LEAD + 2 * STEP), "stopped while waiting");
                tx.send(0).unwrap();
            });
            // The fast walker came back from the first step only once the slow one moved.
            std::thread::sleep(Duration::from_millis(50));
            assert!(rx.try_recv().is_err(), "the fast walker did not wait");
            assert!(slow.reached(2 * STEP));
            assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), MAX_LEAD + 2 * STEP);
            std::thread::sleep(Duration::from_millis(50));
            assert!(rx.try_recv().is_err(), "the fast walker did not wait the second time");
            pages.stop();
            assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), 0);
        });
    }
}
