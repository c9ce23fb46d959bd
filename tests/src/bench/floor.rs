//! The harness floor: a two-instruction program (`r0 = verdict; exit`) of
//! each type, run through BPF_PROG_TEST_RUN like the real ones. What it
//! costs is the test harness itself, so `program - floor` is what a program
//! adds per packet.
//!
//! aya loads programs from ELF objects only, hence the raw bpf(2) calls.

use std::{
    io,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    time::Duration,
};

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_TEST_RUN: libc::c_long = 10;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;

pub const PROG_TYPE_SCHED_CLS: u32 = 3;
pub const PROG_TYPE_XDP: u32 = 6;

/// The leading fields of `union bpf_attr` for BPF_PROG_LOAD; the kernel
/// zero-fills the rest.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
}

/// `union bpf_attr` for BPF_PROG_TEST_RUN (`test`).
#[repr(C)]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    _pad: u32,
}

/// `union bpf_attr` for BPF_OBJ_GET_INFO_BY_FD (`info`).
#[repr(C)]
#[derive(Default)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

fn sys_bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: attr is a live, properly sized bpf_attr prefix; the kernel reads
    // and writes at most size_of::<T>() bytes of it.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut T, std::mem::size_of::<T>() as u32) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// An empty program: returns `verdict` and nothing else.
pub struct Floor {
    fd: OwnedFd,
    pub id: u32,
}

impl Floor {
    /// `prog_type` is [`PROG_TYPE_XDP`] or [`PROG_TYPE_SCHED_CLS`]; `name`
    /// (at most 15 bytes) lets `bpftool prog` show it.
    pub fn load(prog_type: u32, verdict: i32, name: &str) -> io::Result<Floor> {
        // mov64 r0, imm ; exit
        let insns: [u64; 2] = [u64::from(0xb7u8) | (u64::from(verdict as u32) << 32), 0x95];
        let license = b"GPL\0";
        let mut attr = ProgLoadAttr {
            prog_type,
            insn_cnt: insns.len() as u32,
            insns: insns.as_ptr() as u64,
            license: license.as_ptr() as u64,
            ..Default::default()
        };
        let n = name.len().min(15);
        attr.prog_name[..n].copy_from_slice(&name.as_bytes()[..n]);
        let raw = sys_bpf(BPF_PROG_LOAD, &mut attr)?;
        // SAFETY: BPF_PROG_LOAD returned a new fd that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw as i32) };
        let id = prog_id(&fd)?;
        Ok(Floor { fd, id })
    }

    /// Runs `data` `repeat` times; returns the verdict and the kernel's
    /// average time per run.
    pub fn test_run(&self, data: &[u8], repeat: u32) -> io::Result<(u32, Duration)> {
        let mut attr = TestRunAttr {
            prog_fd: self.fd.as_raw_fd() as u32,
            data_size_in: data.len() as u32,
            data_in: data.as_ptr() as u64,
            repeat,
            ..Default::default()
        };
        sys_bpf(BPF_PROG_TEST_RUN, &mut attr)?;
        Ok((attr.retval, Duration::from_nanos(u64::from(attr.duration))))
    }
}

/// The program id: the second u32 of `struct bpf_prog_info` (after `type`).
fn prog_id(fd: &OwnedFd) -> io::Result<u32> {
    let mut info = [0u32; 2];
    let mut attr = InfoAttr { bpf_fd: fd.as_raw_fd() as u32, info_len: 8, info: info.as_mut_ptr() as u64 };
    sys_bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
    Ok(info[1])
}
