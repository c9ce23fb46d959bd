//! `BPF_MAP_LOOKUP_BATCH` on the flow map and the flow cache: aya 0.14 has no
//! batch operations, and reading a large table one key at a time costs two
//! syscalls per flow.

use std::os::fd::{AsRawFd, BorrowedFd};

use aya::Pod;

const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;

/// `union bpf_attr` as used by the BPF_MAP_*_BATCH commands.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// Reads every entry of a per-CPU map (hash or array), handing `row` one
/// value per entry and possible CPU, in CPU order within an entry. The
/// buffer holds `chunk` entries times the CPUs: keep `chunk` small.
pub fn for_each_per_cpu<K: Pod + Default, V: Pod + Default>(
    fd: BorrowedFd<'_>,
    chunk: usize,
    mut row: impl FnMut(K, V),
) -> std::io::Result<()> {
    let cpus = aya::util::nr_cpus().map_err(|(_, e)| e)?;
    let mut walk = Batches::new(chunk, cpus);
    while !walk.is_done() {
        walk.next(fd, &mut row)?;
    }
    Ok(())
}

/// A walk of a map one batch at a time, which the caller may pause between
/// batches (the flow table is read a chunk at a time, with the ring drained
/// in between). As with any walk of a live hash table, entries inserted or
/// deleted meanwhile may or may not be seen; each entry seen is read whole.
pub struct Batches<K, V> {
    chunk: usize,
    /// 1, or the possible CPUs of a per-CPU map (whose values the kernel
    /// lays out 8-byte aligned, one per CPU).
    values_per_key: usize,
    keys: Vec<K>,
    /// u64 elements: 8-byte aligned, as every value slot starts on 8 bytes.
    values: Vec<u64>,
    /// Hash maps use a bucket index as the cursor, arrays an index; 8 bytes is ample.
    in_batch: [u8; 8],
    out_batch: [u8; 8],
    first: bool,
    done: bool,
    _value: std::marker::PhantomData<V>,
}

impl<K: Pod + Default, V: Pod + Default> Batches<K, V> {
    const STRIDE: usize = std::mem::size_of::<V>().next_multiple_of(8);

    pub fn new(chunk: usize, values_per_key: usize) -> Batches<K, V> {
        let chunk = chunk.max(1);
        Batches {
            chunk,
            values_per_key,
            keys: vec![K::default(); chunk],
            values: vec![0u64; chunk * Self::STRIDE * values_per_key / 8],
            in_batch: [0; 8],
            out_batch: [0; 8],
            first: true,
            done: false,
            _value: std::marker::PhantomData,
        }
    }

    /// Whether the walk is complete.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Reads the next batch (at most `chunk` entries, more only where one
    /// bucket holds more), handing each to `row`.
    pub fn next(&mut self, fd: BorrowedFd<'_>, mut row: impl FnMut(K, V)) -> std::io::Result<()> {
        if self.done {
            return Ok(());
        }
        let row_bytes = Self::STRIDE * self.values_per_key;
        loop {
            let mut attr = BatchAttr {
                in_batch: if self.first { 0 } else { self.in_batch.as_ptr() as u64 },
                out_batch: self.out_batch.as_mut_ptr() as u64,
                keys: self.keys.as_mut_ptr() as u64,
                values: self.values.as_mut_ptr() as u64,
                count: self.chunk as u32,
                map_fd: fd.as_raw_fd() as u32,
                ..Default::default()
            };
            // SAFETY: attr points at buffers of `count` keys and `count` value
            // rows that live for the whole call; the kernel writes at most that.
            let ret = unsafe {
                libc::syscall(
                    libc::SYS_bpf,
                    BPF_MAP_LOOKUP_BATCH,
                    &mut attr as *mut BatchAttr,
                    std::mem::size_of::<BatchAttr>(),
                )
            };
            let err = (ret < 0).then(std::io::Error::last_os_error);
            let got = attr.count as usize;
            match err.as_ref().and_then(|e| e.raw_os_error()) {
                // One bucket holds more entries than the buffer: grow and retry.
                Some(libc::ENOSPC) => {
                    self.chunk *= 2;
                    self.keys.resize(self.chunk, K::default());
                    self.values.resize(self.chunk * row_bytes / 8, 0);
                    continue;
                }
                Some(libc::ENOENT) | None => {}
                Some(_) => return Err(err.unwrap()),
            }
            let bytes = self.values.as_ptr() as *const u8;
            for (i, key) in self.keys[..got].iter().enumerate() {
                for cpu in 0..self.values_per_key {
                    // SAFETY: the offset is inside the `got` rows the kernel
                    // wrote, and V is Pod (any bytes are a valid V).
                    let v = unsafe {
                        std::ptr::read_unaligned(bytes.add(i * row_bytes + cpu * Self::STRIDE) as *const V)
                    };
                    row(*key, v);
                }
            }
            if err.is_some() {
                self.done = true; // ENOENT: the walk is complete.
            } else {
                self.in_batch = self.out_batch;
                self.first = false;
            }
            return Ok(());
        }
    }
}
