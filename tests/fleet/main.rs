//! Fleet tests: the image, docker-compose.yml, swarm.yml and deploy-swarm.sh on a real Docker engine, driven and
//! watched through bollard. They need an engine and an image built from the Dockerfile (FLEET_IMAGE, default
//! `unified-worker:latest`); without them they say so and pass, unless CI=true makes that a failure.
//! Traffic goes to 127.0.0.1 only.

mod bench;
mod chaos;
mod compose;
mod container;
mod discovery;
mod gateway;
mod http;
#[path = "../api/support/required.rs"]
mod required;
mod stack;
mod support;
mod swarm;
