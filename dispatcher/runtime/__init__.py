"""What wires dramatiq: the broker, its middleware, the actors."""
