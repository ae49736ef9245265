//! Herald's test kit (placeholder while the engine lands).

pub mod faulty_storage;
