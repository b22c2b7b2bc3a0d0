//! Building blocks shared by the pages: the portal frame, forms and error displays.

pub mod chart;
mod form;
mod layout;
mod socket;
pub mod theme;
mod ticker;

pub use form::*;
pub use layout::*;
pub use socket::LiveSocket;
pub use ticker::ticker;
