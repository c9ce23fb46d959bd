//! Loading the kernel programs, attaching them, and reading the flow table.
