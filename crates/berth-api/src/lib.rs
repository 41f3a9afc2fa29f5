//! `berth-api`: berth resource types: the ModelService custom resource and its validation.
