//! The fleet gateway (`unified-worker gateway`, docs/fleet.md): one front door that knows which workers are idle,
//! queues requests in FIFO order when none is, passes each worker's stream through unchanged, and answers for every
//! job of the fleet by its id. It reuses the worker's request validation and event types, never its job slot.

// Public for the fleet tests, which run Docker discovery against a real engine.
pub mod discovery;
mod driver;
mod fleet;
mod history;
mod jobs;
mod journal;
mod line;
mod metrics;
mod poller;
mod relay;
mod replay;
pub mod routes;
pub mod settings;
mod startup;
mod state;
pub mod store;
mod takeover;

pub use self::startup::GatewayApp;
