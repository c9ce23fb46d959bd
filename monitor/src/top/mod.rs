//! `monitor top`: a live terminal view of a running agent, polled over its
//! control socket (`state json`, see `live::state`) about once a second,
//! or of an agent it runs itself ([`local`]).
//!
//! Split so that everything but the terminal is tested without one: the
//! view's state and what keys do ([`app`]), the filter ([`filter`]), the
//! views as table models ([`views`]), the rendering ([`draw`], into any
//! ratatui backend), and a thin loop that owns the terminal ([`term`]).
//! docs/top.md is the user's reference.

pub mod app;
pub mod draw;
pub mod filter;
pub mod local;
pub mod term;
pub mod views;

pub use app::App;
pub use term::{run, TopOptions};
pub use views::View;
