pub mod protocol;
pub mod report;
pub mod select;
pub mod test;
