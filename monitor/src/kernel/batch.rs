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

/// Reads every entry of a hash map in batches of `chunk` entries.
///
/// Entries inserted or deleted during the walk may or may not be seen, as
/// with any walk of a live hash table; each entry seen is read whole.
pub fn lookup_all<K: Pod + Default, V: Pod + Default>(
    fd: BorrowedFd<'_>,
    chunk: usize,
    out: &mut Vec<(K, V)>,
) -> std::io::Result<()> {
    lookup_rows(fd, chunk, 1, |k, v| out.push((k, v)))
}

/// Reads every entry of a per-CPU map (hash or array), handing `row` one
/// value per entry and possible CPU, in CPU order within an entry. The
/// buffer holds `chunk` entries times the CPUs: keep `chunk` small.
pub fn for_each_per_cpu<K: Pod + Default, V: Pod + Default>(
    fd: BorrowedFd<'_>,
    chunk: usize,
    row: impl FnMut(K, V),
) -> std::io::Result<()> {
    let cpus = aya::util::nr_cpus().map_err(|(_, e)| e)?;
    lookup_rows(fd, chunk, cpus, row)
}

/// The batch loop: `values_per_key` is 1, or the possible CPUs of a per-CPU
/// map (whose values the kernel lays out 8-byte aligned, one per CPU).
fn lookup_rows<K: Pod + Default, V: Pod + Default>(
    fd: BorrowedFd<'_>,
    chunk: usize,
    values_per_key: usize,
    mut row: impl FnMut(K, V),
) -> std::io::Result<()> {
    let stride = std::mem::size_of::<V>().next_multiple_of(8);
    let row_bytes = stride * values_per_key;
    let mut chunk = chunk.max(1);
    let mut keys = vec![K::default(); chunk];
    // u64 elements: 8-byte aligned, as every value slot starts on 8 bytes.
    let mut values = vec![0u64; chunk * row_bytes / 8];
    // Hash maps use a bucket index as the cursor, arrays an index; 8 bytes is ample.
    let mut in_batch = [0u8; 8];
    let mut out_batch = [0u8; 8];
    let mut first = true;
    loop {
        let mut attr = BatchAttr {
            in_batch: if first { 0 } else { in_batch.as_ptr() as u64 },
            out_batch: out_batch.as_mut_ptr() as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: chunk as u32,
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
                chunk *= 2;
                keys.resize(chunk, K::default());
                values.resize(chunk * row_bytes / 8, 0);
                continue;
            }
            Some(libc::ENOENT) | None => {}
            Some(_) => return Err(err.unwrap()),
        }
        let bytes = values.as_ptr() as *const u8;
        for (i, key) in keys[..got].iter().enumerate() {
            for cpu in 0..values_per_key {
                // SAFETY: the offset is inside the `got` rows the kernel
                // wrote, and V is Pod (any bytes are a valid V).
                let v =
                    unsafe { std::ptr::read_unaligned(bytes.add(i * row_bytes + cpu * stride) as *const V) };
                row(*key, v);
            }
        }
        if err.is_some() {
            return Ok(()); // ENOENT: the walk is complete.
        }
        in_batch = out_batch;
        first = false;
    }
}
