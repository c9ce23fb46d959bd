//! `BPF_MAP_LOOKUP_BATCH` on the flow map: aya 0.14 has no batch operations,
//! and reading a large table one key at a time costs two syscalls per flow.

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
    let mut chunk = chunk.max(1);
    let mut keys = vec![K::default(); chunk];
    let mut values = vec![V::default(); chunk];
    // Hash maps use a bucket index as the cursor; 8 bytes is ample.
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
        // SAFETY: attr points at buffers of `count` keys and values that live
        // for the whole call; the kernel writes at most `count` of each.
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
                values.resize(chunk, V::default());
                continue;
            }
            Some(libc::ENOENT) | None => {}
            Some(_) => return Err(err.unwrap()),
        }
        out.extend(keys[..got].iter().copied().zip(values[..got].iter().copied()));
        if err.is_some() {
            return Ok(()); // ENOENT: the walk is complete.
        }
        in_batch = out_batch;
        first = false;
    }
}
