//! Totals that the parts of the agent keep (the kernel programs, the flow
//! reader, passive DNS, the de-duplicator, the webhook), each under a
//! metric family of its own.
//!
//! One trait, so that every part says in its own module what its counters
//! are called, and the metrics endpoint publishes whatever it is handed the
//! same way in production and in tests. Each family holds counters of one
//! kind, so that a sum over its label means something (`monitor_kernel_events_total`
//! once mixed packets, reader events, alerts and DNS messages). The
//! implementations list their struct's fields by destructuring it without
//! `..`: a field added later does not compile until it is published.

/// A counter family: its name without the `monitor_` prefix and the
/// `_total` suffix, its help text, and the name of its one label (empty
/// for a family of one unlabelled counter).
#[derive(Debug, PartialEq, Eq)]
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub label: &'static str,
}

/// Receives counters: the family, the label's value (empty for an
/// unlabelled family) and the total since the start.
pub type Emit<'a> = dyn FnMut(&'static Family, &'static str, u64) + 'a;

/// A part of the agent that keeps totals.
pub trait Counters {
    /// Hands every total to `emit`, the same set every time.
    fn counters(&self, emit: &mut Emit<'_>);
}

impl<T: Counters> Counters for Option<T> {
    fn counters(&self, emit: &mut Emit<'_>) {
        if let Some(c) = self {
            c.counters(emit);
        }
    }
}

/// Emits every field of a stats struct under one family, each labelled by
/// its field name. The struct is destructured without `..`: a field added
/// to it does not compile until it is listed here.
#[macro_export]
macro_rules! emit_fields {
    ($emit:expr, $family:expr, $ty:ident { $($field:ident),* $(,)? } = $value:expr) => {{
        let $ty { $($field),* } = $value;
        $( $emit($family, stringify!($field), $field); )*
    }};
}

/// Every counter of `c` as (label value, total), for one-line summaries.
pub fn collect(c: &dyn Counters) -> Vec<(&'static Family, &'static str, u64)> {
    let mut out = Vec::new();
    c.counters(&mut |f, label, v| out.push((f, label, v)));
    out
}
