//! Integration tests of the `watchpost` server: key stores, auth, configuration errors, restarts,
//! graceful shutdown and the OpenAPI document.

mod audit_wiring;
mod auth_matrix;
mod cli_process;
mod health_wiring;
mod incident_restart;
mod incident_wiring;
mod keys_contract;
mod observability;
mod openapi_doc;
mod ratelimit_wiring;
mod support;
