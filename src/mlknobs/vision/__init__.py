"""Pictures in: decoding users' pictures and turning them into 28x28 network inputs."""
