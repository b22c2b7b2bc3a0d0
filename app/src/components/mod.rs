//! Building blocks shared by the pages: the portal frame, forms and error displays.

mod form;
mod layout;
pub mod theme;

pub use form::*;
pub use layout::*;
