"""RabbitMQ: what arrives from the events exchange, the broker class, the topology, publishing."""
