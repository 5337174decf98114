//! Search: the SearchParameter registry, index extraction, query parsing and planning.

pub mod compartment;
pub mod conditions;
pub mod custom;
pub mod index;
pub mod plan;
pub mod query;
pub mod registry;
pub mod sort;

pub use plan::{Handling, Plan, plan, restrict_to_compartment};
pub use query::{Criterion, SearchQuery};
pub use registry::{ParamType, Registry, SearchParam};

/// Every (type, code) pair the index writes, for registering parameter ids with the store.
pub fn indexed_params<'a>(
    registry: &Registry,
    types: impl Iterator<Item = &'a str>,
) -> Vec<(String, String)> {
    types
        .flat_map(|t| {
            registry
                .for_type(t)
                .into_iter()
                .filter(|p| p.in_index_tables())
                .map(move |p| (t.to_string(), p.code.clone()))
        })
        .collect()
}
