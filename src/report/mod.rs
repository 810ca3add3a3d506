//! `factorypal report`: which machine parameters go with each product's output.
//!
//! * `model`: what a report says (computed once, rendered three ways);
//! * `text`: the method paragraph and number formats Markdown and HTML share;
//! * `html`: the self-contained HTML page with inline SVG charts.

pub mod html;
pub mod model;
pub mod text;
